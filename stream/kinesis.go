package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// Kinesis is a stream on Amazon Kinesis Data Streams.
type Kinesis struct {
	c      *kinesis.Client
	stream string
	log    *slog.Logger

	mu    sync.Mutex
	iters map[string]iterState // shard -> where the cached iterator points
}

type iterState struct{ after, iter string }

var _ Stream = (*Kinesis)(nil)

// KinesisOptions configure NewKinesis.
type KinesisOptions struct {
	Stream   string // the stream's name
	Region   string
	Endpoint string // e.g. http://127.0.0.1:4567 for an emulator; "" for AWS
	// Credentials override the SDK's default chain (environment, ECS task role, ...).
	Credentials aws.CredentialsProvider
	// HTTPClient overrides the transport (tests inject faults at the wire with it).
	HTTPClient aws.HTTPClient
	// MaxAttempts is the SDK's attempts per call (default 5) before the stream's own,
	// unbounded, retry loop backs off and calls again.
	MaxAttempts int
	Logger      *slog.Logger
}

// NewKinesis returns a client of one Kinesis stream. It does not call AWS.
func NewKinesis(ctx context.Context, o KinesisOptions) (*Kinesis, error) {
	if o.Stream == "" {
		return nil, errors.New("stream: a Kinesis stream name is required")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			// Exponential backoff with jitter on throttling and connection errors. No
			// client-side retry quota: an outage must slow the worker down, never make
			// it give up on a record.
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = 5 * time.Second
				so.RateLimiter = ratelimit.None
			})
		}),
	}
	if o.Region != "" {
		opts = append(opts, awsconfig.WithRegion(o.Region))
	}
	if o.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("stream: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("stream: an AWS region is required for Kinesis (--aws-region)")
	}
	c := kinesis.NewFromConfig(cfg, func(ko *kinesis.Options) {
		if o.Endpoint != "" {
			ko.BaseEndpoint = aws.String(o.Endpoint)
		}
		if o.HTTPClient != nil {
			ko.HTTPClient = o.HTTPClient // set here, not in the shared config: AWS_CA_BUNDLE would demand an *http.Client-like type
		}
	})
	return &Kinesis{c: c, stream: o.Stream, log: o.Logger, iters: map[string]iterState{}}, nil
}

// Name implements Stream.
func (k *Kinesis) Name() string { return "kinesis:" + k.stream }

// Client returns the SDK client (administration in tests: create, reshard).
func (k *Kinesis) Client() *kinesis.Client { return k.c }

// StreamName returns the Kinesis stream's name.
func (k *Kinesis) StreamName() string { return k.stream }

// Limits of PutRecords.
const (
	maxPutRecords = 500
	maxPutBytes   = 5 << 20
)

// Put implements Stream.
func (k *Kinesis) Put(ctx context.Context, msgs []Message) error {
	for len(msgs) > 0 {
		n, size := 0, 0
		for n < len(msgs) && n < maxPutRecords {
			sz := len(msgs[n].Data) + len(msgs[n].Key)
			if sz > MaxEventBytes {
				return fmt.Errorf("stream: message of %d bytes is larger than a Kinesis record (%d)", sz, MaxEventBytes)
			}
			if n > 0 && size+sz > maxPutBytes {
				break
			}
			size += sz
			n++
		}
		if err := k.putChunk(ctx, msgs[:n]); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// putChunk puts one PutRecords' worth, retrying the records that fail until all are in.
func (k *Kinesis) putChunk(ctx context.Context, msgs []Message) error {
	entries := make([]types.PutRecordsRequestEntry, len(msgs))
	for i, m := range msgs {
		if m.Key == "" {
			return fmt.Errorf("stream: message %d has no partition key", i)
		}
		entries[i] = types.PutRecordsRequestEntry{Data: m.Data, PartitionKey: aws.String(m.Key)}
	}
	b := newBackoff(50*time.Millisecond, 5*time.Second)
	for len(entries) > 0 {
		out, err := k.c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(k.stream), Records: entries})
		if err != nil {
			if !retryable(err) || ctx.Err() != nil {
				return fmt.Errorf("stream: put to %s: %w", k.stream, err)
			}
			k.log.Warn("stream put failed; retrying", "stream", k.stream, "records", len(entries), "err", errorCode(err))
			if werr := b.wait(ctx); werr != nil {
				return fmt.Errorf("stream: put to %s: %w", k.stream, err)
			}
			continue
		}
		if aws.ToInt32(out.FailedRecordCount) == 0 {
			return nil
		}
		var again []types.PutRecordsRequestEntry
		codes := map[string]int{}
		for i, r := range out.Records {
			if r.ErrorCode != nil && i < len(entries) {
				again = append(again, entries[i])
				codes[aws.ToString(r.ErrorCode)]++
			}
		}
		k.log.Warn("stream put partly throttled; retrying the failed records", "stream", k.stream, "failed", len(again), "of", len(entries), "codes", codes)
		entries = again
		if err := b.wait(ctx); err != nil {
			return fmt.Errorf("stream: put to %s: %d records not accepted: %w", k.stream, len(entries), err)
		}
	}
	return nil
}

// Shards implements Stream.
func (k *Kinesis) Shards(ctx context.Context) ([]Shard, error) {
	var out []Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(k.stream)}
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		res, err := k.c.ListShards(ctx, in)
		if err != nil {
			if retryable(err) && ctx.Err() == nil {
				if werr := b.wait(ctx); werr == nil {
					continue
				}
			}
			return nil, fmt.Errorf("stream: list shards of %s: %w", k.stream, err)
		}
		for _, s := range res.Shards {
			sh := Shard{ID: aws.ToString(s.ShardId)}
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if p != nil && *p != "" {
					sh.Parents = append(sh.Parents, *p)
				}
			}
			out = append(out, sh)
		}
		if res.NextToken == nil {
			return out, nil
		}
		in = &kinesis.ListShardsInput{NextToken: res.NextToken} // the stream name must not be repeated with a token
	}
}

// Read implements Stream.
func (k *Kinesis) Read(ctx context.Context, shard, after string, limit int) (Batch, error) {
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for hops := 0; ; {
		it, err := k.iterator(ctx, shard, after)
		if err != nil {
			return Batch{}, err
		}
		res, err := k.c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it), Limit: aws.Int32(int32(limit))})
		if err != nil {
			k.forget(shard)
			var expired *types.ExpiredIteratorException
			if errors.As(err, &expired) && ctx.Err() == nil {
				// Iterators live five minutes; an idle shard's expires. Take a new one
				// from the checkpoint: nothing is skipped or repeated.
				k.log.Info("stream iterator expired; renewing", "stream", k.stream, "shard", shard)
				continue
			}
			if retryable(err) && ctx.Err() == nil {
				if werr := b.wait(ctx); werr == nil {
					continue
				}
			}
			return Batch{}, fmt.Errorf("stream: read %s/%s: %w", k.stream, shard, err)
		}
		out := Batch{Records: make([]Record, 0, len(res.Records))}
		pos := after
		for _, r := range res.Records {
			rec := Record{Shard: shard, Seq: aws.ToString(r.SequenceNumber), Key: aws.ToString(r.PartitionKey), Data: r.Data}
			if r.ApproximateArrivalTimestamp != nil {
				rec.Arrived = *r.ApproximateArrivalTimestamp
			}
			out.Records = append(out.Records, rec)
			pos = rec.Seq
		}
		if res.NextShardIterator == nil {
			k.forget(shard)
			out.End = true // closed by resharding, and read to its end
			return out, nil
		}
		k.mu.Lock()
		k.iters[shard] = iterState{after: pos, iter: *res.NextShardIterator}
		k.mu.Unlock()
		// An empty answer while behind the tip means a stretch of the shard with no
		// records: follow the iterator a few hops instead of idling.
		if len(out.Records) == 0 && aws.ToInt64(res.MillisBehindLatest) > 0 && hops < 5 {
			hops++
			continue
		}
		return out, nil
	}
}

// iterator returns a shard iterator positioned after `after`, reusing the one the
// last Read left when it points there.
func (k *Kinesis) iterator(ctx context.Context, shard, after string) (string, error) {
	k.mu.Lock()
	st, ok := k.iters[shard]
	k.mu.Unlock()
	if ok && st.after == after {
		return st.iter, nil
	}
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(k.stream), ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
	if after != "" {
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(after)
	}
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		res, err := k.c.GetShardIterator(ctx, in)
		if err != nil {
			if retryable(err) && ctx.Err() == nil {
				if werr := b.wait(ctx); werr == nil {
					continue
				}
			}
			return "", fmt.Errorf("stream: iterator for %s/%s: %w", k.stream, shard, err)
		}
		return aws.ToString(res.ShardIterator), nil
	}
}

func (k *Kinesis) forget(shard string) {
	k.mu.Lock()
	delete(k.iters, shard)
	k.mu.Unlock()
}

// retryableCodes are the AWS error codes worth another try: throttling, limits and
// the service's own transient failures.
var retryableCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"LimitExceededException":                 true,
	"ThrottlingException":                    true,
	"KMSThrottlingException":                 true,
	"InternalFailure":                        true,
	"InternalFailureException":               true,
	"ServiceUnavailable":                     true,
	"ServiceUnavailableException":            true,
	"RequestTimeout":                         true,
	"RequestTimeoutException":                true,
	"ExpiredIteratorException":               true,
}

// retryable reports whether err is transient: throttling, a limit, a 5xx, or the
// network (a reset connection, a timeout, a refused dial).
func retryable(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return retryableCodes[ae.ErrorCode()] || ae.ErrorFault() == smithy.FaultServer
	}
	var ne net.Error
	var oe *net.OpError
	var re *retry.MaxAttemptsError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}

// CreateKinesisStream creates a stream with shards shards if it does not exist and
// waits until it is active (tests and first-time setup against an emulator; in AWS the
// infrastructure program creates it).
func CreateKinesisStream(ctx context.Context, k *Kinesis, shards int) error {
	_, err := k.c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(k.stream), ShardCount: aws.Int32(int32(shards))})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("stream: create %s: %w", k.stream, err)
	}
	w := kinesis.NewStreamExistsWaiter(k.c, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second })
	return w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(k.stream)}, time.Minute)
}
