package httpapi_test

// Token attacks (issue 4): every bad bearer token answers 401 with a Bearer challenge
// and the same body as no token at all; people's tokens from an OpenID Connect
// provider (an httptest provider with its own ES256 keys) verify, map to roster
// users, and survive a key rotation. Identifiers here start with "tk".

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"

	"registrar/authn"
	"registrar/authz"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
)

var tkB64 = base64.RawURLEncoding

// tkJWT assembles a compact JWT from a header, claims and a signature function.
func tkJWT(t *testing.T, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := tkB64.EncodeToString(h) + "." + tkB64.EncodeToString(c)
	return input + "." + tkB64.EncodeToString(sign([]byte(input)))
}

func tkHS256(key []byte) func([]byte) []byte {
	return func(in []byte) []byte { m := hmac.New(sha256.New, key); m.Write(in); return m.Sum(nil) }
}

func tkES256(t *testing.T, key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// tkSignLocal signs claims with the server's own key (as `registrar tokens issue`
// does), so a test can forge every claim but the signature.
func tkSignLocal(t *testing.T, h *azHarness, o *jwt.RawJWTOptions) string {
	t.Helper()
	raw, err := jwt.NewRawJWT(o)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := h.vault.JWTSigner().SignAndEncode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tkPtr[T any](v T) *T { return &v }

// tkUnauthorized checks one refused request: 401, a Bearer challenge, and the body of
// a request without a token (the reason is logged, never shown).
func tkUnauthorized(t *testing.T, h *azHarness, header string, baseline response) {
	t.Helper()
	req, err := http.NewRequest("GET", h.srv.URL+azR+"/students", nil)
	if err != nil {
		t.Fatal(err)
	}
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := tkReadAll(t, resp)
	if resp.StatusCode != 401 {
		t.Errorf("got status %d (%s), want 401", resp.StatusCode, body)
	}
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
		t.Errorf("got WWW-Authenticate %q, want a Bearer challenge", ch)
	}
	if body != string(baseline.body) {
		t.Errorf("got body %s, want the body of a request without a token: %s", body, baseline.body)
	}
}

func tkReadAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBadLocalTokensAre401(t *testing.T) {
	t.Parallel()
	h := newAZHarness(t, azOptions{})
	baseline := h.do("GET", azR+"/students", "", "")
	if baseline.status != 401 {
		t.Fatalf("without a token: got status %d, want 401", baseline.status)
	}
	now := time.Now()
	good := func() *jwt.RawJWTOptions {
		return &jwt.RawJWTOptions{Issuer: tkPtr(authn.LocalIssuer), Audience: tkPtr(authn.LocalAudience), Subject: tkPtr("user:" + testdistrict.Admin),
			IssuedAt: tkPtr(now), ExpiresAt: tkPtr(now.Add(time.Hour))}
	}
	// Sanity: the forging helper makes a token the server accepts.
	if r := h.do("GET", azR+"/students", tkSignLocal(t, h, good()), ""); r.status != 200 {
		t.Fatalf("a well-formed local token: got status %d (%s), want 200", r.status, r.body)
	}
	valid := h.user(testdistrict.Minor)
	parts := strings.Split(valid, ".")
	claims := map[string]any{"iss": authn.LocalIssuer, "aud": authn.LocalAudience, "sub": "user:" + testdistrict.Admin, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}

	// The published JWKS, and the same public key in every form an attacker might
	// feed an HMAC as its secret.
	jwks := h.do("GET", "/.well-known/jwks.json", "", "").body
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %v: %s", err, jwks)
	}
	jwk, _ := json.Marshal(set.Keys[0])
	x, _ := tkB64.DecodeString(set.Keys[0]["x"].(string))
	y, _ := tkB64.DecodeString(set.Keys[0]["y"].(string))
	point := append(append([]byte{4}, x...), y...)
	ecPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(ecPub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	kid, _ := set.Keys[0]["kid"].(string)
	hsHeader := map[string]any{"alg": "HS256", "typ": "JWT"}
	if kid != "" {
		hsHeader["kid"] = kid
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tampered := func() string {
		c, _ := json.Marshal(claims)
		return parts[0] + "." + tkB64.EncodeToString(c) + "." + parts[2]
	}

	tests := []struct {
		name   string
		header func() string // the Authorization header
	}{
		{"no Authorization header", func() string { return "" }},
		{"a Basic header", func() string { return "Basic dXNlcjpwYXNz" }},
		{"the word Bearer alone", func() string { return "Bearer" }},
		{"Bearer and spaces", func() string { return "Bearer    " }},
		{"a token that is not a JWT", func() string { return "Bearer not-a-jwt" }},
		{"three empty parts", func() string { return "Bearer .." }},
		{"a token with bad base64", func() string { return "Bearer !!!.???.***" }},
		{"two tokens", func() string { return "Bearer " + valid + " " + valid }},
		{"a token with a byte appended", func() string { return "Bearer " + valid + "x" }},
		{"a token under another scheme", func() string { return "Token " + valid }},
		{"a huge token", func() string { return "Bearer " + strings.Repeat("A", 64<<10) }},
		{"an expired token", func() string {
			o := good()
			o.IssuedAt, o.ExpiresAt = tkPtr(now.Add(-2*time.Hour)), tkPtr(now.Add(-time.Hour))
			return "Bearer " + tkSignLocal(t, h, o)
		}},
		{"a token not valid yet", func() string {
			o := good()
			o.NotBefore = tkPtr(now.Add(time.Hour))
			return "Bearer " + tkSignLocal(t, h, o)
		}},
		{"a token without expiry", func() string {
			o := good()
			o.ExpiresAt, o.WithoutExpiration = nil, true
			return "Bearer " + tkSignLocal(t, h, o)
		}},
		{"a token from another issuer", func() string {
			o := good()
			o.Issuer = tkPtr("https://idp.attacker.example")
			return "Bearer " + tkSignLocal(t, h, o)
		}},
		{"a token for another audience", func() string {
			o := good()
			o.Audience = tkPtr("urn:someone-else")
			return "Bearer " + tkSignLocal(t, h, o)
		}},
		{"a token without subject", func() string { o := good(); o.Subject = nil; return "Bearer " + tkSignLocal(t, h, o) }},
		{"a token whose subject is of an unknown kind", func() string { o := good(); o.Subject = tkPtr("robot:1"); return "Bearer " + tkSignLocal(t, h, o) }},
		{"a token for a client that does not exist", func() string {
			o := good()
			o.Subject = tkPtr("client:no-such-client")
			return "Bearer " + tkSignLocal(t, h, o)
		}},
		{"alg none", func() string {
			return "Bearer " + tkJWT(t, map[string]any{"alg": "none", "typ": "JWT"}, claims, func([]byte) []byte { return nil })
		}},
		{"alg None with a signature", func() string {
			return "Bearer " + tkJWT(t, map[string]any{"alg": "None", "typ": "JWT"}, claims, tkHS256(nil))
		}},
		{"HS256 keyed with the JWKS document", func() string { return "Bearer " + tkJWT(t, hsHeader, claims, tkHS256(jwks)) }},
		{"HS256 keyed with the JWK", func() string { return "Bearer " + tkJWT(t, hsHeader, claims, tkHS256(jwk)) }},
		{"HS256 keyed with the public point", func() string { return "Bearer " + tkJWT(t, hsHeader, claims, tkHS256(point)) }},
		{"HS256 keyed with the public key's DER", func() string { return "Bearer " + tkJWT(t, hsHeader, claims, tkHS256(der)) }},
		{"HS256 keyed with the public key's PEM", func() string { return "Bearer " + tkJWT(t, hsHeader, claims, tkHS256(pemKey)) }},
		{"ES256 signed by a key of the attacker", func() string {
			return "Bearer " + tkJWT(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": kid}, claims, tkES256(t, other))
		}},
		{"a valid token whose payload was swapped", func() string { return "Bearer " + tampered() }},
		{"a valid signature over another header", func() string {
			hd, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "other"})
			return "Bearer " + tkB64.EncodeToString(hd) + "." + parts[1] + "." + parts[2]
		}},
		{"a valid token without its signature", func() string { return "Bearer " + parts[0] + "." + parts[1] + "." }},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is 401 with a Bearer challenge", func(t *testing.T) {
			tkUnauthorized(t, h, tc.header(), baseline)
		})
	}

	t.Run("a token of a client revoked after it was issued is 401 at once", func(t *testing.T) {
		tok := h.client([]string{authz.RosterReadonly})
		if r := h.do("GET", azR+"/students", tok, ""); r.status != 200 {
			t.Fatalf("before revocation: got status %d, want 200", r.status)
		}
		var c struct {
			ClientID string `json:"client_id"`
		}
		p, _ := tkB64.DecodeString(strings.Split(tok, ".")[1])
		if err := json.Unmarshal(p, &c); err != nil || c.ClientID == "" {
			t.Fatalf("token carries no client_id: %v %s", err, p)
		}
		if err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, c.ClientID) }); err != nil {
			t.Fatal(err)
		}
		tkUnauthorized(t, h, "Bearer "+tok, baseline)
	})
	t.Run("a token of a disabled user is 401", func(t *testing.T) {
		tkUnauthorized(t, h, "Bearer "+h.user(testdistrict.Disabled), baseline)
	})
}

// ---------------------------------------------------------------------------------
// An OpenID Connect provider in the test.

type tkProvider struct {
	srv      *httptest.Server
	mu       sync.Mutex
	key      *ecdsa.PrivateKey
	kid      string
	n        int
	jwksHits atomic.Int32
}

func newTKProvider(t *testing.T) *tkProvider {
	t.Helper()
	p := &tkProvider{}
	p.rotate(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		p.mu.Lock()
		pt, err := p.key.PublicKey.ECDH()
		kid := p.kid
		p.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		b := pt.Bytes() // 0x04 || X || Y
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{
			{"kty": "EC", "crv": "P-256", "x": tkB64.EncodeToString(b[1:33]), "y": tkB64.EncodeToString(b[33:]), "kid": kid, "use": "sig", "alg": "ES256"},
		}})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// rotate replaces the provider's key: the JWKS serves only the new one.
func (p *tkProvider) rotate(t *testing.T) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.n++
	p.key, p.kid = k, fmt.Sprintf("key-%d", p.n)
	p.mu.Unlock()
}

// token signs claims with the provider's current key.
func (p *tkProvider) token(t *testing.T, claims map[string]any) string {
	p.mu.Lock()
	key, kid := p.key, p.kid
	p.mu.Unlock()
	return tkJWT(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": kid}, claims, tkES256(t, key))
}

const tkAudience = "registrar-test"

func tkEmail(user string) string { return user + "." + testdistrict.Canary + "@example.org" }

// tkClock is a settable clock, safe for concurrent use.
type tkClock struct{ t atomic.Pointer[time.Time] }

func (c *tkClock) set(t time.Time)     { c.t.Store(&t) }
func (c *tkClock) now() time.Time      { return *c.t.Load() }
func (c *tkClock) add(d time.Duration) { c.set(c.now().Add(d)) }

func (p *tkProvider) claims(clock *tkClock, email string) map[string]any {
	now := clock.now()
	return map[string]any{"iss": p.srv.URL, "aud": tkAudience, "sub": "idp-" + email, "email": email, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
}

func newOIDCHarness(t *testing.T) (*azHarness, *tkProvider, *tkClock) {
	t.Helper()
	p := newTKProvider(t)
	clock := &tkClock{}
	clock.set(time.Now())
	o := authn.NewOIDC(p.srv.URL, tkAudience, "email")
	o.SetClock(clock.now)
	return newAZHarness(t, azOptions{oidc: o}), p, clock
}

func TestOIDCTokensOfTheDistrictsProvider(t *testing.T) {
	t.Parallel()
	h, p, clock := newOIDCHarness(t)
	baseline := h.do("GET", azR+"/students", "", "")
	with := func(edit func(c map[string]any)) string {
		c := p.claims(clock, tkEmail(testdistrict.Minor))
		edit(c)
		return p.token(t, c)
	}
	t.Run("a valid token whose email is a roster user's authenticates as that user", func(t *testing.T) {
		tok := with(func(map[string]any) {})
		me := h.do("GET", "/v1/me", tok, "")
		if me.status != 200 || me.json(t)["id"] != testdistrict.Minor {
			t.Fatalf("GET /v1/me: got %d %s, want the minor", me.status, me.body)
		}
		if got := ids(t, h.do("GET", azR+"/students", tok, ""), "users"); !slices.Equal(got, []string{testdistrict.Minor}) {
			t.Errorf("GET /students: got %v, want [%s]", got, testdistrict.Minor)
		}
	})
	t.Run("a guardian's token sees the guardian's minor child only", func(t *testing.T) {
		tok := p.token(t, p.claims(clock, tkEmail(testdistrict.Guardian)))
		if got := ids(t, h.do("GET", azR+"/students", tok, ""), "users"); !slices.Equal(got, []string{testdistrict.Minor}) {
			t.Errorf("GET /students: got %v, want [%s]", got, testdistrict.Minor)
		}
	})
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token func() string
	}{
		{"a token for another audience", func() string { return with(func(c map[string]any) { c["aud"] = "another-app" }) }},
		{"a token for several audiences, none of them ours", func() string { return with(func(c map[string]any) { c["aud"] = []string{"a", "b"} }) }},
		{"a token from another issuer", func() string { return with(func(c map[string]any) { c["iss"] = "https://evil.example" }) }},
		{"an expired token", func() string {
			return with(func(c map[string]any) {
				c["iat"], c["exp"] = clock.now().Add(-time.Hour).Unix(), clock.now().Add(-5*time.Minute).Unix()
			})
		}},
		{"a token without expiry", func() string { return with(func(c map[string]any) { delete(c, "exp") }) }},
		{"a token whose email is not verified", func() string { return with(func(c map[string]any) { c["email_verified"] = false }) }},
		{"a token whose email matches nobody", func() string { return with(func(c map[string]any) { c["email"] = "nobody@example.org" }) }},
		{"a token without email", func() string { return with(func(c map[string]any) { delete(c, "email") }) }},
		{"a token of a disabled user", func() string { return with(func(c map[string]any) { c["email"] = tkEmail(testdistrict.Disabled) }) }},
		{"a token signed by a key the provider does not publish", func() string {
			return tkJWT(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "key-1"}, p.claims(clock, tkEmail(testdistrict.Minor)), tkES256(t, other))
		}},
		{"alg none under the provider's issuer", func() string {
			return tkJWT(t, map[string]any{"alg": "none"}, p.claims(clock, tkEmail(testdistrict.Minor)), func([]byte) []byte { return nil })
		}},
		{"HS256 keyed with the provider's JWKS", func() string {
			resp, err := http.Get(p.srv.URL + "/keys")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			return tkJWT(t, map[string]any{"alg": "HS256", "kid": "key-1"}, p.claims(clock, tkEmail(testdistrict.Minor)), tkHS256([]byte(tkReadAll(t, resp))))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is 401", func(t *testing.T) {
			tkUnauthorized(t, h, "Bearer "+tc.token(), baseline)
		})
	}
	t.Run("the provider's keys are fetched once and cached", func(t *testing.T) {
		before := p.jwksHits.Load()
		for range 5 {
			if r := h.do("GET", "/v1/me", with(func(map[string]any) {}), ""); r.status != 200 {
				t.Fatalf("got status %d, want 200", r.status)
			}
		}
		if got := p.jwksHits.Load() - before; got != 0 {
			t.Errorf("got %d JWKS fetches for 5 tokens, want 0 (cached)", got)
		}
	})
}

func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	h, p, clock := newOIDCHarness(t)
	me := func(tok string) int { return h.do("GET", "/v1/me", tok, "").status }
	if got := me(p.token(t, p.claims(clock, tkEmail(testdistrict.TeacherA)))); got != 200 {
		t.Fatalf("a token under the first key: got status %d, want 200", got)
	}
	p.mu.Lock()
	first := p.key
	p.mu.Unlock()
	fetches := p.jwksHits.Load()
	p.rotate(t)
	clock.add(10 * time.Minute)
	t.Run("a token under the new key verifies after the keys are fetched again", func(t *testing.T) {
		if got := me(p.token(t, p.claims(clock, tkEmail(testdistrict.TeacherA)))); got != 200 {
			t.Errorf("got status %d, want 200", got)
		}
		if got := p.jwksHits.Load() - fetches; got != 1 {
			t.Errorf("got %d JWKS fetches, want 1", got)
		}
	})
	t.Run("an unexpired token under the retired key no longer verifies", func(t *testing.T) {
		clock.add(2 * time.Minute)
		tok := tkJWT(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "key-1"}, p.claims(clock, tkEmail(testdistrict.TeacherA)), tkES256(t, first))
		if got := me(tok); got != 401 {
			t.Errorf("got status %d, want 401", got)
		}
	})
	t.Run("bad tokens do not make the server hammer the provider", func(t *testing.T) {
		before := p.jwksHits.Load()
		for range 20 {
			tok := tkJWT(t, map[string]any{"alg": "ES256", "kid": "unknown"}, p.claims(clock, tkEmail(testdistrict.TeacherA)), tkES256(t, first))
			if got := me(tok); got != 401 {
				t.Fatalf("got status %d, want 401", got)
			}
		}
		if got := p.jwksHits.Load() - before; got > 1 {
			t.Errorf("got %d JWKS fetches for 20 bad tokens within a minute, want at most 1", got)
		}
	})
}
