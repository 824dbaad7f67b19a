package authn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"

	"registrar/authz"
)

// OIDC verifies people's tokens from the district's OpenID Connect provider. Keys come
// from the provider's JWKS (found through its discovery document), are cached, and
// are fetched again when a token names a key not yet seen (at most once a minute) or
// after an hour.
type OIDC struct {
	Issuer   string
	Audience string
	Claim    string // "email" or "username": which claim names the roster user
	HTTP     *http.Client

	mu       sync.Mutex
	verifier jwt.Verifier
	fetched  time.Time
	tried    time.Time
	now      func() time.Time
}

// NewOIDC configures a provider; keys are fetched on first use.
func NewOIDC(issuer, audience, claim string) *OIDC {
	return &OIDC{Issuer: strings.TrimRight(issuer, "/"), Audience: audience, Claim: claim,
		HTTP: &http.Client{Timeout: 10 * time.Second}, now: time.Now}
}

// SetClock replaces the clock that validates tokens and paces key fetches (tests).
// Call it before the first token arrives; now must be safe for concurrent use.
func (o *OIDC) SetClock(now func() time.Time) { o.now = now }

func (o *OIDC) authenticate(ctx context.Context, token string, c Clients) (*authz.Principal, error) {
	iss, aud := o.Issuer, o.Audience
	val, err := jwt.NewValidator(&jwt.ValidatorOpts{ExpectedIssuer: &iss, ExpectedAudience: &aud, IgnoreTypeHeader: true, ClockSkew: time.Minute, FixedNow: o.now()})
	if err != nil {
		return nil, fmt.Errorf("authn: oidc validator: %w", err)
	}
	vt, err := o.verify(ctx, token, val, false)
	if err != nil {
		// A key rotation at the provider: fetch the keys again (rate-limited) and retry once.
		if vt, err = o.verify(ctx, token, val, true); err != nil {
			return nil, &ErrUnauthenticated{"OIDC token does not verify: " + err.Error()}
		}
	}
	value, err := vt.StringClaim(o.Claim)
	if err != nil || value == "" {
		return nil, &ErrUnauthenticated{"OIDC token has no " + o.Claim + " claim"}
	}
	if o.Claim == "email" && vt.HasBooleanClaim("email_verified") {
		if ok, _ := vt.BooleanClaim("email_verified"); !ok {
			return nil, &ErrUnauthenticated{"OIDC token's email is not verified"}
		}
	}
	id, err := c.UserByClaim(ctx, o.Claim, value)
	if err != nil {
		return nil, &ErrUnauthenticated{err.Error()}
	}
	return &authz.Principal{Kind: "user", ID: id, LegalBasis: "person"}, nil
}

func (o *OIDC) verify(ctx context.Context, token string, val *jwt.Validator, refresh bool) (*jwt.VerifiedJWT, error) {
	o.mu.Lock()
	now := o.now()
	need := o.verifier == nil || now.Sub(o.fetched) > time.Hour || refresh && now.Sub(o.tried) > time.Minute
	if need {
		o.tried = now
		v, err := o.fetch(ctx)
		if err != nil && o.verifier == nil {
			o.mu.Unlock()
			return nil, err
		}
		if err == nil {
			o.verifier, o.fetched = v, now
		}
	} else if refresh {
		o.mu.Unlock()
		return nil, fmt.Errorf("keys fetched less than a minute ago")
	}
	v := o.verifier
	o.mu.Unlock()
	return v.VerifyAndDecode(token, val)
}

func (o *OIDC) getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := o.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into)
}

// fetch reads the discovery document and the JWKS and builds a verifier. Keys without
// "alg" get the one their type implies; keys not for signatures are dropped.
func (o *OIDC) fetch(ctx context.Context) (jwt.Verifier, error) {
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := o.getJSON(ctx, o.Issuer+"/.well-known/openid-configuration", &disc); err != nil {
		return nil, err
	}
	if strings.TrimRight(disc.Issuer, "/") != o.Issuer || disc.JWKSURI == "" {
		return nil, fmt.Errorf("discovery document names issuer %q (want %q) or lacks jwks_uri", disc.Issuer, o.Issuer)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := o.getJSON(ctx, disc.JWKSURI, &set); err != nil {
		return nil, err
	}
	var keys []map[string]any
	for _, k := range set.Keys {
		if use, ok := k["use"]; ok && use != "sig" {
			continue
		}
		if _, ok := k["alg"]; !ok {
			switch k["kty"] {
			case "RSA":
				k["alg"] = "RS256"
			case "EC":
				k["alg"] = map[any]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[k["crv"]]
			}
		}
		delete(k, "x5c")
		delete(k, "x5t")
		delete(k, "x5t#S256")
		keys = append(keys, k)
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		return nil, err
	}
	h, err := jwt.JWKSetToPublicKeysetHandle(b)
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	return jwt.NewVerifier(h)
}
