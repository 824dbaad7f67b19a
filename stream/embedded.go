package stream

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"registrar/records"
	"registrar/sqlstore"
)

// Embedded is a stream kept in the records store: the default, with nothing to run
// beside registrar. Records are sealed at rest under a stream key (they may carry
// sensitive values), sequence numbers are dense per shard and follow commit order.
type Embedded struct {
	store  *sqlstore.Store
	name   string
	shards int
}

var _ Stream = (*Embedded)(nil)

// InboxName is the embedded inbound stream that POST /v1/events feeds.
const InboxName = "inbox"

// DefaultEmbeddedShards is the shard count of an embedded stream: enough for a few
// workers to share, few enough that an idle worker's polling costs nothing.
const DefaultEmbeddedShards = 4

// NewEmbedded returns the embedded stream called name with n shards (0: the default).
// The shard count of a name must not change once records are written.
func NewEmbedded(s *sqlstore.Store, name string, n int) *Embedded {
	if n <= 0 {
		n = DefaultEmbeddedShards
	}
	return &Embedded{store: s, name: name, shards: n}
}

// Name implements Stream.
func (e *Embedded) Name() string { return "embedded:" + e.name }

func (e *Embedded) shardOf(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return shardID(int(h.Sum32() % uint32(e.shards)))
}

func shardID(i int) string { return fmt.Sprintf("shard-%04d", i) }

// Put implements Stream: all of msgs commit in one transaction.
func (e *Embedded) Put(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]sqlstore.StreamRecord, len(msgs))
	for i, m := range msgs {
		if len(m.Data) > MaxEventBytes {
			return &records.Error{Code: records.TooLarge, Message: fmt.Sprintf("message %d is %d bytes, more than %d", i, len(m.Data), MaxEventBytes)}
		}
		if m.Key == "" {
			return &records.Error{Code: records.Invalid, Message: fmt.Sprintf("message %d has no partition key", i)}
		}
		recs[i] = sqlstore.StreamRecord{Stream: e.name, Shard: e.shardOf(m.Key), Key: m.Key, Producer: m.Producer, Data: m.Data}
	}
	b := newBackoff(20*time.Millisecond, 2*time.Second)
	for {
		err := e.store.StreamAppend(ctx, recs)
		if err == nil || records.ErrorCode(err) != records.Unavailable {
			return err
		}
		// A busy database (or, on PostgreSQL, two writers taking one sequence number):
		// nothing was written; try again.
		if werr := b.wait(ctx); werr != nil {
			return err
		}
	}
}

// Shards implements Stream: a fixed set, never resharded.
func (e *Embedded) Shards(context.Context) ([]Shard, error) {
	out := make([]Shard, e.shards)
	for i := range out {
		out[i] = Shard{ID: shardID(i)}
	}
	return out, nil
}

// Read implements Stream.
func (e *Embedded) Read(ctx context.Context, shard, after string, limit int) (Batch, error) {
	if !e.hasShard(shard) {
		return Batch{}, &records.Error{Code: records.NotFound, Message: fmt.Sprintf("stream %s has no shard %q", e.Name(), clip(shard))}
	}
	var pos int64
	if after != "" {
		var err error
		if pos, err = strconv.ParseInt(after, 10, 64); err != nil || pos < 0 {
			return Batch{}, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("position %q is not a position of an embedded stream", clip(after))}
		}
	}
	recs, err := e.store.StreamRead(ctx, e.name, shard, pos, limit)
	if err != nil {
		return Batch{}, err
	}
	out := Batch{Records: make([]Record, len(recs))}
	for i, r := range recs {
		out.Records[i] = Record{Shard: shard, Seq: strconv.FormatInt(r.Seq, 10), Key: r.Key, Data: r.Data, Producer: r.Producer, Arrived: r.Time}
	}
	return out, nil
}

func (e *Embedded) hasShard(id string) bool {
	for i := range e.shards {
		if shardID(i) == id {
			return true
		}
	}
	return false
}

// Trim deletes the records of shard up to position upTo that are older than before.
func (e *Embedded) Trim(ctx context.Context, shard, upTo string, before time.Time) error {
	pos, err := strconv.ParseInt(upTo, 10, 64)
	if err != nil {
		return nil // ShardEnd or empty: nothing to trim on an embedded stream
	}
	_, err = e.store.StreamTrim(ctx, e.name, shard, pos, before)
	return err
}
