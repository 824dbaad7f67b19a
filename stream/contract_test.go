package stream_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"registrar/internal/pgtest"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/stream"
	"registrar/stream/streamtest"
	"registrar/vault"
)

// TestMain stops the Kinesis emulator and the PostgreSQL server the tests started.
func TestMain(m *testing.M) { os.Exit(streamtest.Main(pgMain{m})) }

// pgMain runs the tests under pgtest.Main, which stops the shared PostgreSQL server.
type pgMain struct{ m *testing.M }

func (p pgMain) Run() int { return pgtest.Main(p.m) }

// The store-backed tests run on both engines: the embedded stream, its leases and
// checkpoints, the inbox and the outbox are SQL of their own on each. pgtest.ForEachEngine
// runs a test as the subtests "sqlite" and "postgres"; newStore and newDistrict open
// the engine of the subtest they are called in (pgtest.EngineOf). PostgreSQL is the server
// pgtest.Shared gives, a fresh database per store.

// newStore opens an empty store in a temp dir, on the engine of the test.
func newStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	return newStoreOn(t, pgtest.EngineOf(t))
}

// newStoreOn is newStore on the engine named ("sqlite" or "postgres").
func newStoreOn(t testing.TB, engine string) *sqlstore.Store {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	o := sqlstore.Options{Path: dir + "/registrar.db", Chain: "test", Vault: v,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if engine == "postgres" {
		o.URL = pgtest.Shared(t).NewDatabase(t)
	}
	st, err := sqlstore.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// implementations are the two streams every contract test runs on.
var implementations = []struct {
	name string
	open func(t *testing.T, shards int) stream.Stream
}{
	{"embedded", func(t *testing.T, shards int) stream.Stream {
		return stream.NewEmbedded(newStoreOn(t, "sqlite"), "contract", shards)
	}},
	{"embedded/postgres", func(t *testing.T, shards int) stream.Stream {
		return stream.NewEmbedded(newStoreOn(t, "postgres"), "contract", shards)
	}},
	{"kinesis", func(t *testing.T, shards int) stream.Stream {
		return streamtest.New(t, streamtest.StreamName(t), shards, nil)
	}},
}

// readAll reads every shard to its current end and returns the records by shard.
func readAll(t *testing.T, s stream.Stream) map[string][]stream.Record {
	t.Helper()
	ctx := context.Background()
	shards, err := s.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]stream.Record{}
	for _, sh := range shards {
		after := ""
		for {
			b, err := s.Read(ctx, sh.ID, after, 100)
			if err != nil {
				t.Fatalf("read %s: %v", sh.ID, err)
			}
			if len(b.Records) == 0 {
				break
			}
			out[sh.ID] = append(out[sh.ID], b.Records...)
			after = b.Records[len(b.Records)-1].Seq
			if b.End {
				break
			}
		}
	}
	return out
}

func msgs(n int, key func(i int) string) []stream.Message {
	out := make([]stream.Message, n)
	for i := range out {
		out[i] = stream.Message{Key: key(i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

// TestContract is the one suite both implementations pass.
func TestContract(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			ctx := context.Background()
			t.Run("a put record is read back once with its key and data", func(t *testing.T) {
				s := impl.open(t, 2)
				data := make([]byte, 256)
				for i := range data {
					data[i] = byte(i) // binary data survives
				}
				if err := s.Put(ctx, []stream.Message{{Key: "k1", Data: data}}); err != nil {
					t.Fatal(err)
				}
				var found []stream.Record
				for _, recs := range readAll(t, s) {
					found = append(found, recs...)
				}
				if len(found) != 1 {
					t.Fatalf("got %d records, want 1", len(found))
				}
				if found[0].Key != "k1" || !bytes.Equal(found[0].Data, data) {
					t.Fatalf("got key %q data %x, want k1 and the bytes put", found[0].Key, found[0].Data)
				}
				if found[0].Arrived.IsZero() || time.Since(found[0].Arrived) > time.Hour {
					t.Fatalf("arrival time %v is not recent", found[0].Arrived)
				}
			})
			t.Run("records of one key keep their order across puts", func(t *testing.T) {
				s := impl.open(t, 3)
				for round := 0; round < 5; round++ {
					m := msgs(10, func(int) string { return "same-key" })
					for i := range m {
						m[i].Data = []byte(fmt.Sprint(round*10 + i))
					}
					if err := s.Put(ctx, m); err != nil {
						t.Fatal(err)
					}
				}
				all := readAll(t, s)
				if len(all) != 1 {
					t.Fatalf("one key landed on %d shards, want 1", len(all))
				}
				for _, recs := range all {
					if len(recs) != 50 {
						t.Fatalf("got %d records, want 50", len(recs))
					}
					for i, r := range recs {
						if string(r.Data) != fmt.Sprint(i) {
							t.Fatalf("record %d is %s: order not kept", i, r.Data)
						}
					}
				}
			})
			t.Run("every record lands on exactly one shard and keys spread", func(t *testing.T) {
				s := impl.open(t, 4)
				if err := s.Put(ctx, msgs(200, func(i int) string { return fmt.Sprintf("key-%d", i) })); err != nil {
					t.Fatal(err)
				}
				seen := map[string]int{}
				all := readAll(t, s)
				for _, recs := range all {
					for _, r := range recs {
						seen[string(r.Data)]++
					}
				}
				if len(seen) != 200 {
					t.Fatalf("got %d distinct records, want 200", len(seen))
				}
				for d, n := range seen {
					if n != 1 {
						t.Fatalf("record %s read %d times, want once", d, n)
					}
				}
				if len(all) < 2 {
					t.Fatalf("200 keys landed on %d shard(s) of 4", len(all))
				}
			})
			t.Run("reading after a position returns exactly the later records, again and again", func(t *testing.T) {
				s := impl.open(t, 1)
				if err := s.Put(ctx, msgs(20, func(int) string { return "k" })); err != nil {
					t.Fatal(err)
				}
				shards, err := s.Shards(ctx)
				if err != nil {
					t.Fatal(err)
				}
				first, err := s.Read(ctx, shards[0].ID, "", 5)
				if err != nil {
					t.Fatal(err)
				}
				if len(first.Records) != 5 {
					t.Fatalf("a read with limit 5 got %d records", len(first.Records))
				}
				pos := first.Records[4].Seq
				for try := 0; try < 2; try++ { // a replay from a checkpoint sees the same records
					rest, err := s.Read(ctx, shards[0].ID, pos, 100)
					if err != nil {
						t.Fatal(err)
					}
					if len(rest.Records) != 15 || string(rest.Records[0].Data) != `{"n":5}` {
						t.Fatalf("try %d: after record 5 got %d records starting %s, want 15 starting n=5", try, len(rest.Records), rest.Records[0].Data)
					}
				}
				again, err := s.Read(ctx, shards[0].ID, "", 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(again.Records) != 1 || string(again.Records[0].Data) != `{"n":0}` {
					t.Fatalf("reading from the start again got %v", again.Records)
				}
			})
			t.Run("an empty shard reads as no records, not an error", func(t *testing.T) {
				s := impl.open(t, 2)
				shards, err := s.Shards(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(shards) != 2 {
					t.Fatalf("got %d shards, want 2", len(shards))
				}
				b, err := s.Read(ctx, shards[1].ID, "", 10)
				if err != nil || len(b.Records) != 0 || b.End {
					t.Fatalf("got %d records, end %v, err %v; want none, open, nil", len(b.Records), b.End, err)
				}
			})
			t.Run("a put larger than one call is split and kept whole", func(t *testing.T) {
				s := impl.open(t, 2)
				if err := s.Put(ctx, msgs(1200, func(i int) string { return fmt.Sprint(i % 7) })); err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, recs := range readAll(t, s) {
					n += len(recs)
				}
				if n != 1200 {
					t.Fatalf("got %d records, want 1200", n)
				}
			})
			t.Run("an unknown shard is an error", func(t *testing.T) {
				s := impl.open(t, 1)
				if _, err := s.Read(ctx, "shard-nope", "", 1); err == nil {
					t.Fatal("reading an unknown shard succeeded")
				}
			})
			t.Run("a record over 1 MiB is refused", func(t *testing.T) {
				s := impl.open(t, 1)
				err := s.Put(ctx, []stream.Message{{Key: "k", Data: make([]byte, stream.MaxEventBytes+1)}})
				if err == nil {
					t.Fatal("a 1 MiB + 1 record was accepted")
				}
			})
		})
	}
}

// TestEmbeddedStoresRecordsSealed checks the embedded stream's table holds no
// plaintext: inbound events carry sensitive values.
func TestEmbeddedStoresRecordsSealed(t *testing.T) {
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: dir + "/r.db", Chain: "t", Vault: v})
	if err != nil {
		t.Fatal(err)
	}
	s := stream.NewEmbedded(st, "inbox", 2)
	secret := "SECRET-" + records.FormatDateTime(time.Now())
	if err := s.Put(context.Background(), []stream.Message{{Key: "k", Data: []byte(secret)}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, f := range []string{"/r.db", "/r.db-wal"} {
		b, _ := os.ReadFile(dir + f)
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s holds the record's plaintext", f)
		}
	}
}
