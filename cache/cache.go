// Package cache keeps what is expensive to recompute on every request and safe to
// share between requests and instances: verified access-token claims (an ECDSA
// verification each) and resolved authorization scopes (several store queries each).
//
// Two implementations pass one contract suite: Memory, in-process and bounded (the
// embedded default), and Redis (go-redis; ElastiCache with TLS and AUTH at scale).
// Sealed wraps Redis so that it sees only keyed hashes as key names and AEAD
// ciphertext as values: a reader of the Redis keyspace learns nothing, and a writer
// to it cannot forge an entry (a forged token or scope would be an authentication
// or authorization bypass). Tiered puts a Memory in front of the sealed Redis, so
// that a hit costs no round trip. What is cached holds ids only, never the
// plaintext of a sensitive field (DESIGN invariant 2). docs/cache.md has the design
// and the measurements behind it.
//
// The cache is never the source of truth. Every key carries what its value depends
// on (a token's hash and the verifying keyset; a principal, its orgs, the date and
// the store's roster generation), so a key's value never changes and nothing needs
// deleting when the roster changes: the generation moves and old keys age out by
// their TTL. A failing Redis degrades to misses: a circuit breaker stops asking it,
// the server answers from the database, and the breaker's probe brings it back.
//
// cache imports records and authz (the domain) and no other room; the store reaches
// it through the small ChangeLog interface.
package cache

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Namespace prefixes every key registrar writes, so a shared Redis can be scanned,
// monitored and flushed per application and per format version.
const Namespace = "registrar:v1:"

// MaxValue bounds a cached value: the cache holds small, derived values (claims,
// scopes), never documents or record sets.
const MaxValue = 64 << 10

// Errors.
var (
	// ErrUnavailable is returned while the backend is failing (the breaker is open):
	// callers treat it as a miss and go to the source.
	ErrUnavailable = errors.New("cache: unavailable")
	// ErrKey is returned for a key outside Namespace.
	ErrKey = errors.New("cache: key outside the " + Namespace + " namespace")
	// ErrTTL is returned for a value without a positive TTL: nothing lives forever.
	ErrTTL = errors.New("cache: a value needs a positive TTL")
	// ErrTooLarge is returned for a value larger than MaxValue.
	ErrTooLarge = errors.New("cache: value too large")
	// ErrSealed is returned by Sealed for a value that does not open under its key:
	// tampered with, moved from another key, or written under another service keyset.
	ErrSealed = errors.New("cache: value does not open under its key")
)

// Cache is a key-value store with TTLs. An error from Get means the cache could not
// answer and the caller should go to the source; it is never a reason to fail a
// request.
type Cache interface {
	// Get returns the value under key; ok is false on a miss.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores val under key for ttl (ttl > 0). The caller may reuse val afterwards.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes keys; absent keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Ping checks the backend (through the breaker: an open breaker answers at once).
	Ping(ctx context.Context) error
	// Stats returns counters and the health of the backend.
	Stats() Stats
	// Close releases the backend.
	Close() error
}

// Stats are a cache's counters since it was opened.
type Stats struct {
	Backend  string // "memory" or "redis"
	Hits     uint64
	Misses   uint64
	Errors   uint64 // backend calls that failed (timeouts, refused connections, protocol errors)
	Skipped  uint64 // calls not made because the breaker was open
	Rejected uint64 // values that did not open (Sealed)
	Entries  int64  // memory only: entries held
	Degraded bool   // the backend is failing and requests are served without it
}

// Key builds a key in the namespace: kind names what is cached ("tok", "scope") and
// stays readable in the keyspace; parts are joined unambiguously. Sealed replaces
// everything after the kind by a keyed hash before the backend sees it.
func Key(kind string, parts ...string) string {
	var b strings.Builder
	b.WriteString(Namespace)
	b.WriteString(kind)
	b.WriteByte(':')
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0x1f) // unit separator: no part of ours contains it
		}
		b.WriteString(p)
	}
	return b.String()
}

// kindOf returns the kind segment of a namespaced key.
func kindOf(key string) string {
	rest := strings.TrimPrefix(key, Namespace)
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		return rest[:i]
	}
	return rest
}

func checkKey(key string) error {
	if !strings.HasPrefix(key, Namespace) || len(key) == len(Namespace) {
		return ErrKey
	}
	return nil
}

func checkSet(key string, val []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrTTL
	}
	if len(val) > MaxValue {
		return ErrTooLarge
	}
	return nil
}
