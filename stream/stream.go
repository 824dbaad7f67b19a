// Package stream is registrar's event stream: SIS change events in, committed changes
// out.
//
// A Stream is a sharded, ordered, durable log with two implementations that pass one
// contract suite: Embedded, tables in the records store (the default: nothing to run
// beside registrar), and Kinesis, Amazon Kinesis Data Streams (aws-sdk-go-v2, with a
// configurable endpoint so tests run against an emulator on loopback).
//
// The Worker consumes inbound streams: it shares their shards with other workers
// through leases kept in the store, applies each event with the producing client's
// authorization, the vault's encryption and an audit event, exactly as a REST write
// would, and moves the shard's checkpoint in the same transaction, so a crash never
// applies an event twice and never skips one. Events that cannot be applied go to the
// dead-letter table with the reason. The Worker also relays the store's change log
// (the transactional outbox) to an outbound stream: ids and change types only, never
// a field value.
//
// stream imports records, authz, audit, oneroster and sqlstore; nothing imports
// stream but cmd/registrar.
package stream

import (
	"context"
	"time"
)

// Message is a record to put on a stream.
type Message struct {
	Key  string // partition key: messages with one key land on one shard, in order
	Data []byte
	// Producer names the registered API client that put the message. Only the embedded
	// stream keeps it (registrar authenticated the client); Kinesis authenticates
	// producers through IAM and leaves it empty.
	Producer string
}

// Record is a record read from a shard.
type Record struct {
	Shard    string
	Seq      string // position within the shard; opaque, increasing
	Key      string
	Data     []byte
	Producer string
	Arrived  time.Time // when the stream accepted it
}

// Shard is one shard of a stream. A shard made by resharding names its parents; it is
// read only after they have been read to their end, so that per-key order holds.
type Shard struct {
	ID      string
	Parents []string
}

// Batch is the result of one Read.
type Batch struct {
	Records []Record
	// End reports that the shard is closed (resharded) and every record of it has been
	// returned: nothing more will ever be read from it.
	End bool
}

// Stream is a sharded, ordered, durable log.
type Stream interface {
	// Name identifies the stream in lease and checkpoint names: "embedded:inbox",
	// "kinesis:NAME".
	Name() string
	// Put appends msgs durably, retrying throttling and network errors with backoff
	// until every message is accepted or ctx ends. Messages of one key keep their
	// order across calls; within one call a retried message may land after a later one
	// of the same key (as Kinesis PutRecords documents), and a retry after a lost
	// answer may store a message twice: consumers deduplicate by event id.
	Put(ctx context.Context, msgs []Message) error
	// Shards lists the shards, open and closed.
	Shards(ctx context.Context) ([]Shard, error)
	// Read returns up to limit records of shard after position after ("" for the
	// oldest record kept), in order. Throttling, expired iterators and network errors
	// are retried inside; an error means the caller should back off and call again.
	Read(ctx context.Context, shard, after string, limit int) (Batch, error)
}

// ShardEnd is the checkpoint of a shard that has been read to its end.
const ShardEnd = "SHARD_END"
