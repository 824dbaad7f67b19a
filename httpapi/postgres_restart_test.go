package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/internal/pgtest"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// TestPostgresRestartThroughTheServer runs the HTTP server on a PostgreSQL server of
// its own and stops (fast shutdown) and restarts that server while clients write (PUT
// of results) and read (a list, one object, the change feed, /readyz, and tokens from
// client credentials). While the database is down every request must fail fast with
// 503 and Retry-After (never a 500, another error or a hang); after the restart
// requests succeed again by themselves; and every write the server acknowledged with
// a 2xx reads back afterwards.
func TestPostgresRestartThroughTheServer(t *testing.T) {
	t.Parallel()
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatalf("%v\n%s", err, pgtest.InstallHint)
	}
	t.Cleanup(srv.Close)
	h := newHarnessOn(t, srv.NewDatabase(t))
	tok := h.client([]string{authz.RosterReadonly, authz.GradebookReadonly, authz.GradebookCreatePut})
	// A client whose credentials the workers exchange for tokens while the database restarts.
	secret, hash := authn.NewSecret()
	cli := records.Client{ID: vault.RandomID(), Name: "restart test", SecretHash: hash, Scopes: []string{authz.RosterReadonly}, Orgs: []string{"*"},
		LegalBasis: authz.BasisSchoolOfficial, Purpose: "testing"}
	if err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, cli) }); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}

	const (
		up = iota
		down
		restarting
		recovered
	)
	type outcome struct {
		start, end int32 // phase when the request was sent and when it was answered
		method, id string
		score      int
		status     int // 0: no response
		retryAfter string
		took       time.Duration
		err        string
	}
	var (
		phase atomic.Int32
		mu    sync.Mutex
		out   []outcome
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	send := func(method, path, body string) (int, string, string, error) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, h.srv.URL+path, rd)
		switch {
		case path == "/oauth/token":
			req.SetBasicAuth(cli.ID, secret)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		case body != "":
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
		default:
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), nil
	}
	const gb = "/ims/oneroster/gradebook/v1p2"
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				o := outcome{start: phase.Load(), method: "GET"}
				var path, body string
				if w%2 == 0 {
					o.method, o.id, o.score = "PUT", fmt.Sprintf("restart-%d-%d", w, n), n%100
					path = gb + "/results/" + o.id
					body = fmt.Sprintf(`{"result":{"lineItem":{"sourcedId":%q},"student":{"sourcedId":%q},"scoreStatus":"fully graded","score":%d,"scoreDate":"2026-09-15"}}`,
						testdistrict.LineItemA, testdistrict.Minor, o.score)
				} else {
					// Reads of every kind: a list, one object, the change feed, the
					// readiness probe, and a token from client credentials.
					switch n % 5 {
					case 0:
						path = "/ims/oneroster/rostering/v1p2/classes/" + testdistrict.ClassMathA + "/students"
					case 1:
						path = gb + "/results/" + testdistrict.ResultMinA
					case 2:
						path = "/v1/changes?limit=5"
					case 3:
						path = "/readyz"
					case 4:
						o.method, path, body = "POST", "/oauth/token", "grant_type=client_credentials"
					}
					o.id = path
				}
				t0 := time.Now()
				status, ra, text, err := send(o.method, path, body)
				o.took, o.status, o.retryAfter, o.end = time.Since(t0), status, ra, phase.Load()
				if err != nil {
					o.err = err.Error()
				} else if status >= 300 {
					o.err = text
				}
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
				if status == http.StatusServiceUnavailable || err != nil {
					time.Sleep(20 * time.Millisecond) // a client honouring Retry-After would wait longer
				}
			}
		}()
	}
	snapshot := func() []outcome {
		mu.Lock()
		defer mu.Unlock()
		return append([]outcome(nil), out...)
	}
	ok := func(o outcome) bool { return o.status >= 200 && o.status < 300 }

	time.Sleep(time.Second)
	srv.Stop() // fast shutdown: sessions are terminated, open transactions roll back
	phase.Store(down)
	time.Sleep(2 * time.Second)
	phase.Store(restarting)
	if err := srv.Restart(); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	phase.Store(recovered)
	// The server comes back by itself: a write and a read succeed within a few seconds.
	deadline := time.Now().Add(20 * time.Second)
	var backAfter time.Duration
	restarted := time.Now()
	for {
		var put, get bool
		for _, o := range snapshot() {
			if o.start == recovered && ok(o) {
				put = put || o.method == "PUT"
				get = get || o.method == "GET"
			}
		}
		if put && get {
			backAfter = time.Since(restarted)
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no successful write and read within 20s of the restart; last answers: %v", tail(snapshot(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
	steady := len(snapshot())
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	all := snapshot()
	t.Logf("%d requests; back %s after the restart", len(all), backAfter.Round(time.Millisecond))

	var downCount, upOK int
	for i, o := range all {
		switch {
		case o.status == 0:
			t.Errorf("%s %s: no response: %s", o.method, o.id, o.err)
		case o.status >= 500 && o.status != http.StatusServiceUnavailable:
			t.Errorf("%s %s: status %d while the database restarted: %s", o.method, o.id, o.status, o.err)
		case o.status == http.StatusServiceUnavailable:
			if n, err := strconv.Atoi(o.retryAfter); err != nil || n <= 0 {
				t.Errorf("%s %s: 503 with Retry-After %q", o.method, o.id, o.retryAfter)
			}
		case !ok(o):
			t.Errorf("%s %s: status %d: %s", o.method, o.id, o.status, o.err)
		}
		if o.start == down && o.end == down {
			// Sent and answered while the database was down.
			downCount++
			if o.status != http.StatusServiceUnavailable {
				t.Errorf("%s %s while the database was down: status %d, want 503", o.method, o.id, o.status)
			}
			if o.took > 5*time.Second {
				t.Errorf("%s %s while the database was down took %s: not failing fast", o.method, o.id, o.took)
			}
		}
		if o.start == up && ok(o) {
			upOK++
		}
		if i >= steady && !ok(o) {
			t.Errorf("%s %s after the server was back: status %d: %s", o.method, o.id, o.status, o.err)
		}
	}
	if upOK == 0 || downCount < 5 || len(all)-steady < 5 {
		t.Errorf("too few requests to judge: %d succeeded before the stop, %d while down, %d after recovery", upOK, downCount, len(all)-steady)
	}

	// No lost writes: every acknowledged PUT reads back with its score.
	acked := 0
	for _, o := range all {
		if o.method != "PUT" || !ok(o) {
			continue
		}
		acked++
		r := h.do("GET", gb+"/results/"+o.id, tok, "")
		if r.status != http.StatusOK {
			t.Errorf("acknowledged write %s: GET gives %d: %s", o.id, r.status, r.body)
			continue
		}
		res, _ := r.json(t)["result"].(map[string]any)
		if res["score"] != float64(o.score) {
			t.Errorf("acknowledged write %s: score %v, want %d", o.id, res["score"], o.score)
		}
	}
	if acked == 0 {
		t.Error("no write was acknowledged")
	}
	t.Logf("%d answered while the database was down (all 503), %d writes acknowledged and read back", downCount, acked)
}

func tail[T any](l []T, n int) []T {
	if len(l) > n {
		return l[len(l)-n:]
	}
	return l
}
