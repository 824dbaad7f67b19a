package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"registrar/authz"
	"registrar/records"
	"registrar/vault"
)

// fakeClients is a hand-written Clients over maps.
type fakeClients struct {
	mu      sync.Mutex
	clients map[string]records.Client
	users   map[string]string // "claim=value" -> user id
}

func (f *fakeClients) Client(_ context.Context, id string) (records.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[id]
	if !ok {
		return c, &records.Error{Code: records.NotFound, Message: "no client"}
	}
	return c, nil
}

// RecentClient answers from the map, always current (the store's copy is tested in
// sqlstore).
func (f *fakeClients) RecentClient(ctx context.Context, id string) (records.Client, error) {
	return f.Client(ctx, id)
}

func (f *fakeClients) UserByClaim(_ context.Context, claim, value string) (string, error) {
	id, ok := f.users[claim+"="+value]
	if !ok {
		return "", &records.Error{Code: records.Unauthorized, Message: "no such user"}
	}
	return id, nil
}

func (f *fakeClients) edit(id string, fn func(c *records.Client)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clients[id]
	fn(&c)
	f.clients[id] = c
}

const secret = "s3cret-for-tests"

func newAuth(t *testing.T, oidc *OIDC) (*Authenticator, *fakeClients) {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeClients{clients: map[string]records.Client{
		"lms": {ID: "lms", Name: "LMS", SecretHash: HashSecret(secret), Scopes: []string{authz.RosterReadonly, authz.GradebookReadonly}, Orgs: []string{"d"}, LegalBasis: authz.BasisSchoolOfficial},
		"old": {ID: "old", Name: "Old", SecretHash: HashSecret(secret), Scopes: []string{authz.RosterReadonly}, RevokedAt: new(time.Now())},
	}, users: map[string]string{"email=minor@example.org": "user-minor", "username=mminor": "user-minor"}}
	a, err := New(fc, v, time.Hour, oidc)
	if err != nil {
		t.Fatal(err)
	}
	return a, fc
}

func TestIssueClientToken(t *testing.T) {
	t.Parallel()
	a, _ := newAuth(t, nil)
	tests := []struct {
		name, id, secret, scope string
		wantCode                string // OAuth error code, "" for a token
		wantScope               []string
	}{
		{"the right secret gets every granted scope", "lms", secret, "", "", []string{authz.RosterReadonly, authz.GradebookReadonly}},
		{"a short scope name narrows the token", "lms", secret, "roster.readonly", "", []string{authz.RosterReadonly}},
		{"a repeated scope is granted once", "lms", secret, "roster.readonly " + authz.RosterReadonly, "", []string{authz.RosterReadonly}},
		{"a wrong secret is invalid_client", "lms", "wrong", "", "invalid_client", nil},
		{"an empty secret is invalid_client", "lms", "", "", "invalid_client", nil},
		{"an unknown client is invalid_client", "nobody", secret, "", "invalid_client", nil},
		{"a revoked client is invalid_client", "old", secret, "", "invalid_client", nil},
		{"a scope not granted is invalid_scope", "lms", secret, "roster-demographics.readonly", "invalid_scope", nil},
		{"an unknown scope is invalid_scope", "lms", secret, "everything", "invalid_scope", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := a.IssueClientToken(context.Background(), tc.id, tc.secret, tc.scope)
			var oe *OAuthError
			switch {
			case tc.wantCode == "" && err != nil:
				t.Fatalf("got error %v, want a token", err)
			case tc.wantCode != "":
				if !errors.As(err, &oe) || oe.Code != tc.wantCode {
					t.Fatalf("got %v, want OAuth error %s", err, tc.wantCode)
				}
				return
			}
			p, err := a.Authenticate(context.Background(), tok.AccessToken)
			if err != nil {
				t.Fatalf("the issued token does not authenticate: %v", err)
			}
			if p.Kind != "client" || p.ID != tc.id || !slices.Equal(p.Scopes, tc.wantScope) {
				t.Errorf("got principal %+v, want client %s with scopes %v", p, tc.id, tc.wantScope)
			}
		})
	}
}

func TestClientTokensFollowTheClientsCurrentRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name       string
		change     func(a *Authenticator, fc *fakeClients)
		wantErr    bool
		wantScopes []string
	}{
		{"a scope taken from the client no longer counts", func(_ *Authenticator, fc *fakeClients) {
			fc.edit("lms", func(c *records.Client) { c.Scopes = []string{authz.RosterReadonly} })
		}, false, []string{authz.RosterReadonly}},
		{"a scope given to the client since does not widen the token", func(_ *Authenticator, fc *fakeClients) {
			fc.edit("lms", func(c *records.Client) { c.Scopes = append(c.Scopes, authz.RosterDemographics) })
		}, false, []string{authz.RosterReadonly, authz.GradebookReadonly}},
		{"a client revoked since is refused", func(_ *Authenticator, fc *fakeClients) {
			fc.edit("lms", func(c *records.Client) { c.RevokedAt = new(time.Now()) })
		}, true, nil},
		{"a client deleted since is refused", func(_ *Authenticator, fc *fakeClients) {
			fc.mu.Lock()
			delete(fc.clients, "lms")
			fc.mu.Unlock()
		}, true, nil},
		{"an expired token is refused", func(a *Authenticator, _ *fakeClients) {
			a.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, fc := newAuth(t, nil)
			tok, err := a.IssueClientToken(ctx, "lms", secret, "")
			if err != nil {
				t.Fatal(err)
			}
			tc.change(a, fc)
			p, err := a.Authenticate(ctx, tok.AccessToken)
			var ue *ErrUnauthenticated
			if tc.wantErr {
				if !errors.As(err, &ue) {
					t.Errorf("got %v, %v, want ErrUnauthenticated", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Scopes, tc.wantScopes) {
				t.Errorf("got scopes %v, want %v", p.Scopes, tc.wantScopes)
			}
		})
	}
}

func TestTokensOfAnotherInstallationDoNotVerify(t *testing.T) {
	t.Parallel()
	a1, _ := newAuth(t, nil)
	a2, _ := newAuth(t, nil)
	tok, err := a1.IssueUserToken("user-admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ue *ErrUnauthenticated
	if _, err := a2.Authenticate(context.Background(), tok); !errors.As(err, &ue) {
		t.Errorf("got %v, want ErrUnauthenticated", err)
	}
	if p, err := a1.Authenticate(context.Background(), tok); err != nil || p.Kind != "user" || p.ID != "user-admin" {
		t.Errorf("got %+v, %v, want user user-admin", p, err)
	}
}

// ---------------------------------------------------------------------------------
// OIDC against a provider in the test.

var b64 = base64.RawURLEncoding

type provider struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]any // the JWKS served
	issuer  string           // the issuer the discovery document names ("" for the server's URL)
	fail    bool
	fetches atomic.Int32
}

func newProvider(t *testing.T) *provider {
	t.Helper()
	p := &provider{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		iss, fail := p.issuer, p.fail
		p.mu.Unlock()
		if fail {
			http.Error(w, "down", 500)
			return
		}
		if iss == "" {
			iss = p.srv.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) publish(keys ...map[string]any) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

func ecJWK(k *ecdsa.PrivateKey, kid string) map[string]any {
	pt, err := k.PublicKey.ECDH()
	if err != nil {
		panic(err)
	}
	b := pt.Bytes()
	return map[string]any{"kty": "EC", "crv": "P-256", "x": b64.EncodeToString(b[1:33]), "y": b64.EncodeToString(b[33:]), "kid": kid, "use": "sig"}
}

func rsaJWK(k *rsa.PrivateKey, kid string) map[string]any {
	return map[string]any{"kty": "RSA", "n": b64.EncodeToString(k.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes()), "kid": kid}
}

func sign(t *testing.T, alg, kid string, key crypto.Signer, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]any{"alg": alg, "kid": kid, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	d := sha256.Sum256([]byte(in))
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	}
	return in + "." + b64.EncodeToString(sig)
}

// clock is a settable clock, safe for concurrent use.
type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func (p *provider) claims(c *clock) map[string]any {
	return map[string]any{"iss": p.srv.URL, "aud": "registrar", "sub": "x", "email": "minor@example.org", "username": "mminor",
		"iat": c.now().Unix(), "exp": c.now().Add(5 * time.Minute).Unix()}
}

func newOIDCAuth(t *testing.T, p *provider, claim string) (*Authenticator, *clock) {
	t.Helper()
	c := &clock{}
	c.set(time.Now())
	o := NewOIDC(p.srv.URL+"/", "registrar", claim) // a trailing slash is the same issuer
	o.SetClock(c.now)
	a, _ := newAuth(t, o)
	return a, c
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestOIDC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("an RSA key published without alg verifies RS256 tokens", func(t *testing.T) {
		p := newProvider(t)
		p.publish(rsaJWK(rsaKey, "r1"))
		a, c := newOIDCAuth(t, p, "email")
		pr, err := a.Authenticate(ctx, sign(t, "RS256", "r1", rsaKey, p.claims(c)))
		if err != nil || pr.ID != "user-minor" || pr.Kind != "user" {
			t.Errorf("got %+v, %v, want user-minor", pr, err)
		}
	})
	t.Run("the username claim maps to the roster user", func(t *testing.T) {
		p := newProvider(t)
		k := mustEC(t)
		p.publish(ecJWK(k, "e1"))
		a, c := newOIDCAuth(t, p, "username")
		pr, err := a.Authenticate(ctx, sign(t, "ES256", "e1", k, p.claims(c)))
		if err != nil || pr.ID != "user-minor" {
			t.Errorf("got %+v, %v, want user-minor", pr, err)
		}
	})
	refused := []struct {
		name  string
		setup func(p *provider, k *ecdsa.PrivateKey)
	}{
		{"a discovery document naming another issuer", func(p *provider, k *ecdsa.PrivateKey) {
			p.issuer = "https://other.example"
			p.publish(ecJWK(k, "e1"))
		}},
		{"a provider that is down", func(p *provider, k *ecdsa.PrivateKey) { p.fail = true }},
		{"a JWKS with only an encryption key", func(p *provider, k *ecdsa.PrivateKey) {
			j := ecJWK(k, "e1")
			j["use"] = "enc"
			p.publish(j)
		}},
		{"a JWKS with a private key in it", func(p *provider, k *ecdsa.PrivateKey) {
			j := ecJWK(k, "e1")
			j["d"] = b64.EncodeToString(k.D.Bytes())
			p.publish(j)
		}},
		{"an empty JWKS", func(p *provider, k *ecdsa.PrivateKey) { p.publish() }},
	}
	for _, tc := range refused {
		t.Run(tc.name+" authenticates nobody", func(t *testing.T) {
			p := newProvider(t)
			k := mustEC(t)
			tc.setup(p, k)
			a, c := newOIDCAuth(t, p, "email")
			var ue *ErrUnauthenticated
			if pr, err := a.Authenticate(ctx, sign(t, "ES256", "e1", k, p.claims(c))); !errors.As(err, &ue) {
				t.Errorf("got %+v, %v, want ErrUnauthenticated", pr, err)
			}
		})
	}
}

func TestOIDCKeysAreRefetchedOnRotationAndHourly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	k1, k2, k3 := mustEC(t), mustEC(t), mustEC(t)
	p.publish(ecJWK(k1, "k1"))
	a, c := newOIDCAuth(t, p, "email")
	ok := func(k *ecdsa.PrivateKey, kid string) error {
		_, err := a.Authenticate(ctx, sign(t, "ES256", kid, k, p.claims(c)))
		return err
	}
	steps := []struct {
		name        string
		before      func()
		key         *ecdsa.PrivateKey
		kid         string
		wantOK      bool
		wantFetches int32 // JWKS fetches so far
	}{
		{"the first token fetches the keys", func() {}, k1, "k1", true, 1},
		{"later tokens use the cached keys", func() { c.add(10 * time.Second) }, k1, "k1", true, 1},
		{"a token under an unpublished key within a minute of the fetch does not refetch", func() { p.publish(ecJWK(k2, "k2")) }, k2, "k2", false, 1},
		{"after a minute, a token under the new key refetches and verifies", func() { c.add(time.Minute) }, k2, "k2", true, 2},
		{"a token under the retired key is refused", func() { c.add(2 * time.Minute) }, k1, "k1", false, 3},
		{"a second bad token within the minute does not refetch", func() { c.add(time.Second) }, k1, "k1", false, 3},
		{"after an hour the keys are refetched without a failure", func() { p.publish(ecJWK(k2, "k2"), ecJWK(k3, "k3")); c.add(61 * time.Minute) }, k2, "k2", true, 4},
		{"so a key published beside the old one verifies at once", func() { c.add(time.Second) }, k3, "k3", true, 4},
	}
	for _, s := range steps {
		s.before()
		err := ok(s.key, s.kid)
		if (err == nil) != s.wantOK {
			t.Errorf("%s: got error %v, want ok=%v", s.name, err, s.wantOK)
		}
		if got := p.fetches.Load(); got != s.wantFetches {
			t.Errorf("%s: got %d JWKS fetches, want %d", s.name, got, s.wantFetches)
		}
	}
}

func TestOIDCClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newProvider(t)
	k := mustEC(t)
	p.publish(ecJWK(k, "e1"))
	a, c := newOIDCAuth(t, p, "email")
	tests := []struct {
		name   string
		edit   func(m map[string]any)
		wantOK bool
	}{
		{"a valid token", func(map[string]any) {}, true},
		{"a token expired 30 seconds ago is within the minute of skew", func(m map[string]any) { m["exp"] = c.now().Add(-30 * time.Second).Unix() }, true},
		{"a token expired two minutes ago", func(m map[string]any) { m["exp"] = c.now().Add(-2 * time.Minute).Unix() }, false},
		{"a token not valid for an hour", func(m map[string]any) { m["nbf"] = c.now().Add(time.Hour).Unix() }, false},
		{"another audience", func(m map[string]any) { m["aud"] = "someone-else" }, false},
		{"an audience list that includes ours", func(m map[string]any) { m["aud"] = []string{"someone-else", "registrar"} }, true},
		{"another issuer", func(m map[string]any) { m["iss"] = "https://evil.example" }, false},
		{"no email", func(m map[string]any) { delete(m, "email") }, false},
		{"an unverified email", func(m map[string]any) { m["email_verified"] = false }, false},
		{"a verified email", func(m map[string]any) { m["email_verified"] = true }, true},
		{"an email of nobody", func(m map[string]any) { m["email"] = "x@example.org" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.claims(c)
			tc.edit(m)
			_, err := a.Authenticate(ctx, sign(t, "ES256", "e1", k, m))
			if (err == nil) != tc.wantOK {
				t.Errorf("got error %v, want ok=%v", err, tc.wantOK)
			}
			var ue *ErrUnauthenticated
			if err != nil && !errors.As(err, &ue) {
				t.Errorf("got %T %v, want ErrUnauthenticated", err, err)
			}
		})
	}
}

// TestCachedClaimsRoundTrip: the verified cache's form of the claims decodes to the
// same claims, and what is not that form (empty, cut inside the subject, v1's JSON,
// long enough to decode) is never usable.
func TestCachedClaimsRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []localClaims{
		{Sub: "client-1", Scope: authz.RosterCoreReadonly + " " + authz.RosterReadonly, Exp: now.Unix() + 3600},
		{Sub: "user:é\x00", Exp: now.Unix() + 60, Nbf: now.Unix() - 5},
	} {
		got, ok := decodeClaims(c.appendBinary(nil))
		if !ok || got != c {
			t.Errorf("decodeClaims(appendBinary(%+v)) = %+v, %v", c, got, ok)
		}
		if !got.usable(now) {
			t.Errorf("%+v is not usable at %v", got, now)
		}
	}
	whole := localClaims{Sub: "client-1", Exp: now.Unix() + 3600}.appendBinary(nil)
	for name, b := range map[string][]byte{
		"empty":              nil,
		"cut in the subject": whole[:len(whole)-1],
		"v1's JSON":          []byte(`{"s":"client-1","e":1800003600}`),
		"v1's JSON, scoped":  []byte(`{"s":"client-1","c":"https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly","e":1800003600}`),
	} {
		if c, ok := decodeClaims(b); ok && c.usable(now) {
			t.Errorf("%s: decoded as usable claims %+v", name, c)
		}
	}
}
