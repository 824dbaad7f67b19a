package cache_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/cache"
	"registrar/httpapi"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// harness is the HTTP server over a real SQLite store holding the test district,
// with a cache (or none) wired as cmd/registrar wires it: the authenticator keeps
// verified tokens in it and the server keeps scopes in it.
type harness struct {
	t     testing.TB
	vault *vault.Vault
	store *sqlstore.Store
	auth  *authn.Authenticator
	cache cache.Cache
	srv   *httptest.Server
	logs  *lockedBuffer
}

const (
	roster  = "/ims/oneroster/rostering/v1p2"
	grades  = "/ims/oneroster/gradebook/v1p2"
	tokTTL  = 5 * time.Minute
	student = roster + "/students/"
)

// newHarness starts a server; mkCache builds its cache from the vault (nil: none).
func newHarness(t testing.TB, mkCache func(v *vault.Vault) cache.Cache) *harness {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: filepath.Join(dir, "registrar.db"), Chain: "test", Vault: v, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := testdistrict.Load(ctx, st); err != nil {
		t.Fatalf("load district: %v", err)
	}
	auth, err := authn.New(st, v, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, vault: v, store: st, auth: auth, logs: logs}
	if mkCache != nil {
		h.cache = mkCache(v)
		auth.SetVerifiedCache(h.cache, tokTTL)
	}
	jwks, _ := authn.JWKS(v)
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC, JWKS: jwks, Cache: h.cache})
	s.SetClock(func() time.Time { return testdistrict.Today })
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

// memoryCache and wiredRedis build caches as cmd/registrar does: the in-process
// cache alone, or in front of sealed Redis (near entries live nearTTL; 0: 5s).
func memoryCache() func(v *vault.Vault) cache.Cache {
	return func(*vault.Vault) cache.Cache { return cache.NewMemory(cache.MemoryOptions{}) }
}

func wiredRedis(t testing.TB, o cache.RedisOptions, nearTTL time.Duration) func(v *vault.Vault) cache.Cache {
	return func(v *vault.Vault) cache.Cache {
		return cache.NewTiered(cache.NewMemory(cache.MemoryOptions{}), cache.NewSealed(newRedis(t, o), keysOf(t, v)), nearTTL)
	}
}

// sealedRedis is Redis alone (sealed), without the near level: every read is a
// round trip.
func sealedRedis(t testing.TB, o cache.RedisOptions) func(v *vault.Vault) cache.Cache {
	return func(v *vault.Vault) cache.Cache { return cache.NewSealed(newRedis(t, o), keysOf(t, v)) }
}

// client registers an API client and returns its id and a token for it.
func (h *harness) client(scopes []string, orgs ...string) (id, token string) {
	h.t.Helper()
	if len(orgs) == 0 {
		orgs = []string{authz.AllOrgs}
	}
	secret, hash := authn.NewSecret()
	c := records.Client{ID: vault.RandomID(), Name: "cache test client", SecretHash: hash, Scopes: scopes, Orgs: orgs, LegalBasis: authz.BasisSchoolOfficial, Purpose: "testing"}
	if err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }); err != nil {
		h.t.Fatal(err)
	}
	tok, err := h.auth.IssueClientToken(context.Background(), c.ID, secret, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return c.ID, tok.AccessToken
}

// user returns a local token for a roster user.
func (h *harness) user(id string) string {
	h.t.Helper()
	tok, err := h.auth.IssueUserToken(id, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	body   []byte
}

func (h *harness) do(method, path, token, body string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{resp.StatusCode, b}
}

func (h *harness) status(path, token string) int { return h.do("GET", path, token, "").status }

// readyz returns /readyz's status and its cache check.
func (h *harness) readyz() (int, string) {
	h.t.Helper()
	r := h.do("GET", "/readyz", "", "")
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		h.t.Fatalf("readyz: %v: %s", err, r.body)
	}
	return r.status, body.Checks["cache"]
}

// metric returns the value of a metric line ("name{labels} value") from /metrics.
func (h *harness) metric(name string) string {
	h.t.Helper()
	r := h.do("GET", "/metrics", "", "")
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

// put replaces one object of the test district, changed by edit, as a roster
// write (an import, a stream event) would: in one transaction with its change.
func (h *harness) put(e *records.Entity, id string, edit func(records.Object)) {
	h.t.Helper()
	var obj records.Object
	for _, eo := range testdistrict.Objects() {
		if eo.E == e && eo.O.ID() == id {
			obj = maps.Clone(eo.O)
		}
	}
	if obj == nil {
		h.t.Fatalf("no %s %s in the test district", e.Name, id)
	}
	edit(obj)
	if errs := records.Validate(e, obj); len(errs) > 0 {
		h.t.Fatalf("edited %s %s does not validate: %v", e.Name, id, errs)
	}
	err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.Put(ctx, e, obj, sqlstore.PutOptions{})
		return err
	})
	if err != nil {
		h.t.Fatalf("put %s %s: %v", e.Name, id, err)
	}
}

// changeLog adapts the store's change log as httpapi does.
func changeLog(st *sqlstore.Store) cache.ChangeLog {
	return func(ctx context.Context, after int64, limit int) ([]cache.Change, error) {
		cs, err := st.ChangesAfter(ctx, after, limit)
		out := make([]cache.Change, len(cs))
		for i, c := range cs {
			out[i] = cache.Change{ID: c.ID, Entity: c.Entity}
		}
		return out, err
	}
}

// load runs GET path with token from n goroutines until stop is closed, and
// counts the statuses.
func (h *harness) load(n int, path, token string, stop <-chan struct{}) func() map[int]int {
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				status := 0
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				counts[status]++
				mu.Unlock()
			}
		})
	}
	return func() map[int]int {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts)
	}
}
