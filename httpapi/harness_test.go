package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/httpapi"
	"registrar/internal/pgtest"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// harness is a server over a real SQLite (or PostgreSQL) store loaded with the test district.
type harness struct {
	t     testing.TB
	store *sqlstore.Store
	auth  *authn.Authenticator
	srv   *httptest.Server
	logs  *strings.Builder
	lw    *lockedWriter
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessOn(t, "")
}

// newHarnessOn is newHarness on the PostgreSQL database at pgURL ("" for SQLite).
func newHarnessOn(t testing.TB, pgURL string) *harness {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	lw := &lockedWriter{w: logs}
	log := slog.New(slog.NewJSONHandler(lw, nil))
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: dir + "/registrar.db", URL: pgURL, Chain: "test", Vault: v, Logger: log})
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
	jwks, _ := authn.JWKS(v)
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC, JWKS: jwks})
	s.SetClock(func() time.Time { return testdistrict.Today })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &harness{t: t, store: st, auth: auth, srv: srv, logs: logs, lw: lw}
}

// client registers an API client and returns a token for it.
func (h *harness) client(scopes []string, orgs ...string) string {
	h.t.Helper()
	if len(orgs) == 0 {
		orgs = []string{"*"}
	}
	secret, hash := authn.NewSecret()
	c := records.Client{ID: vault.RandomID(), Name: "test client", SecretHash: hash, Scopes: scopes, Orgs: orgs, LegalBasis: authz.BasisSchoolOfficial, Purpose: "testing"}
	if err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }); err != nil {
		h.t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", h.srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		h.t.Fatalf("token: status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		h.t.Fatal(err)
	}
	return tok.AccessToken
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
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	return m
}

func (h *harness) do(method, path, token string, body string) response {
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
	return response{resp.StatusCode, resp.Header, b}
}

// ids returns the sourcedIds of a collection response.
func ids(t *testing.T, r response, key string) []string {
	t.Helper()
	m := r.json(t)
	list, ok := m[key].([]any)
	if !ok {
		t.Fatalf("response has no %q list: %s", key, r.body)
	}
	var out []string
	for _, o := range list {
		out = append(out, o.(map[string]any)["sourcedId"].(string))
	}
	return out
}

// logText is what the server logged so far, the audit trail's copy included (FlushLog:
// it follows the commit from its own goroutine), read under the writer's lock.
func (h *harness) logText() string {
	h.t.Helper()
	if err := h.store.FlushLog(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.lw.mu.Lock()
	defer h.lw.mu.Unlock()
	return h.logs.String()
}

// engine is the test district's server on one store engine, with a token of every
// scope.
type engine struct {
	name string
	h    *harness
	tok  string
}

// bothEngines are the test district, with the assessment seeds, on SQLite and on a
// PostgreSQL database of its own (on the server pgtest.Shared gives), named as
// pgtest.ForEachEngine names them, for tests that send every input to both: what
// PostgreSQL refuses and SQLite takes (a NUL byte, text that is not UTF-8) shows
// only there.
func bothEngines(tb testing.TB) []engine {
	lite, liteTok := newWriteHarness(tb)
	pg, pgTok := newWriteHarnessOn(tb, pgtest.Shared(tb).NewDatabase(tb))
	return []engine{{"sqlite", lite, liteTok}, {"postgres", pg, pgTok}}
}
