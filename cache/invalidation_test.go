package cache_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"registrar/authz"
	"registrar/cache"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// TestCachedAccessEndsAtOnce: the cache must not weaken security. For each change
// that ends or moves someone's access, the access is used first (so the token and
// the scope are cached, which the test checks), then the change is written as a
// roster write is, and the very next request must already see it.
func TestCachedAccessEndsAtOnce(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name string
		mk   func(t *testing.T) func(*vault.Vault) cache.Cache
	}{
		{"memory", func(t *testing.T) func(*vault.Vault) cache.Cache { return memoryCache() }},
		{"memory in front of redis", func(t *testing.T) func(*vault.Vault) cache.Cache {
			return wiredRedis(t, cache.RedisOptions{Addr: redisAddr(t), Timeout: time.Second}, 0)
		}},
		{"redis alone", func(t *testing.T) func(*vault.Vault) cache.Cache {
			return sealedRedis(t, cache.RedisOptions{Addr: redisAddr(t), Timeout: time.Second})
		}},
	}
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness, warm func(path, tok string, want int))
	}{
		{"a revoked client is refused although its token is cached", func(t *testing.T, h *harness, warm func(string, string, int)) {
			id, tok := h.client([]string{authz.RosterReadonly}, testdistrict.District)
			warm(student+testdistrict.Minor, tok, 200)
			if err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, id) }); err != nil {
				t.Fatal(err)
			}
			expect(t, h, student+testdistrict.Minor, tok, 401)
		}},
		{"a disabled teacher is refused although their token is cached", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.TeacherA)
			warm(student+testdistrict.Minor, tok, 200)
			h.put(records.User, testdistrict.TeacherA, func(o records.Object) { o["enabledUser"] = "false" })
			expect(t, h, student+testdistrict.Minor, tok, 401)
		}},
		{"a disabled administrator is refused although their scope is cached", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.Admin)
			warm(student+testdistrict.Minor, tok, 200)
			h.put(records.User, testdistrict.Admin, func(o records.Object) { o["status"] = records.StatusToBeDeleted })
			expect(t, h, student+testdistrict.Minor, tok, 401)
		}},
		{"a parent unlinked from a child loses the child", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.Guardian)
			warm(student+testdistrict.Minor, tok, 200)
			h.put(records.User, testdistrict.Guardian, func(o records.Object) { delete(o, "agents") })
			expect(t, h, student+testdistrict.Minor, tok, 404)
		}},
		{"a principal moved to another school sees that school instead", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.PrincipalA)
			warm(student+testdistrict.Minor, tok, 200)
			warm(student+testdistrict.StudentB, tok, 404)
			h.put(records.User, testdistrict.PrincipalA, func(o records.Object) {
				o["roles"] = []records.Role{{RoleType: "primary", Role: "principal", Org: testdistrict.SchoolB}}
				o["primaryOrg"] = testdistrict.SchoolB
			})
			expect(t, h, student+testdistrict.Minor, tok, 404)
			expect(t, h, student+testdistrict.StudentB, tok, 200)
		}},
		{"a school moved under a district widens that district's client", func(t *testing.T, h *harness, warm func(string, string, int)) {
			_, tok := h.client([]string{authz.RosterReadonly}, testdistrict.District)
			warm(student+testdistrict.StudentC, tok, 404)
			h.put(records.Org, testdistrict.SchoolC, func(o records.Object) { o["parent"] = testdistrict.District })
			expect(t, h, student+testdistrict.StudentC, tok, 200)
		}},
		{"a corrected birth date gives a parent back a minor child", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.Guardian2)
			before := h.status(student+testdistrict.Eligible, tok)
			if before == 200 {
				t.Fatalf("the parent of an eligible student reads the record (%d)", before)
			}
			warm(student+testdistrict.Eligible, tok, before)
			h.put(records.Demographics, testdistrict.Eligible, func(o records.Object) { o["birthDate"] = "2012-01-01" })
			expect(t, h, student+testdistrict.Eligible, tok, 200)
		}},
		{"a counselor given a caseload loses the school's other students, and gets them back when it is cleared", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.Counselor)
			warm(student+testdistrict.Eligible, tok, 200)
			h.write(func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.SetCaseload(ctx, testdistrict.Counselor, []string{testdistrict.Minor}, "user:"+testdistrict.Admin)
				return err
			})
			expect(t, h, student+testdistrict.Eligible, tok, 404)
			warm(student+testdistrict.Minor, tok, 200)
			h.write(func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.ClearCaseload(ctx, testdistrict.Counselor)
				return err
			})
			expect(t, h, student+testdistrict.Eligible, tok, 200)
		}},
		{"a dependency flag gives a parent back an eligible student, and its removal takes it away", func(t *testing.T, h *harness, warm func(string, string, int)) {
			tok := h.user(testdistrict.Guardian2)
			warm(student+testdistrict.Eligible, tok, 404)
			h.write(func(ctx context.Context, tx *sqlstore.Tx) error {
				_, _, err := tx.SetDependent(ctx, testdistrict.Eligible, testdistrict.Guardian2, "user:"+testdistrict.Admin)
				return err
			})
			expect(t, h, student+testdistrict.Eligible, tok, 200)
			warm(student+testdistrict.Eligible, tok, 200)
			h.write(func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.ClearDependent(ctx, testdistrict.Eligible, testdistrict.Guardian2)
				return err
			})
			expect(t, h, student+testdistrict.Eligible, tok, 404)
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			mk := b.mk(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					h := newHarness(t, mk)
					warm := func(path, tok string, want int) {
						t.Helper()
						before := h.cache.Stats().Hits
						for range 3 {
							expect(t, h, path, tok, want)
						}
						if h.cache.Stats().Hits-before < 2 {
							t.Fatalf("warming up hit the cache %d times: the test would not see a stale entry", h.cache.Stats().Hits-before)
						}
					}
					c.run(t, h, warm)
				})
			}
		})
	}
}

// write runs fn as a write of the store, as the API's caseload and dependency
// routes do.
func (h *harness) write(fn func(context.Context, *sqlstore.Tx) error) {
	h.t.Helper()
	if err := h.store.Write(context.Background(), fn); err != nil {
		h.t.Fatal(err)
	}
}

func expect(t *testing.T, h *harness, path, tok string, want int) {
	t.Helper()
	if r := h.do("GET", path, tok, ""); r.status != want {
		t.Errorf("GET %s: status %d, want %d: %s", path, r.status, want, r.body)
	}
}

// TestScopesFollowTheGeneration shows what keeps cached scopes correct: with the
// store's change log a roster write is seen by the next resolve; with a log that
// never moves (the control) the stale scope is served, so the test above can fail.
func TestScopesFollowTheGeneration(t *testing.T) {
	t.Parallel()
	for _, frozen := range []bool{false, true} {
		name := map[bool]string{false: "with the change log the next resolve sees the write", true: "control: with a frozen log the stale scope is served"}[frozen]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			ctx := context.Background()
			log := changeLog(h.store)
			if frozen {
				log = func(context.Context, int64, int) ([]cache.Change, error) { return nil, nil }
			}
			c := cache.NewMemory(cache.MemoryOptions{})
			scopes := cache.NewScopes(c, h.store, cache.NewGenerations(log, cache.RosterEntities), time.Minute)
			p := &authz.Principal{Kind: "user", ID: testdistrict.Guardian}
			resolve := func() *authz.Scope {
				t.Helper()
				sc, err := scopes.Resolve(ctx, p, testdistrict.Today)
				if err != nil {
					t.Fatal(err)
				}
				return sc
			}
			if sc := resolve(); !slices.Contains(sc.Students, testdistrict.Minor) {
				t.Fatalf("the parent's scope %v lacks the child", sc.Students)
			}
			resolve()
			if c.Stats().Hits != 1 {
				t.Fatalf("%d hits, want 1", c.Stats().Hits)
			}
			h.put(records.User, testdistrict.Guardian, func(o records.Object) { delete(o, "agents") })
			stale := slices.Contains(resolve().Students, testdistrict.Minor)
			if stale != frozen {
				t.Errorf("after the unlink the scope still holds the child: %v, want %v", stale, frozen)
			}
		})
	}
}

// TestCachedScopeEqualsResolved: for every person of the test district, and for
// clients of one org and of every org, the scope served from the cache is the
// scope authz.Resolve computes, and it is served from the cache.
func TestCachedScopeEqualsResolved(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	c := cache.NewSealed(cache.NewMemory(cache.MemoryOptions{}), keysOf(t, h.vault))
	scopes := cache.NewScopes(c, h.store, cache.NewGenerations(changeLog(h.store), cache.RosterEntities), time.Minute)
	var principals []*authz.Principal
	for _, eo := range testdistrict.Objects() {
		if eo.E == records.User {
			principals = append(principals, &authz.Principal{Kind: "user", ID: eo.O.ID()})
		}
	}
	principals = append(principals,
		&authz.Principal{Kind: "client", ID: "c1", Orgs: []string{testdistrict.SchoolA}},
		&authz.Principal{Kind: "client", ID: "c2", Orgs: []string{testdistrict.District2, testdistrict.SchoolB}},
		&authz.Principal{Kind: "client", ID: "c3", Orgs: []string{authz.AllOrgs}})
	// Those whose scope takes more than one Directory call are served from the
	// cache; the others (teachers, students, the disabled, the client of every org)
	// are resolved directly, as reading the generation would cost what it saves.
	cached := map[string]bool{testdistrict.Admin: true, testdistrict.PrincipalA: true, testdistrict.Counselor: true,
		testdistrict.Guardian: true, testdistrict.Guardian2: true, "c1": true, "c2": true}
	for _, p := range principals {
		want, err := authz.Resolve(ctx, h.store, p, testdistrict.Today)
		if err != nil {
			t.Fatal(err)
		}
		before := c.Stats().Hits
		for range 2 {
			got, err := scopes.Resolve(ctx, p, testdistrict.Today)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range records.Entities {
				if g, w := got.Rows(e), want.Rows(e); g.SQL != w.SQL || !slices.Equal(g.Args, w.Args) {
					t.Errorf("%s %s, %s: cached predicate %q %v, resolved %q %v", p.Kind, p.ID, e.Name, g.SQL, g.Args, w.SQL, w.Args)
				}
				if got.CanRead(e) != want.CanRead(e) {
					t.Errorf("%s %s, %s: CanRead differs", p.Kind, p.ID, e.Name)
				}
				for _, a := range []string{authz.WritePut, authz.WritePost, authz.WriteDelete} {
					if got.CanWrite(e, a) != want.CanWrite(e, a) {
						t.Errorf("%s %s, %s: CanWrite(%s) differs", p.Kind, p.ID, e.Name, a)
					}
				}
				for i := range e.Fields {
					if f := &e.Fields[i]; got.Hidden(e, f) != want.Hidden(e, f) {
						t.Errorf("%s %s, %s.%s: Hidden differs", p.Kind, p.ID, e.Name, f.Name)
					}
				}
			}
			if got.Denied() != want.Denied() || got.Admin() != want.Admin() || !slices.Equal(got.Eligible, want.Eligible) || got.P != p {
				t.Errorf("%s %s: cached scope differs: %+v, want %+v", p.Kind, p.ID, got, want)
			}
		}
		if hits, want := c.Stats().Hits-before, map[bool]uint64{true: 1, false: 0}[cached[p.ID]]; hits != want {
			t.Errorf("%s %s: %d hits in two resolves, want %d", p.Kind, p.ID, hits, want)
		}
	}
}

// TestCachedTokenNotHonouredPastExpiry: even a cache that kept an entry forever
// cannot extend a token: the claims' expiry is checked on every hit.
func TestCachedTokenNotHonouredPastExpiry(t *testing.T) {
	t.Parallel()
	forever := &foreverCache{m: map[string][]byte{}}
	h := newHarness(t, func(*vault.Vault) cache.Cache { return forever })
	// The authenticator's clock is the real one: a token of a few seconds (exp has
	// whole seconds) outlives two requests on a loaded machine, and then expires.
	tok, err := h.auth.IssueUserToken(testdistrict.TeacherA, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, h, student+testdistrict.Minor, tok, 200)
	expect(t, h, student+testdistrict.Minor, tok, 200)
	if forever.hits() == 0 {
		t.Fatal("the token's claims were not served from the cache")
	}
	waitFor(t, "the expired token is still accepted", 10*time.Second, func() bool {
		return h.status(student+testdistrict.Minor, tok) == 401
	})
}

// foreverCache is a Cache that ignores TTLs (a hand-written fake).
type foreverCache struct {
	mu sync.Mutex
	m  map[string][]byte
	n  uint64
}

func (f *foreverCache) Get(_ context.Context, key string) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[key]
	if ok {
		f.n++
	}
	return v, ok, nil
}

func (f *foreverCache) Set(_ context.Context, key string, val []byte, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[key] = append([]byte(nil), val...)
	return nil
}

func (f *foreverCache) hits() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *foreverCache) Delete(context.Context, ...string) error { return nil }
func (f *foreverCache) Ping(context.Context) error              { return nil }
func (f *foreverCache) Stats() cache.Stats                      { return cache.Stats{Backend: "forever"} }
func (f *foreverCache) Close() error                            { return nil }
