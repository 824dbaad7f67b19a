package stream_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/internal/pgtest"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/stream"
	"registrar/vault"
)

// district is a store loaded with the test district, on the engine of the test
// (pgtest.EngineOf), and its file's path or its PostgreSQL URL.
type district struct {
	store *sqlstore.Store
	path  string
	url   string // the PostgreSQL database, "" on SQLite
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDistrict(t testing.TB) *district {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	path := dir + "/registrar.db"
	o := sqlstore.Options{Path: path, Chain: "test", Vault: v, Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if pgtest.EngineOf(t) == "postgres" {
		o.URL = pgtest.Shared(t).NewDatabase(t)
	}
	st, err := sqlstore.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	if err := testdistrict.Load(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return &district{store: st, path: path, url: o.URL, logs: logs}
}

// client registers an API client and returns its id.
func (d *district) client(t testing.TB, scopes []string, orgs ...string) string {
	t.Helper()
	if len(orgs) == 0 {
		orgs = []string{"*"}
	}
	_, hash := authn.NewSecret()
	c := records.Client{ID: "sis-" + vault.RandomID(), Name: "test SIS", SecretHash: hash, Scopes: scopes, Orgs: orgs, LegalBasis: authz.BasisSchoolOfficial, Purpose: "rostering"}
	if err := d.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// count runs a COUNT query on the store's database through a connection of its own
// (? placeholders, rewritten for PostgreSQL).
func (d *district) count(t testing.TB, q string, args ...any) int {
	t.Helper()
	var db *sql.DB
	var err error
	if d.url != "" {
		db, err = sql.Open("pgx", d.url)
		q = sqlstore.RebindDollar(q)
	} else {
		db, err = sql.Open("sqlite", "file:"+d.path+"?_pragma=busy_timeout(10000)&mode=ro")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// event encodes an inbound event.
func event(id, op, entity, sourcedID string, obj map[string]any) []byte {
	ev := map[string]any{"version": 1, "id": id, "op": op, "entity": entity, "sourcedId": sourcedID, "time": "2026-09-15T08:00:00Z"}
	if obj != nil {
		ev["object"] = obj
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

func ref(id, typ string) map[string]any { return map[string]any{"sourcedId": id, "type": typ} }

// student is a new student user of school whose sensitive values carry the canary.
func student(id, school, family string) map[string]any {
	return map[string]any{"sourcedId": id, "status": "active", "enabledUser": "true", "givenName": "Stream", "familyName": family,
		"roles": []any{map[string]any{"roleType": "primary", "role": "student", "org": ref(school, "org")}},
		"email": id + "." + testdistrict.Canary + "@example.org", "identifier": "SID-" + testdistrict.Canary + "-" + id,
		"phone": "555-" + testdistrict.Canary}
}

func enrollment(id, user, class, school string) map[string]any {
	return map[string]any{"sourcedId": id, "status": "active", "user": ref(user, "user"), "class": ref(class, "class"), "school": ref(school, "org"), "role": "student"}
}

// tally collects what a worker reports.
type tally struct {
	mu      sync.Mutex
	applied int
	dead    int
	repeat  int
	order   []string
	lags    []time.Duration
	owners  map[string]int
}

func (tl *tally) onBatch(owner string) func(stream.BatchInfo) {
	return func(b stream.BatchInfo) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		tl.applied += b.Applied
		tl.dead += b.Dead
		tl.repeat += b.Repeat
		tl.order = append(tl.order, b.Events...)
		if tl.owners == nil {
			tl.owners = map[string]int{}
		}
		tl.owners[owner] += b.Applied + b.Dead
	}
}

func (tl *tally) handled() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.applied + tl.dead + tl.repeat
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runWorker runs w until the test ends.
func runWorker(t testing.TB, w *stream.Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", w.ID, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newWorker(d *district, id string, tl *tally, in ...stream.Source) *stream.Worker {
	return &stream.Worker{Store: d.store, ID: id, In: in, LeaseTTL: 2 * time.Second, Poll: 20 * time.Millisecond, Batch: 50, RefWait: 300 * time.Millisecond,
		Log: slog.New(slog.NewJSONHandler(d.logs, nil)), OnBatch: tl.onBatch(id)}
}

func TestWorkerAppliesEventsAndDeadLettersBadOnes(t *testing.T) {
	pgtest.ForEachEngine(t, testWorkerAppliesEventsAndDeadLettersBadOnes)
}

func testWorkerAppliesEventsAndDeadLettersBadOnes(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	sis := d.client(t, []string{authz.AdminScope})
	in := stream.NewEmbedded(d.store, "inbox", 2)
	var m []stream.Message
	put := func(key string, data []byte) { m = append(m, stream.Message{Key: key, Data: data, Producer: sis}) }
	for i := range 10 {
		id := fmt.Sprintf("user-stream-%d", i)
		put(id, event("ev-u"+fmt.Sprint(i), "upsert", "user", id, student(id, testdistrict.SchoolA, "Family")))
		put(id, event("ev-e"+fmt.Sprint(i), "upsert", "enrollment", "enr-"+id, enrollment("enr-"+id, id, testdistrict.ClassMathA, testdistrict.SchoolA)))
	}
	put("user-stream-0", event("ev-u0", "upsert", "user", "user-stream-0", student("user-stream-0", testdistrict.SchoolA, "Again"))) // the same id: a repeat
	put("x", []byte(`{"version":1,"id":"ev-bad-json",`))                                                                             // does not parse
	put("x", event("ev-bad-entity", "upsert", "student", "s1", map[string]any{"sourcedId": "s1"}))                                   // no such entity
	bad := student("user-bad", testdistrict.SchoolA, "")
	delete(bad, "givenName")
	put("user-bad", event("ev-invalid", "upsert", "user", "user-bad", bad))                                             // fails validation
	put("user-orphan", event("ev-orphan", "upsert", "user", "user-orphan", student("user-orphan", "org-nowhere", "F"))) // refers to no org
	put("enr-minor-sci", event("ev-del", "delete", "enrollment", "enr-minor-sci", nil))                                 // applied
	put("user-gone", event("ev-del-absent", "delete", "user", "user-gone", nil))                                        // already absent: applied as a no-op
	put(testdistrict.Minor, event("ev-del-referred", "delete", "user", testdistrict.Minor, nil))                        // still enrolled: conflict
	if err := in.Put(ctx, m); err != nil {
		t.Fatal(err)
	}
	tl := &tally{}
	runWorker(t, newWorker(d, "w1", tl, stream.Source{Stream: in}))
	waitFor(t, "every record handled", 20*time.Second, func() bool { return tl.handled() == len(m) })

	if tl.applied != 22 || tl.dead != 5 || tl.repeat != 1 {
		t.Errorf("applied %d, dead %d, repeated %d; want 22, 5, 1", tl.applied, tl.dead, tl.repeat)
	}
	if n := d.count(t, "SELECT COUNT(*) FROM users WHERE sourced_id LIKE 'user-stream-%' AND family_name = 'Family'"); n != 10 {
		t.Errorf("got %d stream users, want 10 (the repeat must not apply)", n)
	}
	if n := d.count(t, "SELECT COUNT(*) FROM enrollments WHERE sourced_id = 'enr-minor-sci'"); n != 0 {
		t.Errorf("the deleted enrollment is still there")
	}
	dls, err := d.store.DeadLetters(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, dl := range dls {
		reasons[dl.EventID] = dl.Reason
	}
	for id, want := range map[string]string{"": "not a JSON object", "ev-bad-entity": "not a OneRoster entity", "ev-invalid": "givenName: is required",
		"ev-orphan": "does not exist", "ev-del-referred": "still referred to"} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("dead letter %q: reason %q does not say %q", id, reasons[id], want)
		}
	}
	// One audit event per handled event, naming the SIS.
	if n := d.count(t, "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'stream.%' AND principal = ?", "client:"+sis); n != 27 {
		t.Errorf("got %d stream audit events by the SIS, want 27 (22 applied + 5 dead letters)", n)
	}
	if _, err := d.store.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}

func TestWorkerAppliesOnlyWhatTheClientsScopeAllows(t *testing.T) {
	pgtest.ForEachEngine(t, testWorkerAppliesOnlyWhatTheClientsScopeAllows)
}

func testWorkerAppliesOnlyWhatTheClientsScopeAllows(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	schoolB := d.client(t, []string{authz.AdminScope}, testdistrict.SchoolB)
	gradebook := d.client(t, []string{authz.GradebookCreatePut, authz.GradebookReadonly, authz.RosterReadonly})
	in := stream.NewEmbedded(d.store, "inbox", 1)
	result := map[string]any{"sourcedId": "result-stream", "status": "active", "lineItem": ref(testdistrict.LineItemA, "lineItem"), "student": ref(testdistrict.Student3, "user"),
		"scoreStatus": "fully graded", "score": 88, "scoreDate": "2026-09-10"}
	msgs := []stream.Message{
		{Key: "a", Producer: schoolB, Data: event("ev-1", "upsert", "user", "user-in-a", student("user-in-a", testdistrict.SchoolA, "F"))}, // another school's
		{Key: "a", Producer: schoolB, Data: event("ev-2", "upsert", "user", "user-in-b", student("user-in-b", testdistrict.SchoolB, "F"))}, // its own
		{Key: "a", Producer: schoolB, Data: event("ev-3", "delete", "enrollment", "enr-minor-math", nil)},                                  // another school's row
		{Key: "a", Producer: gradebook, Data: event("ev-4", "upsert", "user", "user-gb", student("user-gb", testdistrict.SchoolA, "F"))},   // rostering: no
		{Key: "a", Producer: gradebook, Data: event("ev-5", "upsert", "result", "result-stream", result)},                                  // gradebook: yes
	}
	if err := in.Put(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	tl := &tally{}
	runWorker(t, newWorker(d, "w1", tl, stream.Source{Stream: in}))
	waitFor(t, "every record handled", 20*time.Second, func() bool { return tl.handled() == len(msgs) })
	for _, c := range []struct {
		q    string
		want int
	}{
		{"SELECT COUNT(*) FROM users WHERE sourced_id = 'user-in-a'", 0},
		{"SELECT COUNT(*) FROM users WHERE sourced_id = 'user-in-b'", 1},
		{"SELECT COUNT(*) FROM enrollments WHERE sourced_id = 'enr-minor-math'", 1},
		{"SELECT COUNT(*) FROM users WHERE sourced_id = 'user-gb'", 0},
		{"SELECT COUNT(*) FROM results WHERE sourced_id = 'result-stream'", 1},
		{"SELECT COUNT(*) FROM stream_dead_letters", 3},
		{"SELECT COUNT(*) FROM audit_events WHERE action LIKE 'stream.%' AND principal = 'client:" + gradebook + "'", 2},
	} {
		if n := d.count(t, c.q); n != c.want {
			t.Errorf("%s: got %d, want %d", c.q, n, c.want)
		}
	}
}

func TestAReplayedBatchLeavesNoDuplicate(t *testing.T) {
	pgtest.ForEachEngine(t, testAReplayedBatchLeavesNoDuplicate)
}

func testAReplayedBatchLeavesNoDuplicate(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	sis := d.client(t, []string{authz.AdminScope})
	in := stream.NewEmbedded(d.store, "inbox", 1)
	var msgs []stream.Message
	for i := range 30 {
		id := fmt.Sprintf("user-r-%d", i)
		msgs = append(msgs, stream.Message{Key: id, Producer: sis, Data: event("ev-"+id, "upsert", "user", id, student(id, testdistrict.SchoolA, "F"))})
	}
	if err := in.Put(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	tl := &tally{}
	stop := runWorker(t, newWorker(d, "w1", tl, stream.Source{Stream: in}))
	waitFor(t, "first pass", 20*time.Second, func() bool { return tl.handled() == 30 })
	stop()
	// A crash between applying and checkpointing would replay the shard: simulate the
	// worst case, a checkpoint lost entirely, and put every event again besides.
	if err := d.store.SetStreamCheckpoint(ctx, "in/embedded:inbox/shard-0000", ""); err != nil {
		t.Fatal(err)
	}
	if err := in.Put(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	tl2 := &tally{}
	runWorker(t, newWorker(d, "w2", tl2, stream.Source{Stream: in}))
	waitFor(t, "replay", 20*time.Second, func() bool { return tl2.handled() == 60 })
	if tl2.applied != 0 || tl2.repeat != 60 {
		t.Errorf("replay applied %d and skipped %d, want 0 and 60", tl2.applied, tl2.repeat)
	}
	if n := d.count(t, "SELECT COUNT(*) FROM changes WHERE sourced_id LIKE 'user-r-%'"); n != 30 {
		t.Errorf("got %d changes, want 30: a replay wrote again", n)
	}
	if n := d.count(t, "SELECT COUNT(*) FROM audit_events WHERE action = 'stream.upsert'"); n != 30 {
		t.Errorf("got %d audit events, want 30", n)
	}
}

func TestWorkersShareShardsAndTakeOverExpiredLeases(t *testing.T) {
	pgtest.ForEachEngine(t, testWorkersShareShardsAndTakeOverExpiredLeases)
}

func testWorkersShareShardsAndTakeOverExpiredLeases(t *testing.T) {
	d := newDistrict(t)
	ctx := context.Background()
	sis := d.client(t, []string{authz.AdminScope})
	in := stream.NewEmbedded(d.store, "inbox", 4)
	// A worker that died holding two shards: its leases run out in a second.
	for _, sh := range []string{"shard-0000", "shard-0001"} {
		if ok, err := d.store.AcquireLease(ctx, "in/embedded:inbox/"+sh, "dead-worker", time.Second); err != nil || !ok {
			t.Fatalf("ghost lease: %v %v", ok, err)
		}
	}
	tl := &tally{}
	runWorker(t, newWorker(d, "w1", tl, stream.Source{Stream: in, Client: sis}))
	runWorker(t, newWorker(d, "w2", tl, stream.Source{Stream: in, Client: sis}))
	var msgs []stream.Message
	for i := range 400 {
		id := fmt.Sprintf("user-s-%d", i)
		msgs = append(msgs, stream.Message{Key: id, Producer: sis, Data: event("ev-"+id, "upsert", "user", id, student(id, testdistrict.SchoolA, "F"))})
	}
	if err := in.Put(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all 400 applied", 30*time.Second, func() bool { return tl.handled() == 400 })
	if tl.applied != 400 {
		t.Errorf("applied %d, want 400", tl.applied)
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.owners["w1"] == 0 || tl.owners["w2"] == 0 {
		t.Errorf("work by worker: %v; want both to hold shards", tl.owners)
	}
	leases, err := d.store.Leases(ctx, "in/")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Owner == "dead-worker" {
			t.Errorf("lease %s still held by the dead worker", l.Name)
		}
	}
	if n := d.count(t, "SELECT COUNT(*) FROM audit_events WHERE action = 'stream.upsert'"); n != 400 {
		t.Errorf("got %d audit events, want 400", n)
	}
}
