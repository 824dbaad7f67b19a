package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Keys are what Sealed needs: an AEAD for values and a keyed hash for key names.
type Keys struct {
	AEAD tink.AEAD
	Name func(key string) []byte
}

// KeysFromPRF derives the cache keys from a keyed PRF (the vault's blind-index PRF,
// part of the service keyset that every instance shares): instances of one
// deployment read each other's entries, and nobody without the service keyset can
// read or forge one. A new service keyset makes every entry a miss.
func KeysFromPRF(prf func(field, value string) []byte) (Keys, error) {
	var raw []byte
	for i := 0; len(raw) < 32; i++ {
		out := prf("registrar/cache", fmt.Sprintf("aead/v1/%d", i))
		if len(out) == 0 {
			return Keys{}, errors.New("cache: the PRF returned nothing")
		}
		raw = append(raw, out...)
	}
	params, err := aesgcm.NewParameters(aesgcm.ParametersOpts{KeySizeInBytes: 32, IVSizeInBytes: 12, TagSizeInBytes: 16, Variant: aesgcm.VariantNoPrefix})
	if err != nil {
		return Keys{}, fmt.Errorf("cache: aead parameters: %w", err)
	}
	key, err := aesgcm.NewKey(secretdata.NewBytesFromData(raw[:32], insecuresecretdataaccess.Token{}), 0, params)
	if err != nil {
		return Keys{}, fmt.Errorf("cache: aead key: %w", err)
	}
	a, err := aesgcm.NewAEAD(key)
	if err != nil {
		return Keys{}, fmt.Errorf("cache: aead: %w", err)
	}
	return Keys{AEAD: a, Name: func(k string) []byte { return prf("registrar/cache", "name/v1\x00"+k) }}, nil
}

// Sealed wraps a Cache so that its backend holds only opaque key names
// (Namespace + kind + ":" + a keyed hash of the key) and AEAD ciphertext bound to
// the key name: a value moved to another key, altered, or written by someone without
// the keys does not open and is a miss.
type Sealed struct {
	inner    Cache
	keys     Keys
	rejected atomic.Uint64
}

var _ Cache = (*Sealed)(nil)

// NewSealed wraps inner.
func NewSealed(inner Cache, k Keys) *Sealed { return &Sealed{inner: inner, keys: k} }

// name maps a key to the name the backend stores it under.
func (s *Sealed) name(key string) string {
	return Namespace + kindOf(key) + ":" + hex.EncodeToString(s.keys.Name(key))
}

// Get implements Cache.
func (s *Sealed) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	name := s.name(key)
	ct, ok, err := s.inner.Get(ctx, name)
	if !ok || err != nil {
		return nil, false, err
	}
	pt, err := s.keys.AEAD.Decrypt(ct, []byte(name))
	if err != nil {
		s.rejected.Add(1)
		return nil, false, ErrSealed
	}
	return pt, true, nil
}

// Set implements Cache.
func (s *Sealed) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkSet(key, val, ttl); err != nil {
		return err
	}
	name := s.name(key)
	ct, err := s.keys.AEAD.Encrypt(val, []byte(name))
	if err != nil {
		return fmt.Errorf("cache: seal: %w", err)
	}
	return s.inner.Set(ctx, name, ct, ttl)
}

// Delete implements Cache.
func (s *Sealed) Delete(ctx context.Context, keys ...string) error {
	names := make([]string, len(keys))
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
		names[i] = s.name(k)
	}
	return s.inner.Delete(ctx, names...)
}

// Ping implements Cache.
func (s *Sealed) Ping(ctx context.Context) error { return s.inner.Ping(ctx) }

// Stats implements Cache.
func (s *Sealed) Stats() Stats {
	st := s.inner.Stats()
	st.Rejected = s.rejected.Load()
	return st
}

// Close implements Cache.
func (s *Sealed) Close() error { return s.inner.Close() }
