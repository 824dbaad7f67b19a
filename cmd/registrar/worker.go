package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"registrar/stream"
	"registrar/vault"
)

// runWorker is `registrar worker`: a process that only consumes the inbound streams and
// relays the change log. Any number may run beside `serve` (which runs one of its own)
// on the same database: they share the shards through leases.
func runWorker(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "worker", "[flags]")
	id := fs.String("worker-id", "", "this worker's id in the lease table (default: host-pid-random)")
	ttl := fs.Duration("lease-ttl", 10*time.Second, "how long a shard stays with a worker that stopped renewing (a dead worker's shards are taken over after this)")
	batch := fs.Int("batch", 200, "records applied per transaction")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if *ttl < time.Second || *batch < 1 || *batch > 10000 {
		return &exitError{code: 2, msg: "--lease-ttl must be at least 1s and --batch between 1 and 10000"}
	}
	log := newLogger(e, cfg.LogLevel)
	a, err := openApp(ctx, e, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	w, err := newStreamWorker(ctx, a)
	if err != nil {
		return err
	}
	if *id != "" {
		w.ID = *id
	}
	w.LeaseTTL, w.Batch = *ttl, *batch
	fmt.Fprintf(e.stdout, "registrar worker %s: inbound %s; outbound %s (data in %s)\n", w.ID, sourceNames(w.In), streamName(w.Out), cfg.Data)
	return w.Run(ctx)
}

// newStreamWorker builds the worker the configuration describes: the embedded inbox
// (fed by POST /v1/events) always, Kinesis --kinesis-in applied as --sis-client when
// set, and the outbound relay to --kinesis-out when set.
func newStreamWorker(ctx context.Context, a *app) (*stream.Worker, error) {
	cfg := a.cfg
	in := []stream.Source{{Stream: stream.NewEmbedded(a.store, stream.InboxName, 0)}}
	kin := func(name string) (*stream.Kinesis, error) {
		return stream.NewKinesis(ctx, stream.KinesisOptions{Stream: name, Region: cfg.AWSRegion, Endpoint: cfg.AWSEndpoint, Logger: a.log})
	}
	if cfg.KinesisIn != "" {
		k, err := kin(cfg.KinesisIn)
		if err != nil {
			return nil, err
		}
		if cfg.SISClient == "" {
			a.log.Warn("--kinesis-in is set but --sis-client is not: inbound Kinesis events wait until it is")
		}
		in = append(in, stream.Source{Stream: k, Client: cfg.SISClient})
	}
	w := &stream.Worker{Store: a.store, ID: workerID(), In: in, Location: cfg.Timezone, Log: a.log}
	if cfg.KinesisOut != "" {
		k, err := kin(cfg.KinesisOut)
		if err != nil {
			return nil, err
		}
		w.Out = k
	}
	return w, nil
}

func workerID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "worker"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), vault.RandomID()[:8])
}

// startEmbeddedWorker runs the stream worker inside serve: single-node mode needs no
// other process. Several serve instances share the shards like separate workers do.
// The returned function stops it and waits; call it before the store closes.
func startEmbeddedWorker(ctx context.Context, a *app) (stop func(), err error) {
	w, err := newStreamWorker(ctx, a)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(wctx); err != nil {
			a.log.Error("stream worker stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

func sourceNames(in []stream.Source) string {
	s := ""
	for i, src := range in {
		if i > 0 {
			s += ", "
		}
		s += src.Stream.Name()
	}
	return s
}

func streamName(s stream.Stream) string {
	if s == nil {
		return "none (GET /v1/changes)"
	}
	return s.Name()
}
