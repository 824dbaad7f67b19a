// Package authn establishes who is calling: API clients by OAuth2 client credentials
// (RFC 6749 section 4.4) exchanged for short-lived signed access tokens, and people by
// bearer tokens from the district's OpenID Connect provider (verified against its
// JWKS) or from registrar's own local issuer (`registrar tokens issue`).
//
// Tokens are JWTs signed and verified with Tink: the algorithm is fixed by the key, so
// "alg: none" and HMAC-with-a-public-key confusion cannot verify. A client's token is
// checked against the client's current row on every request, so revoking a client
// ends its tokens at once. No passwords are stored; client secrets are kept only as
// SHA-256 hashes of 256-bit random values.
//
// authn imports records, authz (for Principal) and vault; never the store.
package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"

	"registrar/authz"
	"registrar/records"
	"registrar/vault"
)

// Issuer and audience of registrar's own tokens.
const (
	LocalIssuer   = "urn:registrar:local"
	LocalAudience = "urn:registrar:api"
)

// Clients is what authn needs from the store.
type Clients interface {
	Client(ctx context.Context, id string) (records.Client, error)
	// RecentClient may answer from a copy at most a second old (a revocation made
	// elsewhere reaches this process within that second): the per-request check.
	RecentClient(ctx context.Context, id string) (records.Client, error)
	UserByClaim(ctx context.Context, claim, value string) (string, error)
}

// Authenticator issues and verifies tokens.
type Authenticator struct {
	clients  Clients
	signer   jwt.Signer
	verifier jwt.Verifier
	ttl      time.Duration
	now      func() time.Time
	oidc     *OIDC

	verified    Verified // optional: claims of local tokens already verified
	verifiedTTL time.Duration
	keysetID    string // fingerprint of the verifying keyset, part of every cache key
}

// Verified is a cache of verified token claims (package cache implements it).
type Verified interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// New builds an Authenticator over the vault's JWT key. oidc may be nil.
func New(c Clients, v *vault.Vault, ttl time.Duration, oidc *OIDC) (*Authenticator, error) {
	ver, err := jwt.NewVerifier(v.JWTPublic())
	if err != nil {
		return nil, fmt.Errorf("authn: verifier: %w", err)
	}
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(v.JWTPublic())
	if err != nil {
		return nil, fmt.Errorf("authn: public keyset: %w", err)
	}
	fp := sha256.Sum256(jwks)
	return &Authenticator{clients: c, signer: v.JWTSigner(), verifier: ver, ttl: ttl, now: time.Now, oidc: oidc, keysetID: hex.EncodeToString(fp[:8])}, nil
}

// SetVerifiedCache makes the authenticator remember, for at most ttl and never past
// a token's expiry, the claims of local tokens whose signature it verified, keyed by
// a hash of the token and of the verifying keyset: a repeated token skips the ECDSA
// verification. Everything checked against the store (a client's revocation, scopes
// and orgs) is still checked on every request. Call before serving.
func (a *Authenticator) SetVerifiedCache(c Verified, ttl time.Duration) {
	a.verified, a.verifiedTTL = c, ttl
}

// notLocal is a token that is not a valid local token (it may be an OIDC token).
type notLocal struct{ reason string }

func (e *notLocal) Error() string { return e.reason }

// localClaims are what Authenticate uses of a verified local token.
type localClaims struct {
	Sub   string
	Scope string
	Exp   int64 // Unix seconds
	Nbf   int64 // Unix seconds; 0: none
}

// appendBinary appends the claims as the verified cache holds them: exp and nbf as
// varints, the subject's length as a uvarint, the subject, then the scope (the
// rest). Decoded on every request, so not JSON, which cost more than the rest of
// the cached path.
func (c localClaims) appendBinary(b []byte) []byte {
	b = binary.AppendVarint(b, c.Exp)
	b = binary.AppendVarint(b, c.Nbf)
	b = binary.AppendUvarint(b, uint64(len(c.Sub)))
	b = append(b, c.Sub...)
	return append(b, c.Scope...)
}

// decodeClaims reads what appendBinary wrote, and never panics: ok is false for a
// value too short to hold its parts. A value in another form may still decode; v1's
// JSON, for one, reads as a negative expiry, which usable refuses, and is never
// looked up anyway (its key's hash domain was verified/v1).
func decodeClaims(b []byte) (c localClaims, ok bool) {
	var n int
	if c.Exp, n = binary.Varint(b); n <= 0 {
		return c, false
	}
	b = b[n:]
	if c.Nbf, n = binary.Varint(b); n <= 0 {
		return c, false
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return c, false
	}
	b = b[n:]
	return localClaims{Sub: string(b[:l]), Scope: string(b[l:]), Exp: c.Exp, Nbf: c.Nbf}, true
}

// usable reports whether the claims' validity window holds now (as Tink's validator
// without clock skew: expired at exp, not yet valid before nbf).
func (c localClaims) usable(now time.Time) bool {
	return c.Sub != "" && now.Unix() < c.Exp && (c.Nbf == 0 || now.Unix() >= c.Nbf)
}

// verifyLocal verifies a token of the local issuer, through the cache when set.
func (a *Authenticator) verifyLocal(ctx context.Context, token string) (localClaims, error) {
	now := a.now()
	var key string
	if a.verified != nil {
		// verified/v2: the claims are in appendBinary's form (v1 held JSON), so an old
		// entry is never read as one.
		var in [1024]byte // on the stack: a token's hash input is built without garbage
		h := sha256.Sum256(append(append(append(append(in[:0], "registrar/authn/verified/v2\x00"...), a.keysetID...), 0), token...))
		key = "registrar:v1:tok:" + hex.EncodeToString(h[:])
		if b, ok, _ := a.verified.Get(ctx, key); ok { // an error is a miss: verify
			if c, ok := decodeClaims(b); ok && c.usable(now) {
				return c, nil
			}
		}
	}
	iss, aud := LocalIssuer, LocalAudience
	val, err := jwt.NewValidator(&jwt.ValidatorOpts{ExpectedIssuer: &iss, ExpectedAudience: &aud, FixedNow: now})
	if err != nil {
		return localClaims{}, fmt.Errorf("authn: validator: %w", err)
	}
	vt, err := a.verifier.VerifyAndDecode(token, val)
	if err != nil {
		return localClaims{}, &notLocal{"token does not verify: " + err.Error()}
	}
	sub, err := vt.Subject()
	if err != nil {
		return localClaims{}, &ErrUnauthenticated{"token has no subject"}
	}
	c := localClaims{Sub: sub}
	c.Scope, _ = vt.StringClaim("scope") // absent for people
	if exp, err := vt.ExpiresAt(); err == nil {
		c.Exp = exp.Unix()
	}
	if nbf, err := vt.NotBefore(); err == nil {
		c.Nbf = nbf.Unix()
	}
	if a.verified != nil && c.Exp > 0 {
		if ttl := min(a.verifiedTTL, time.Unix(c.Exp, 0).Sub(now)); ttl > 0 {
			_ = a.verified.Set(ctx, key, c.appendBinary(nil), ttl) // a failed write costs the next request a verification
		}
	}
	return c, nil
}

// OAuthError is an RFC 6749 section 5.2 error.
type OAuthError struct {
	Code        string // invalid_request, invalid_client, invalid_grant, unauthorized_client, unsupported_grant_type, invalid_scope
	Description string
	Status      int
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Description }

// NewSecret returns a new client secret and its stored hash.
func NewSecret() (secret string, hash []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("authn: no randomness: " + err.Error())
	}
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	return secret, HashSecret(secret)
}

// HashSecret is how a client secret is stored.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte("registrar/client-secret/v1\x00" + secret))
	return h[:]
}

// Token is an issued access token.
type Token struct {
	AccessToken string
	ExpiresIn   int
	Scope       string
}

// IssueClientToken checks a client's credentials and requested scopes and issues a
// token. An empty request grants every scope the client holds.
func (a *Authenticator) IssueClientToken(ctx context.Context, clientID, secret, scope string) (Token, error) {
	invalidClient := &OAuthError{Code: "invalid_client", Description: "client authentication failed", Status: 401}
	if clientID == "" || secret == "" {
		return Token{}, invalidClient
	}
	c, err := a.clients.Client(ctx, clientID)
	if records.IsNotFound(err) {
		HashSecret(secret) // same work as a real check: no timing oracle on client ids
		return Token{}, invalidClient
	}
	if err != nil {
		return Token{}, err
	}
	if subtle.ConstantTimeCompare(HashSecret(secret), c.SecretHash) != 1 || c.RevokedAt != nil {
		return Token{}, invalidClient
	}
	granted := c.Scopes
	if strings.TrimSpace(scope) != "" {
		granted = nil
		for _, s := range strings.Fields(scope) {
			full, known := authz.ExpandScope(s)
			if !known || !slices.Contains(c.Scopes, full) {
				return Token{}, &OAuthError{Code: "invalid_scope", Description: fmt.Sprintf("scope %q is unknown or not granted to this client", clip(s)), Status: 400}
			}
			if !slices.Contains(granted, full) {
				granted = append(granted, full)
			}
		}
	}
	now := a.now()
	exp := now.Add(a.ttl)
	iss, aud, sub, jti := LocalIssuer, LocalAudience, "client:"+c.ID, vault.RandomID()
	raw, err := jwt.NewRawJWT(&jwt.RawJWTOptions{
		Issuer: &iss, Audience: &aud, Subject: &sub, JWTID: &jti, IssuedAt: &now, ExpiresAt: &exp,
		CustomClaims: map[string]any{"scope": strings.Join(granted, " "), "client_id": c.ID},
	})
	if err != nil {
		return Token{}, fmt.Errorf("authn: build token: %w", err)
	}
	tok, err := a.signer.SignAndEncode(raw)
	if err != nil {
		return Token{}, fmt.Errorf("authn: sign token: %w", err)
	}
	return Token{AccessToken: tok, ExpiresIn: int(a.ttl / time.Second), Scope: strings.Join(granted, " ")}, nil
}

// IssueUserToken mints a short-lived token for a roster user, signed by the local key
// (for local use and tests; production people come through the district's OIDC).
func (a *Authenticator) IssueUserToken(userID string, ttl time.Duration) (string, error) {
	now := a.now()
	exp := now.Add(ttl)
	iss, aud, sub, jti := LocalIssuer, LocalAudience, "user:"+userID, vault.RandomID()
	raw, err := jwt.NewRawJWT(&jwt.RawJWTOptions{Issuer: &iss, Audience: &aud, Subject: &sub, JWTID: &jti, IssuedAt: &now, ExpiresAt: &exp})
	if err != nil {
		return "", fmt.Errorf("authn: build token: %w", err)
	}
	return a.signer.SignAndEncode(raw)
}

// ErrUnauthenticated is returned for every bad token: the reason is logged, not shown.
type ErrUnauthenticated struct{ Reason string }

func (e *ErrUnauthenticated) Error() string { return "unauthenticated: " + e.Reason }

// Authenticate verifies a bearer token and returns its principal.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*authz.Principal, error) {
	if token == "" {
		return nil, &ErrUnauthenticated{"no bearer token"}
	}
	vt, err := a.verifyLocal(ctx, token)
	var nl *notLocal
	switch {
	case errors.As(err, &nl) && a.oidc != nil:
		return a.oidc.authenticate(ctx, token, a.clients)
	case errors.As(err, &nl):
		return nil, &ErrUnauthenticated{nl.reason}
	case err != nil:
		return nil, err
	}
	sub := vt.Sub
	switch {
	case strings.HasPrefix(sub, "client:"):
		c, err := a.clients.RecentClient(ctx, strings.TrimPrefix(sub, "client:"))
		if records.IsNotFound(err) {
			return nil, &ErrUnauthenticated{"client no longer exists"}
		}
		if err != nil {
			return nil, err
		}
		if c.RevokedAt != nil {
			return nil, &ErrUnauthenticated{"client revoked"}
		}
		var scopes []string
		for _, s := range strings.Fields(vt.Scope) {
			if slices.Contains(c.Scopes, s) { // a scope removed from the client since issue no longer counts
				scopes = append(scopes, s)
			}
		}
		return &authz.Principal{Kind: "client", ID: c.ID, ClientID: c.ID, Name: c.Name, Scopes: scopes, Orgs: c.Orgs, LegalBasis: c.LegalBasis, Purpose: c.Purpose}, nil
	case strings.HasPrefix(sub, "user:"):
		return &authz.Principal{Kind: "user", ID: strings.TrimPrefix(sub, "user:"), LegalBasis: "person"}, nil
	}
	return nil, &ErrUnauthenticated{"token subject is of an unknown kind"}
}

// JWKS returns the public keys of the local issuer as a JWK set.
func JWKS(v *vault.Vault) ([]byte, error) {
	return jwt.JWKSetFromPublicKeysetHandle(v.JWTPublic())
}

func clip(s string) string {
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
