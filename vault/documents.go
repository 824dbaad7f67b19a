package vault

import (
	"fmt"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/streamingaead"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// A person's documents (transcripts, IEPs, letters) are encrypted with a streaming
// AEAD key of their own, wrapped by the KEK like the field data key and stored beside
// it: destroying the subject's key row destroys both.

func docKeyAD(subject string) []byte { return []byte("registrar/dockey/v1/" + subject) }

// NewDocumentKey creates subject's document key (AES-256-GCM-HKDF streaming, 4 KiB
// segments) and returns it wrapped by the KEK, bound to the subject.
func (v *Vault) NewDocumentKey(subject string) ([]byte, error) {
	h, err := keyset.NewHandle(streamingaead.AES256GCMHKDF4KBKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("vault: new document key: %w", err)
	}
	wrapped, err := v.wrap(h, docKeyAD(subject))
	if err != nil {
		return nil, fmt.Errorf("vault: wrap document key: %w", err)
	}
	a, err := streamingaead.New(h)
	if err != nil {
		return nil, fmt.Errorf("vault: document key primitive: %w", err)
	}
	v.docs.put(subject, a)
	return wrapped, nil
}

// DocumentKey returns subject's document key, unwrapping wrapped unless it is cached.
// An empty wrapped means the key was destroyed: ErrDecrypt, whatever the cache holds.
func (v *Vault) DocumentKey(subject string, wrapped []byte) (tink.StreamingAEAD, error) {
	if len(wrapped) == 0 {
		return nil, ErrDecrypt
	}
	if a, ok := v.docs.get(subject); ok {
		return a, nil
	}
	h, err := v.unwrap(wrapped, docKeyAD(subject))
	if err != nil {
		return nil, fmt.Errorf("vault: unwrap document key: %w", err)
	}
	a, err := streamingaead.New(h)
	if err != nil {
		return nil, fmt.Errorf("vault: document key primitive: %w", err)
	}
	v.docs.put(subject, a)
	return a, nil
}

// RewrapDocumentKey wraps a document key again under the current primary KEK version.
func (v *Vault) RewrapDocumentKey(subject string, wrapped []byte) ([]byte, error) {
	return v.rewrap(wrapped, docKeyAD(subject))
}

// DocumentBinding is the associated data of a document: a file copied to another
// name or another student does not open.
func DocumentBinding(subject, name string) []byte {
	return []byte("registrar/document/v1\x00" + subject + "\x00" + name)
}
