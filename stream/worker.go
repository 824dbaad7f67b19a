package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"registrar/audit"
	"registrar/authz"
	"registrar/records"
	"registrar/sqlstore"
)

// Source is an inbound stream and the authority its events are applied with.
type Source struct {
	Stream Stream
	// Client is the registered API client (the SIS) whose scope authorizes records
	// that name no producer: every record of a Kinesis stream. Records of the
	// embedded stream carry the client that put them and are applied as that client.
	Client string
}

// Worker consumes inbound streams and relays the change log to an outbound stream.
// Several workers (processes or goroutines) share the shards of a stream through
// leases in the store; Run returns when ctx ends, after giving its leases back.
type Worker struct {
	Store *sqlstore.Store
	ID    string // unique per running worker
	In    []Source
	Out   Stream // nil: no outbound relay (API clients follow GET /v1/changes instead)

	LeaseTTL time.Duration // a dead worker's shards are taken over after this (default 10s)
	Poll     time.Duration // idle wait between reads of an empty shard (default 500ms)
	Batch    int           // records per read and per transaction (default 200)
	Retain   time.Duration // how long applied records of an embedded stream are kept (default 24h)
	// RefWait is how long an event that refers to an object not yet written holds its
	// shard before it is dead-lettered (default 30s): the object is usually on its way
	// through another shard.
	RefWait  time.Duration
	Location *time.Location
	Log      *slog.Logger
	// OnBatch, if set, is called after each committed batch (tests, benchmarks, metrics).
	OnBatch func(BatchInfo)
}

// BatchInfo describes one committed inbound batch.
type BatchInfo struct {
	Source, Shard         string
	Applied, Dead, Repeat int
	Events                []string // ids of the events applied or dead-lettered in this batch
	Arrived               []time.Time
	Committed             time.Time
}

func (w *Worker) defaults() {
	if w.LeaseTTL <= 0 {
		w.LeaseTTL = 10 * time.Second
	}
	if w.Poll <= 0 {
		w.Poll = 500 * time.Millisecond
	}
	if w.Batch <= 0 {
		w.Batch = 200
	}
	if w.RefWait <= 0 {
		w.RefWait = 30 * time.Second
	}
	if w.Retain <= 0 {
		w.Retain = 24 * time.Hour
	}
	if w.Location == nil {
		w.Location = time.UTC
	}
	if w.Log == nil {
		w.Log = slog.Default()
	}
}

// Lease names.
func inLease(s Stream, shard string) string { return "in/" + s.Name() + "/" + shard }
func outLease(s Stream) string              { return "out/" + s.Name() }
func workerLease(id string) string          { return "workers/" + id }

type runner struct {
	lease  string
	cancel context.CancelFunc
	exited chan struct{}
}

func (r *runner) stop() {
	r.cancel()
	<-r.exited
}

func (r *runner) done() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// Run works until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	if w.ID == "" {
		return errors.New("stream: a worker needs an id")
	}
	w.Log.Info("stream worker started", "worker", w.ID, "inbound", len(w.In), "outbound", w.Out != nil, "lease_ttl", w.LeaseTTL.String())
	runners := map[string]*runner{}
	wake := make(chan struct{}, 1)
	start := func(lease string, fn func(ctx context.Context)) {
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{lease: lease, cancel: cancel, exited: make(chan struct{})}
		runners[lease] = r
		go func() {
			defer func() {
				close(r.exited)
				select {
				case wake <- struct{}{}:
				default:
				}
			}()
			fn(rctx)
		}()
	}
	shards := &shardCache{}
	tick := time.NewTicker(w.LeaseTTL / 3)
	defer tick.Stop()
	for {
		for lease, r := range runners {
			if r.done() {
				delete(runners, lease)
				shards.stale = true
			}
		}
		if err := w.balance(ctx, runners, shards, start); err != nil && ctx.Err() == nil {
			w.Log.Warn("stream worker: lease round failed; retrying", "worker", w.ID, "err", err)
		}
		select {
		case <-ctx.Done():
			w.shutdown(runners)
			return nil
		case <-tick.C:
		case <-wake:
		}
	}
}

// shutdown stops every runner, then gives the leases back so that another worker
// takes the shards at once instead of after the TTL.
func (w *Worker) shutdown(runners map[string]*runner) {
	for _, r := range runners {
		r.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for lease, r := range runners {
		<-r.exited
		if err := w.Store.ReleaseLease(ctx, lease, w.ID); err != nil {
			w.Log.Warn("stream worker: release lease", "lease", lease, "err", err)
		}
	}
	if err := w.Store.ReleaseLease(ctx, workerLease(w.ID), w.ID); err != nil {
		w.Log.Warn("stream worker: release presence", "err", err)
	}
	w.Log.Info("stream worker stopped", "worker", w.ID)
}

type shardCache struct {
	at    time.Time
	stale bool
	list  map[string][]Shard // stream name -> shards
}

// balance is one lease round: announce this worker, renew what it holds, give back
// what exceeds its fair share, take free or expired shards up to that share.
func (w *Worker) balance(ctx context.Context, runners map[string]*runner, sc *shardCache, start func(string, func(context.Context))) error {
	if _, err := w.Store.AcquireLease(ctx, workerLease(w.ID), w.ID, w.LeaseTTL); err != nil {
		return err
	}
	for lease, r := range runners {
		if err := w.Store.RenewLease(ctx, lease, w.ID, w.LeaseTTL); err != nil {
			if errors.Is(err, sqlstore.ErrLeaseLost) {
				w.Log.Warn("stream worker: lease lost to another worker", "lease", lease)
				r.stop()
				delete(runners, lease)
				continue
			}
			return err
		}
	}
	leases, err := w.Store.Leases(ctx, "")
	if err != nil {
		return err
	}
	now := time.Now()
	active, heldBy := 1, map[string]string{}
	for _, l := range leases {
		live := l.Expires.After(now)
		if strings.HasPrefix(l.Name, "workers/") && live && l.Owner != w.ID {
			active++
		}
		if live {
			heldBy[l.Name] = l.Owner
		}
	}
	if w.Out != nil {
		lease := outLease(w.Out)
		if _, mine := runners[lease]; !mine && (heldBy[lease] == "" || heldBy[lease] == w.ID) {
			if got, err := w.Store.AcquireLease(ctx, lease, w.ID, w.LeaseTTL); err != nil {
				return err
			} else if got {
				start(lease, func(ctx context.Context) { w.runPublisher(ctx, lease) })
			}
		}
	}
	if len(w.In) == 0 {
		return nil
	}
	if sc.list == nil || sc.stale || time.Since(sc.at) > 30*time.Second {
		list := map[string][]Shard{}
		for _, src := range w.In {
			sh, err := src.Stream.Shards(ctx)
			if err != nil {
				return err
			}
			list[src.Stream.Name()] = sh
		}
		sc.list, sc.at, sc.stale = list, time.Now(), false
	}
	cps, err := w.Store.StreamCheckpoints(ctx, "in/")
	if err != nil {
		return err
	}
	type cand struct {
		src   Source
		shard string
		lease string
	}
	var free []cand
	total, mine := 0, 0
	for _, src := range w.In {
		list := sc.list[src.Stream.Name()]
		known := map[string]bool{}
		for _, s := range list {
			known[s.ID] = true
		}
		for _, s := range list {
			lease := inLease(src.Stream, s.ID)
			if cps[lease] == ShardEnd {
				continue
			}
			ready := true
			for _, p := range s.Parents {
				if known[p] && cps[inLease(src.Stream, p)] != ShardEnd {
					ready = false // read the parent to its end first: per-key order
				}
			}
			if !ready {
				continue
			}
			total++
			if _, ok := runners[lease]; ok {
				mine++
				continue
			}
			if heldBy[lease] == "" || heldBy[lease] == w.ID {
				free = append(free, cand{src, s.ID, lease})
			}
		}
	}
	target := (total + active - 1) / active
	if mine > target {
		// Give one back per round so another worker can take it.
		for lease, r := range runners {
			if strings.HasPrefix(lease, "in/") {
				r.stop()
				delete(runners, lease)
				if err := w.Store.ReleaseLease(ctx, lease, w.ID); err != nil {
					return err
				}
				w.Log.Info("stream worker: gave a shard back to balance", "lease", lease, "target", target)
				break
			}
		}
		return nil
	}
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	for _, c := range free {
		if mine >= target {
			break
		}
		got, err := w.Store.AcquireLease(ctx, c.lease, w.ID, w.LeaseTTL)
		if err != nil {
			return err
		}
		if !got {
			continue
		}
		mine++
		c := c
		w.Log.Info("stream worker: took shard", "worker", w.ID, "lease", c.lease)
		start(c.lease, func(ctx context.Context) { w.runShard(ctx, c.src, c.shard, c.lease) })
	}
	return nil
}

// runShard reads one shard from its checkpoint and applies it, batch by batch, until
// ctx ends, the lease is lost, or the shard is read to its end.
func (w *Worker) runShard(ctx context.Context, src Source, shard, lease string) {
	b := newBackoff(100*time.Millisecond, 10*time.Second)
	var pos string
	for {
		var err error
		if pos, err = w.Store.StreamCheckpoint(ctx, lease); err == nil {
			break
		}
		if b.wait(ctx) != nil {
			return
		}
	}
	b.reset()
	lastTrim := time.Now()
	var waitingSince time.Time // when the batch at pos first met a reference not yet written
	for ctx.Err() == nil {
		if pos == ShardEnd {
			return
		}
		batch, err := src.Stream.Read(ctx, shard, pos, w.Batch)
		if err != nil {
			if ctx.Err() == nil {
				w.Log.Warn("stream worker: read failed; backing off", "lease", lease, "err", err)
				_ = b.wait(ctx)
			}
			continue
		}
		if len(batch.Records) == 0 && !batch.End {
			b.reset()
			_ = sleep(ctx, w.Poll)
			continue
		}
		deadRefs := !waitingSince.IsZero() && time.Since(waitingSince) > w.RefWait
		next, err := w.applyBatch(ctx, src, shard, lease, batch, deadRefs)
		var missing *errMissingRef
		switch {
		case errors.As(err, &missing):
			if waitingSince.IsZero() {
				waitingSince = time.Now()
				w.Log.Info("stream worker: an event refers to an object not written yet; waiting for it", "lease", lease, "event", missing.event, "wait", w.RefWait.String())
			}
			_ = b.wait(ctx)
			continue
		case errors.Is(err, sqlstore.ErrLeaseLost):
			w.Log.Warn("stream worker: lease lost; stopping shard", "lease", lease)
			return
		case err != nil:
			if ctx.Err() == nil {
				w.Log.Warn("stream worker: batch not applied; will retry", "lease", lease, "records", len(batch.Records), "err", err)
				_ = b.wait(ctx)
			}
			continue
		}
		b.reset()
		pos, waitingSince = next, time.Time{}
		if pos == ShardEnd {
			w.Log.Info("stream worker: shard read to its end", "lease", lease)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = w.Store.ReleaseLease(ctx, lease, w.ID)
			cancel()
			return
		}
		if t, ok := src.Stream.(*Embedded); ok && time.Since(lastTrim) > time.Minute {
			lastTrim = time.Now()
			if err := t.Trim(ctx, shard, pos, time.Now().Add(-w.Retain)); err != nil {
				w.Log.Warn("stream worker: trim", "lease", lease, "err", err)
			}
		}
	}
}

// errMissingRef fails a batch whose event refers to an object not written yet.
type errMissingRef struct{ event string }

func (e *errMissingRef) Error() string {
	return "event " + e.event + " refers to an object not written yet"
}

// missingRef reports whether err says a reference points at nothing (the phrase of
// the store's and the worker's reference checks).
func missingRef(err error) bool {
	var re *records.Error
	if !errors.As(err, &re) || re.Code != records.Invalid {
		return false
	}
	for _, d := range re.Details {
		if strings.Contains(d.Message, "which does not exist") {
			return true
		}
	}
	return false
}

// principal is the resolved authority of one producer within a batch.
type principal struct {
	scope *authz.Scope
	err   error // set when the producer cannot write at all: its events are dead letters
}

// errNoClient pauses a source whose records name no producer and that has no client
// configured: nothing can authorize them, and dead-lettering them all would only move
// the problem. The shard waits, with a log line, until the operator fixes it.
type errNoClient struct{ msg string }

func (e *errNoClient) Error() string { return e.msg }

func (w *Worker) resolve(ctx context.Context, id string, configured bool) (principal, error) {
	c, err := w.Store.Client(ctx, id)
	if err == nil && c.RevokedAt != nil {
		err = &records.Error{Code: records.Forbidden, Message: "client " + id + " is revoked"}
	}
	if err != nil {
		if records.ErrorCode(err) == records.Unavailable {
			return principal{}, err
		}
		if configured {
			return principal{}, &errNoClient{fmt.Sprintf("the SIS client %q is missing or revoked: %v", id, err)}
		}
		return principal{err: &records.Error{Code: records.Forbidden, Message: "the producing client is missing or revoked"}}, nil
	}
	p := &authz.Principal{Kind: audit.KindClient, ID: c.ID, ClientID: c.ID, Name: c.Name, Scopes: c.Scopes, Orgs: c.Orgs, LegalBasis: c.LegalBasis, Purpose: c.Purpose}
	sc, err := authz.Resolve(ctx, w.Store, p, time.Now().In(w.Location))
	if err != nil {
		return principal{}, err
	}
	return principal{scope: sc}, nil
}

// applyBatch applies a batch in one transaction together with the shard's checkpoint,
// fenced by the lease, and returns the new checkpoint.
// With deadRefs false, an event whose references are not written yet fails the batch
// with *errMissingRef (retried: the object may be on its way through another shard);
// with deadRefs true it is dead-lettered like any invalid event.
func (w *Worker) applyBatch(ctx context.Context, src Source, shard, lease string, batch Batch, deadRefs bool) (string, error) {
	ps := map[string]principal{}
	for _, r := range batch.Records {
		who, configured := r.Producer, false
		if who == "" {
			who, configured = src.Client, true
		}
		if _, ok := ps[who]; ok {
			continue
		}
		if who == "" {
			return "", &errNoClient{"records of " + src.Stream.Name() + " name no producer and no SIS client is configured (--sis-client)"}
		}
		p, err := w.resolve(ctx, who, configured)
		if err != nil {
			return "", err
		}
		ps[who] = p
	}
	next := ShardEnd
	if !batch.End {
		next = batch.Records[len(batch.Records)-1].Seq
	}
	source := src.Stream.Name() + "/" + shard
	var info BatchInfo
	err := w.Store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		info = BatchInfo{Source: src.Stream.Name(), Shard: shard}
		if err := tx.HoldLease(ctx, lease, w.ID, w.LeaseTTL); err != nil {
			return err
		}
		for _, r := range batch.Records {
			who := r.Producer
			if who == "" {
				who = src.Client
			}
			if err := w.handle(ctx, tx, source, r, ps[who], who, deadRefs, &info); err != nil {
				return err
			}
		}
		return tx.SetStreamCheckpoint(ctx, lease, next)
	})
	if err != nil {
		return "", err
	}
	if w.OnBatch != nil {
		info.Committed = time.Now()
		w.OnBatch(info)
	}
	return next, nil
}

// handle applies one record, or dead-letters it. It returns an error only when the
// whole batch must be retried.
func (w *Worker) handle(ctx context.Context, tx *sqlstore.Tx, source string, r Record, p principal, who string, deadRefs bool, info *BatchInfo) error {
	base := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: who, ClientID: who, Route: "stream " + source, Source: source + "/" + r.Seq, Action: "stream.event"}
	if p.scope != nil {
		base.LegalBasis, base.Purpose = p.scope.P.LegalBasis, p.scope.P.Purpose
	}
	ev, err := ParseEvent(r.Data)
	if ev != nil {
		base.RequestID = ev.ID
		seen, serr := tx.EventSeen(ctx, ev.ID)
		if serr != nil {
			return serr
		}
		if seen {
			info.Repeat++ // a producer's retry, or a replay: applied once already
			return nil
		}
	}
	aev := base
	if err == nil && p.err != nil {
		err = p.err
	}
	if err == nil {
		err = tx.Savepoint(ctx, func() (err error) {
			defer func() {
				if x := recover(); x != nil {
					w.Log.Error("stream worker: panic applying an event", "source", base.Source, "panic", fmt.Sprint(x))
					err = &records.Error{Code: records.Internal, Message: "internal error"}
				}
			}()
			aev, err = applyEvent(ctx, tx, p.scope, ev, base)
			return err
		})
	}
	if err != nil && fatal(err) {
		return err
	}
	if err != nil && !deadRefs && missingRef(err) {
		return &errMissingRef{event: ev.ID}
	}
	info.Arrived = append(info.Arrived, r.Arrived)
	if err != nil {
		reason, outcome := deadReason(err)
		d := sqlstore.DeadLetter{Source: source, Position: r.Seq, Reason: reason, Payload: r.Data}
		var ee *EventError
		if errors.As(err, &ee) && ee.Event != nil {
			ev = ee.Event
		}
		if ev != nil {
			d.EventID, d.Entity, d.SourcedID, d.Op = clip(ev.ID), clip(ev.Entity), clip(ev.SourcedID), clip(ev.Op)
			info.Events = append(info.Events, ev.ID)
		}
		if err := tx.PutDeadLetter(ctx, d); err != nil {
			return err
		}
		if ev != nil && records.ValidID(ev.ID) == nil {
			if err := tx.MarkEvent(ctx, ev.ID, source, OutcomeDead); err != nil {
				return err
			}
		}
		aev.Outcome, aev.Detail = outcome, "dead letter: "+clip(reason)
		if aev.ResourceType == "" && ev != nil {
			aev.ResourceType, aev.ResourceID = clip(ev.Entity), clip(ev.SourcedID)
		}
		tx.Audit(aev)
		info.Dead++
		w.Log.Warn("stream worker: event dead-lettered", "source", base.Source, "event", d.EventID, "reason", reason)
		return nil
	}
	if err := tx.MarkEvent(ctx, ev.ID, source, OutcomeApplied); err != nil {
		return err
	}
	tx.Audit(aev)
	info.Applied++
	info.Events = append(info.Events, ev.ID)
	return nil
}

// runPublisher relays the change log to the outbound stream: read after the
// checkpoint, put, then move the checkpoint. A crash between put and checkpoint
// publishes those changes again (at least once; consumers deduplicate by id); a
// change is never published before it commits, nor skipped.
func (w *Worker) runPublisher(ctx context.Context, lease string) {
	b := newBackoff(100*time.Millisecond, 10*time.Second)
	var pos int64
	for {
		cp, err := w.Store.StreamCheckpoint(ctx, lease)
		if err == nil {
			pos, _ = strconv.ParseInt(cp, 10, 64) // "" is 0: from the start of the log
			break
		}
		if b.wait(ctx) != nil {
			return
		}
	}
	for ctx.Err() == nil {
		chs, err := w.Store.ChangesAfter(ctx, pos, 500)
		if err != nil {
			w.Log.Warn("stream publisher: read change log", "err", err)
			_ = b.wait(ctx)
			continue
		}
		if len(chs) == 0 {
			b.reset()
			_ = sleep(ctx, w.Poll)
			continue
		}
		msgs := make([]Message, 0, len(chs))
		for _, c := range chs {
			if _, ok := records.EntityNamed(c.Entity); !ok {
				continue // registrar's own authorization data (caseloads, dependency flags): not a OneRoster change
			}
			msgs = append(msgs, Message{Key: c.Entity + "/" + c.SourcedID, Data: EncodeChange(c)})
		}
		if len(msgs) > 0 { // none: the checkpoint still moves past these changes
			if err := w.Out.Put(ctx, msgs); err != nil {
				if ctx.Err() == nil {
					w.Log.Warn("stream publisher: put failed; will retry", "stream", w.Out.Name(), "changes", len(chs), "err", err)
					_ = b.wait(ctx)
				}
				continue
			}
		}
		last := strconv.FormatInt(chs[len(chs)-1].ID, 10)
		err = w.Store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			if err := tx.HoldLease(ctx, lease, w.ID, w.LeaseTTL); err != nil {
				return err
			}
			return tx.SetStreamCheckpoint(ctx, lease, last)
		})
		if errors.Is(err, sqlstore.ErrLeaseLost) {
			w.Log.Warn("stream publisher: lease lost; stopping", "lease", lease)
			return
		}
		if err != nil {
			w.Log.Warn("stream publisher: checkpoint", "err", err)
			_ = b.wait(ctx)
			continue // the next round publishes these again: at least once
		}
		b.reset()
		pos = chs[len(chs)-1].ID
	}
}

// EncodeChange is the outbound event of one change: ids and type, never a value.
func EncodeChange(c sqlstore.Change) []byte {
	b, err := json.Marshal(Change{Version: SchemaVersion, ID: "change-" + strconv.FormatInt(c.ID, 10), Seq: c.ID, Op: c.Op, Entity: c.Entity, SourcedID: c.SourcedID, Time: c.Time})
	if err != nil {
		panic("stream: a change does not encode: " + err.Error()) // strings and numbers only: cannot happen
	}
	return b
}
