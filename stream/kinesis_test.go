package stream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"registrar/internal/pgtest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"registrar/authz"
	"registrar/internal/testdistrict"
	"registrar/stream"
	"registrar/stream/streamtest"
)

// faulty is an HTTP client that breaks some Kinesis calls at the wire: throttling
// answers, connections reset before or after the server saw the call, expired
// iterators and partly failed PutRecords, as a congested AWS region would.
type faulty struct {
	mu       sync.Mutex
	calls    map[string]int
	injected map[string]int
}

func newFaulty() *faulty { return &faulty{calls: map[string]int{}, injected: map[string]int{}} }

func (f *faulty) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected[kind]
}

func awsError(code, msg string) *http.Response {
	body := fmt.Sprintf(`{"__type":%q,"message":%q}`, code, msg)
	return &http.Response{StatusCode: 400, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amzn-Errortype": {code}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}

var errReset = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

func (f *faulty) Do(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	f.mu.Lock()
	f.calls[op]++
	n := f.calls[op]
	f.mu.Unlock()
	inject := func(kind string) {
		f.mu.Lock()
		f.injected[kind]++
		f.mu.Unlock()
	}
	switch op {
	case "PutRecords":
		switch n % 4 {
		case 1:
			inject("throttle")
			return awsError("ProvisionedThroughputExceededException", "Rate exceeded for shard"), nil
		case 2:
			// The stream stored the records, the answer is lost: the retry duplicates them.
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			inject("reset-after")
			return nil, errReset
		case 3:
			// Accepted, but reported as partly throttled: the last record is put again.
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				return nil, err
			}
			inject("partial")
			return partlyFailed(resp)
		}
	case "GetRecords":
		switch n % 5 {
		case 1:
			inject("throttle")
			return awsError("ProvisionedThroughputExceededException", "Rate exceeded for shard"), nil
		case 2:
			inject("reset-before")
			return nil, errReset
		case 3:
			inject("expired")
			return awsError("ExpiredIteratorException", "Iterator expired"), nil
		}
	case "GetShardIterator", "ListShards":
		if n%3 == 1 {
			inject("reset-before")
			return nil, errReset
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// partlyFailed rewrites a PutRecords answer so that its last record reads as throttled.
func partlyFailed(resp *http.Response) (*http.Response, error) {
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	recs, _ := out["Records"].([]any)
	if len(recs) > 0 {
		recs[len(recs)-1] = map[string]any{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
		out["FailedRecordCount"] = 1
	}
	b, _ = json.Marshal(out)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	resp.Header.Del("X-Amz-Crc32")
	return resp, nil
}

func userMessages(prefix string, n int, family string) []stream.Message {
	out := make([]stream.Message, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = stream.Message{Key: id, Data: event("ev-"+id+"-"+family, "upsert", "user", id, student(id, testdistrict.SchoolA, family))}
	}
	return out
}

func TestThrottlingResetsAndExpiredIteratorsLoseNothing(t *testing.T) {
	pgtest.ForEachEngine(t, testThrottlingResetsAndExpiredIteratorsLoseNothing)
}

func testThrottlingResetsAndExpiredIteratorsLoseNothing(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	sis := d.client(t, []string{authz.AdminScope})
	name := streamtest.StreamName(t)
	streamtest.New(t, name, 2, nil) // create it on a clean connection
	f := newFaulty()
	producer := streamtest.New(t, name, 0, f)
	consumer := streamtest.New(t, name, 0, f)
	tl := &tally{}
	runWorker(t, newWorker(d, "w1", tl, stream.Source{Stream: consumer, Client: sis}))
	all := userMessages("user-f", 300, "F")
	for i := 0; i < len(all); i += 30 {
		if err := producer.Put(ctx, all[i:i+30]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "300 distinct events applied", 60*time.Second, func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return tl.applied >= 300
	})
	time.Sleep(200 * time.Millisecond) // let duplicates still in flight arrive: they must not apply
	for _, kind := range []string{"throttle", "reset-after", "reset-before", "partial", "expired"} {
		if f.count(kind) == 0 {
			t.Errorf("no %s fault was injected", kind)
		}
	}
	tl.mu.Lock()
	applied, repeat := tl.applied, tl.repeat
	tl.mu.Unlock()
	if applied != 300 {
		t.Errorf("applied %d events, want 300", applied)
	}
	if repeat == 0 {
		t.Errorf("no duplicate record was read: the lost answers should have produced some")
	}
	if n := d.count(t, "SELECT COUNT(*) FROM users WHERE sourced_id LIKE 'user-f-%'"); n != 300 {
		t.Errorf("got %d users, want 300", n)
	}
	if n := d.count(t, "SELECT COUNT(*) FROM audit_events WHERE action = 'stream.upsert'"); n != 300 {
		t.Errorf("got %d audit events, want 300: exactly one per event", n)
	}
	f.mu.Lock()
	t.Logf("faults injected: %v; duplicates skipped: %d", f.injected, repeat)
	f.mu.Unlock()
}

func TestReshardingKeepsEveryEventAndPerKeyOrder(t *testing.T) {
	pgtest.ForEachEngine(t, testReshardingKeepsEveryEventAndPerKeyOrder)
}

func testReshardingKeepsEveryEventAndPerKeyOrder(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	sis := d.client(t, []string{authz.AdminScope})
	name := streamtest.StreamName(t)
	k := streamtest.New(t, name, 1, nil)
	tl := &tally{}
	runWorker(t, newWorker(d, "w1", tl, stream.Source{Stream: k, Client: sis}))
	const users = 20
	put := func(version int) {
		if err := k.Put(ctx, userMessages("user-rs", users, fmt.Sprintf("v%d", version))); err != nil {
			t.Fatal(err)
		}
	}
	for v := 0; v < 3; v++ {
		put(v)
	}
	waitFor(t, "the first versions applied", 30*time.Second, func() bool { return tl.handled() >= users })
	shards, err := k.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mid := new(big.Int).Lsh(big.NewInt(1), 127)
	if _, err := k.Client().SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(name), ShardToSplit: aws.String(shards[0].ID), NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the split", 30*time.Second, func() bool { s, err := k.Shards(ctx); return err == nil && len(s) == 3 })
	for v := 3; v < 5; v++ {
		put(v)
	}
	waitFor(t, "every version applied", 60*time.Second, func() bool { return tl.handled() == 5*users })
	if n := d.count(t, "SELECT COUNT(*) FROM users WHERE sourced_id LIKE 'user-rs-%' AND family_name = 'v4'"); n != users {
		t.Errorf("%d of %d users end at the last version: order across the split was lost", n, users)
	}
	cp, err := d.store.StreamCheckpoint(ctx, "in/"+k.Name()+"/"+shards[0].ID)
	if err != nil || cp != stream.ShardEnd {
		t.Errorf("parent shard checkpoint %q (%v), want %s", cp, err, stream.ShardEnd)
	}
	if n := d.count(t, "SELECT COUNT(*) FROM audit_events WHERE action = 'stream.upsert'"); n != 5*users {
		t.Errorf("got %d audit events, want %d", n, 5*users)
	}
}

// TestPIICanary: the test district's sensitive values, and those of the events put on
// the inbound stream, carry testdistrict.Canary. No record put on the outbound stream,
// no dead-letter reason, no log line and no byte of the database file may hold it.
func TestPIICanary(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	sis := d.client(t, []string{authz.AdminScope})
	in := stream.NewEmbedded(d.store, "inbox", 2)
	out := streamtest.New(t, streamtest.StreamName(t), 2, nil)
	msgs := userMessages("user-c", 20, "C")
	result := map[string]any{"sourcedId": "result-c", "status": "active", "lineItem": ref(testdistrict.LineItemA, "lineItem"), "student": ref(testdistrict.Student3, "user"),
		"scoreStatus": "fully graded", "score": 77, "scoreDate": "2026-09-10", "comment": "Needs work " + testdistrict.Canary}
	bad := student("user-bad", testdistrict.SchoolA, "F")
	bad["enabledUser"] = "maybe" // invalid, next to the sensitive values student() carries
	badSex := map[string]any{"sourcedId": testdistrict.Student3, "status": "active", "sex": "x-" + testdistrict.Canary, "birthDate": "2012-05-05"}
	msgs = append(msgs,
		stream.Message{Key: "r", Data: event("ev-result", "upsert", "result", "result-c", result)},
		stream.Message{Key: "b", Data: event("ev-bad", "upsert", "user", "user-bad", bad)},
		stream.Message{Key: "s", Data: event("ev-bad-sex", "upsert", "demographics", testdistrict.Student3, badSex)},
		stream.Message{Key: "d", Data: event("ev-del", "delete", "result", testdistrict.ResultMinA, nil)},
		stream.Message{Key: "j", Data: []byte(`{"version":1,"id":"ev-junk","email":"` + testdistrict.Canary + `"}`)},
	)
	for i := range msgs {
		msgs[i].Producer = sis
	}
	if err := in.Put(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	tl := &tally{}
	w := newWorker(d, "w1", tl, stream.Source{Stream: in})
	w.Out = out
	stop := runWorker(t, w)
	waitFor(t, "every event handled", 30*time.Second, func() bool { return tl.handled() == len(msgs) })
	last := d.count(t, "SELECT MAX(id) FROM changes")
	waitFor(t, "the outbox relayed", 30*time.Second, func() bool {
		cp, _ := d.store.StreamCheckpoint(ctx, "out/"+out.Name())
		return cp == strconv.Itoa(last)
	})
	if tl.dead != 3 {
		t.Errorf("got %d dead letters, want 3", tl.dead)
	}
	published := map[int64]bool{}
	for _, recs := range readAll(t, out) {
		for _, r := range recs {
			if bytes.Contains(r.Data, []byte(testdistrict.Canary)) {
				t.Fatalf("an outbound record holds a sensitive value: %s", r.Data)
			}
			var c stream.Change
			dec := json.NewDecoder(bytes.NewReader(r.Data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil || c.Version != 1 || (c.Op != "upsert" && c.Op != "delete") || c.Entity == "" || c.SourcedID == "" {
				t.Fatalf("outbound record %s is not a version 1 change event (%v)", r.Data, err)
			}
			published[c.Seq] = true
		}
	}
	if len(published) != last {
		t.Errorf("published %d distinct changes, want all %d committed", len(published), last)
	}
	dls, err := d.store.DeadLetters(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		if strings.Contains(dl.Reason+dl.EventID+dl.Entity+dl.SourcedID, testdistrict.Canary) {
			t.Errorf("dead letter %d shows a sensitive value: %q", dl.ID, dl.Reason)
		}
	}
	if strings.Contains(d.logs.String(), testdistrict.Canary) {
		t.Errorf("a log line holds a sensitive value")
	}
	stop()
	d.store.Close()
	for _, f := range []string{d.path, d.path + "-wal"} {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(testdistrict.Canary)) {
			t.Errorf("%s holds a sensitive value in plaintext", f)
		}
	}
}
