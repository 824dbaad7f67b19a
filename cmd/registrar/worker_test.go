package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"registrar/internal/testdistrict"
	"registrar/stream"
	"registrar/stream/streamtest"
)

// workerCleanEnv is the environment without registrar's settings, so the flags rule.
func workerCleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRAR_") {
			out = append(out, kv)
		}
	}
	return out
}

// workerCount runs a COUNT query on the data dir's database.
func workerCount(t *testing.T, dir, q string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "registrar.db")+"?_pragma=busy_timeout(10000)&mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func workerEvent(i int) stream.Message {
	id := fmt.Sprintf("user-k9-%d", i)
	obj := map[string]any{"sourcedId": id, "status": "active", "enabledUser": "true", "givenName": "Kill", "familyName": "Nine",
		"roles": []any{map[string]any{"roleType": "primary", "role": "student", "org": map[string]any{"sourcedId": "org-k9", "type": "org"}}},
		"email": id + "." + testdistrict.Canary + "@example.org"}
	b, _ := json.Marshal(map[string]any{"version": 1, "id": "ev-" + id, "op": "upsert", "entity": "user", "sourcedId": id, "object": obj})
	return stream.Message{Key: id, Data: b}
}

// TestWorkerKilledMidBatchIsTakenOverAndAppliesEachEventOnce runs two `registrar
// worker` processes on one data dir and one Kinesis stream (on the emulator), kills
// the first with SIGKILL while it applies, and checks that the second takes its shards
// when the lease expires and that every event is applied exactly once in effect: one
// row, one change, one audit event each.
func TestWorkerKilledMidBatchIsTakenOverAndAppliesEachEventOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs subprocesses")
	}
	ep := streamtest.Endpoint(t)
	t.Cleanup(streamtest.Stop) // only this package's test uses it: end it with the test
	bin := filepath.Join(t.TempDir(), "registrar")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	dir := t.TempDir()
	env := append(workerCleanEnv(), "AWS_ACCESS_KEY_ID=registrar-test", "AWS_SECRET_ACCESS_KEY=registrar-test", "AWS_EC2_METADATA_DISABLED=true")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("registrar %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("clients", "create", "--data", dir, "--name", "SIS (synthetic)", "--scope", "admin", "--orgs", "*")
	m := regexp.MustCompile(`client_id:\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no client id in: %s", out)
	}
	sis := m[1]

	// The org the events refer to, then 1500 events on a 4-shard stream: events that
	// meet the org before it is written wait for it (RefWait) instead of failing.
	name := streamtest.StreamName(t)
	k := streamtest.New(t, name, 4, nil)
	ctx := context.Background()
	org, _ := json.Marshal(map[string]any{"version": 1, "id": "ev-org-k9", "op": "upsert", "entity": "org", "sourcedId": "org-k9",
		"object": map[string]any{"sourcedId": "org-k9", "status": "active", "name": "Kill Nine School", "type": "school"}})
	if err := k.Put(ctx, []stream.Message{{Key: "org-k9", Data: org}}); err != nil {
		t.Fatal(err)
	}
	const n = 1500
	var msgs []stream.Message
	for i := range n {
		msgs = append(msgs, workerEvent(i))
	}
	if err := k.Put(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	start := func(id string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, "worker", "--data", dir, "--kinesis-in", name, "--aws-endpoint", ep, "--aws-region", "us-east-1",
			"--sis-client", sis, "--lease-ttl", "2s", "--batch", "25", "--worker-id", id, "--instance-id", "chain-"+id, "--log-level", "warn")
		cmd.Env = env
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("worker %s output:\n%s", id, logs.String())
			}
		})
		return cmd, &logs
	}
	applied := func() int {
		return workerCount(t, dir, "SELECT COUNT(*) FROM audit_events WHERE action = 'stream.upsert'")
	}

	a, _ := start("A")
	deadline := time.Now().Add(60 * time.Second)
	for applied() < 200 {
		if time.Now().After(deadline) {
			t.Fatal("worker A applied fewer than 200 events in 60s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.Process.Kill(); err != nil { // SIGKILL: no lease is given back, the batch in hand is cut off
		t.Fatal(err)
	}
	_ = a.Wait()
	atKill := applied()
	if atKill >= n+1 {
		t.Fatalf("worker A finished everything (%d) before it was killed: the test proves nothing", atKill)
	}
	held := workerCount(t, dir, "SELECT COUNT(*) FROM stream_leases WHERE name LIKE 'in/kinesis:%' AND owner = 'A'")
	if held == 0 {
		t.Fatal("worker A held no shard lease when it died")
	}

	start("B")
	deadline = time.Now().Add(90 * time.Second)
	for applied() < n+1 {
		if time.Now().After(deadline) {
			t.Fatalf("after the takeover %d of %d events were applied", applied(), n+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything applied twice would show now

	for q, want := range map[string]int{
		"SELECT COUNT(*) FROM audit_events WHERE action = 'stream.upsert'":                  n + 1,
		"SELECT COUNT(*) FROM users WHERE sourced_id LIKE 'user-k9-%'":                      n,
		"SELECT COUNT(*) FROM changes WHERE sourced_id LIKE 'user-k9-%'":                    n,
		"SELECT COUNT(*) FROM stream_inbox WHERE outcome = 'applied'":                       n + 1,
		"SELECT COUNT(*) FROM stream_dead_letters":                                          0,
		"SELECT COUNT(*) FROM stream_leases WHERE name LIKE 'in/kinesis:%' AND owner = 'A'": 0,
	} {
		if got := workerCount(t, dir, q); got != want {
			t.Errorf("%s: got %d, want %d", q, got, want)
		}
	}
	if got := workerCount(t, dir, "SELECT COALESCE(SUM(takeovers), 0) FROM stream_leases WHERE name LIKE 'in/kinesis:%'"); got < held {
		t.Errorf("%d takeovers recorded, want at least the %d shards A held", got, held)
	}
	t.Logf("A applied %d before SIGKILL holding %d shard(s); B took over and finished", atKill, held)
	run("audit", "verify", "--data", dir)
}
