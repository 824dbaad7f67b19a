// Package vault owns registrar's keys and everything done with them: envelope
// encryption of sensitive fields under a data key per person, keyed blind indexes for
// equality lookups on encrypted fields, and signatures (deletion certificates, audit
// checkpoints, local access tokens).
//
// The hierarchy: a key-encryption key (KEK: a local Tink keyset file created 0600 in the
// data directory, or an AWS KMS key) wraps each person's data key and the service
// keyset (blind-index PRF, signature key, JWT key). Wrapped data keys live in the
// database beside the rows they protect; destroying one makes every copy of that
// person's sealed fields, in backups and streams included, unreadable.
//
// All cryptography is Tink's; this package only arranges keys. It imports records
// and nothing else from registrar.
package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/signature"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// ErrDecrypt is returned when a ciphertext does not open under its key and binding:
// it was tampered with, copied from another row, column or table, or its key is gone.
var ErrDecrypt = errors.New("vault: ciphertext does not decrypt under this record's key and binding")

// Vault holds the unwrapped service keys and a bounded cache of unwrapped data keys.
type Vault struct {
	remoteKEK tink.AEAD // set when the KEK is not the local keyset file (AWS KMS)
	kekPath   string
	kekMu     sync.Mutex // serializes reloads, rotation and retirement of the local KEK
	local     atomic.Pointer[localKEK]

	svcPath string // the service keyset file; "" when it was injected (REGISTRAR_KEYSET)
	svcMu   sync.Mutex
	svcJSON string // the service keyset as loaded (wrapped by the KEK)

	bidx      *prf.Set
	signer    tink.Signer
	verifier  tink.Verifier
	sigKeyID  uint32
	jwtSigner jwt.Signer
	jwtPublic *keyset.Handle

	cache *keyCache[tink.AEAD]          // unwrapped field data keys, by subject
	docs  *keyCache[tink.StreamingAEAD] // unwrapped document keys, by subject

	noop bool
}

// Options configure Open.
type Options struct {
	// Dir is the folder for local key files (data dir + "/keys").
	Dir string
	// KEK, when set, is the key-encryption key to use instead of the local keyset file
	// (the AWS KMS AEAD in the cloud deployment).
	KEK tink.AEAD
	// KEKFile, when set, is the local KEK file to use instead of Dir/kek.json. It must
	// exist: Open never creates it (a backup is checked with a KEK kept outside it).
	KEKFile string
	// ServiceKeyset, when set, is the service keyset JSON (as written by ExportServiceKeyset),
	// instead of the file Dir/service.json.
	ServiceKeyset string
	// CacheSize bounds the unwrapped data keys held in memory (default 65536).
	CacheSize int
	// NoopCipherForBenchmarks disables field encryption. It exists only so that the
	// benchmarks can measure what encryption costs in the same run; no configuration
	// setting reaches it.
	NoopCipherForBenchmarks bool
}

const (
	kekFile     = "kek.json"
	serviceFile = "service.json"
)

// Open loads the keys, creating them on first use: the local KEK file (0600) unless
// opts.KEK is given, and the service keyset wrapped by the KEK.
func Open(opts Options) (*Vault, error) {
	size := opts.CacheSize
	if size <= 0 {
		size = 65536
	}
	v := &Vault{cache: newKeyCache[tink.AEAD](size), docs: newKeyCache[tink.StreamingAEAD](size), noop: opts.NoopCipherForBenchmarks}
	if opts.KEK != nil {
		v.remoteKEK = opts.KEK
	} else {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("vault: key folder: %w", err)
		}
		v.kekPath = filepath.Join(opts.Dir, kekFile)
		if opts.KEKFile != "" {
			v.kekPath = opts.KEKFile
		} else if _, err := loadOrCreateKEK(v.kekPath); err != nil {
			return nil, err
		}
		st, err := loadLocalKEK(v.kekPath)
		if err != nil {
			return nil, err
		}
		v.local.Store(st)
	}
	svc := opts.ServiceKeyset
	if svc == "" {
		path := filepath.Join(opts.Dir, serviceFile)
		v.svcPath = path
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if svc, err = v.newServiceKeyset(); err != nil {
				return nil, err
			}
			if err := writeFileAtomic(path, []byte(svc)); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, fmt.Errorf("vault: read service keyset: %w", err)
		default:
			svc = string(b)
		}
	}
	if err := v.loadServiceKeyset(svc); err != nil {
		return nil, err
	}
	v.svcJSON = svc
	return v, nil
}

func loadOrCreateKEK(path string) (*keyset.Handle, error) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("vault: stat KEK: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("vault: %s is readable by others (mode %v); run: chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(f))
		if err != nil {
			return nil, fmt.Errorf("vault: read KEK %s: %w", path, err)
		}
		return h, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("vault: open KEK: %w", err)
	}
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("vault: new KEK: %w", err)
	}
	if err := writeKEK(path, h); err != nil {
		return nil, err
	}
	return h, nil
}

func writeKEK(path string, h *keyset.Handle) error {
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return fmt.Errorf("vault: encode KEK: %w", err)
	}
	return writeFileAtomic(path, buf.Bytes())
}

// writeFileAtomic writes b to path with mode 0600 through a temporary file and rename.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("vault: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: chmod %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("vault: close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("vault: rename %s: %w", path, err)
	}
	return nil
}

// serviceKeyset is the JSON form of the service keys, each a Tink keyset encrypted
// by the KEK with its purpose as associated data.
type serviceKeyset struct {
	PRF       string `json:"prf"`
	Signature string `json:"signature"`
	JWT       string `json:"jwt"`
}

func (v *Vault) newServiceKeyset() (string, error) {
	var s serviceKeyset
	for _, k := range []struct {
		dst     *string
		purpose string
		tmpl    func() *keyset.Handle
	}{
		{&s.PRF, "prf", func() *keyset.Handle { h, _ := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate()); return h }},
		{&s.Signature, "signature", func() *keyset.Handle { h, _ := keyset.NewHandle(signature.ED25519KeyTemplate()); return h }},
		{&s.JWT, "jwt", func() *keyset.Handle { h, _ := keyset.NewHandle(jwt.ES256Template()); return h }},
	} {
		h := k.tmpl()
		if h == nil {
			return "", fmt.Errorf("vault: generate %s key", k.purpose)
		}
		var buf bytes.Buffer
		if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), v.kek(), []byte("registrar/service/"+k.purpose)); err != nil {
			return "", fmt.Errorf("vault: wrap %s key: %w", k.purpose, err)
		}
		*k.dst = base64.StdEncoding.EncodeToString(buf.Bytes())
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", fmt.Errorf("vault: encode service keyset: %w", err)
	}
	return string(b), nil
}

func (v *Vault) loadServiceKeyset(js string) error {
	var s serviceKeyset
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		return fmt.Errorf("vault: service keyset is not valid JSON: %w", err)
	}
	open := func(b64, purpose string) (*keyset.Handle, error) {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("vault: service keyset %s: %w", purpose, err)
		}
		h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(raw)), v.kek(), []byte("registrar/service/"+purpose))
		if err != nil {
			return nil, fmt.Errorf("vault: service keyset %s does not open under this KEK: %w", purpose, err)
		}
		return h, nil
	}
	h, err := open(s.PRF, "prf")
	if err != nil {
		return err
	}
	if v.bidx, err = prf.NewPRFSet(h); err != nil {
		return fmt.Errorf("vault: prf: %w", err)
	}
	if h, err = open(s.Signature, "signature"); err != nil {
		return err
	}
	if v.signer, err = signature.NewSigner(h); err != nil {
		return fmt.Errorf("vault: signer: %w", err)
	}
	v.sigKeyID = h.KeysetInfo().GetPrimaryKeyId()
	pub, err := h.Public()
	if err != nil {
		return fmt.Errorf("vault: signature public key: %w", err)
	}
	if v.verifier, err = signature.NewVerifier(pub); err != nil {
		return fmt.Errorf("vault: verifier: %w", err)
	}
	if h, err = open(s.JWT, "jwt"); err != nil {
		return err
	}
	if v.jwtSigner, err = jwt.NewSigner(h); err != nil {
		return fmt.Errorf("vault: jwt signer: %w", err)
	}
	if v.jwtPublic, err = h.Public(); err != nil {
		return fmt.Errorf("vault: jwt public key: %w", err)
	}
	return nil
}

// ExportServiceKeyset returns a new service keyset wrapped by this vault's KEK, for
// deployments that inject it as a secret (REGISTRAR_KEYSET).
func (v *Vault) ExportServiceKeyset() (string, error) { return v.newServiceKeyset() }

func dataKeyAD(subject string) []byte { return []byte("registrar/datakey/v1/" + subject) }

// NewDataKey creates a data key for subject and returns it wrapped by the KEK (to
// store) and ready to use. The wrapping is bound to the subject.
func (v *Vault) NewDataKey(subject string) ([]byte, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("vault: new data key: %w", err)
	}
	wrapped, err := v.wrap(h, dataKeyAD(subject))
	if err != nil {
		return nil, fmt.Errorf("vault: wrap data key: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("vault: data key primitive: %w", err)
	}
	v.cache.put(subject, a)
	return wrapped, nil
}

// DataKey returns subject's data key, unwrapping wrapped unless it is cached.
func (v *Vault) DataKey(subject string, wrapped []byte) (tink.AEAD, error) {
	if a, ok := v.cache.get(subject); ok {
		return a, nil
	}
	h, err := v.unwrap(wrapped, dataKeyAD(subject))
	if err != nil {
		return nil, fmt.Errorf("vault: unwrap data key: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("vault: data key primitive: %w", err)
	}
	v.cache.put(subject, a)
	return a, nil
}

// Rewrap unwraps a data key with any KEK version and wraps it again under the
// current primary; used by key rotation.
func (v *Vault) Rewrap(subject string, wrapped []byte) ([]byte, error) {
	return v.rewrap(wrapped, dataKeyAD(subject))
}

func (v *Vault) rewrap(wrapped, ad []byte) ([]byte, error) {
	h, err := v.unwrap(wrapped, ad)
	if err != nil {
		return nil, fmt.Errorf("vault: unwrap key: %w", err)
	}
	out, err := v.wrap(h, ad)
	if err != nil {
		return nil, fmt.Errorf("vault: wrap key: %w", err)
	}
	return out, nil
}

// Forget drops subject's data keys (fields and documents) from memory (after a purge).
func (v *Vault) Forget(subject string) {
	v.cache.del(subject)
	v.docs.del(subject)
}

// Binding is the associated data that ties a sealed value to one place: a ciphertext
// moved to another table, column or row fails to open.
func Binding(table, column, rowID string) []byte {
	return []byte("registrar/field/v1\x00" + table + "\x00" + column + "\x00" + rowID)
}

// Seal encrypts plaintext with key, bound to binding.
func (v *Vault) Seal(key tink.AEAD, plaintext, binding []byte) ([]byte, error) {
	if v.noop {
		return append([]byte{0}, plaintext...), nil
	}
	ct, err := key.Encrypt(plaintext, binding)
	if err != nil {
		return nil, fmt.Errorf("vault: seal: %w", err)
	}
	return ct, nil
}

// Open decrypts a sealed value; ErrDecrypt if it does not belong to key and binding.
func (v *Vault) Open(key tink.AEAD, ciphertext, binding []byte) ([]byte, error) {
	if v.noop {
		if len(ciphertext) == 0 || ciphertext[0] != 0 {
			return nil, ErrDecrypt
		}
		return ciphertext[1:], nil
	}
	pt, err := key.Decrypt(ciphertext, binding)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// BlindIndex returns the keyed index of value for field: equal inputs give equal
// outputs, and nothing about the value can be learned without the key. Emails are
// compared case-insensitively.
func (v *Vault) BlindIndex(field, value string) []byte {
	if field == "email" {
		value = strings.ToLower(strings.TrimSpace(value))
	}
	out, err := v.bidx.ComputePrimaryPRF([]byte("registrar/bidx/v1\x00"+field+"\x00"+value), 16)
	if err != nil {
		panic("vault: blind index PRF failed: " + err.Error()) // only on a broken keyset, caught at Open
	}
	return out
}

// Sign signs data with the service signature key.
func (v *Vault) Sign(data []byte) ([]byte, error) {
	sig, err := v.signer.Sign(data)
	if err != nil {
		return nil, fmt.Errorf("vault: sign: %w", err)
	}
	return sig, nil
}

// Verify checks a signature made by Sign.
func (v *Vault) Verify(sig, data []byte) error {
	if err := v.verifier.Verify(sig, data); err != nil {
		return errors.New("vault: signature does not verify")
	}
	return nil
}

// JWTSigner signs local access tokens.
func (v *Vault) JWTSigner() jwt.Signer { return v.jwtSigner }

// JWTPublic is the public keyset that verifies local access tokens.
func (v *Vault) JWTPublic() *keyset.Handle { return v.jwtPublic }

// RandomID returns a random 128-bit identifier in hex-with-dashes (UUID) form.
func RandomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("vault: no randomness: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// SealFor encrypts plaintext under subject's data key (wrapped as stored), bound to binding.
func (v *Vault) SealFor(subject string, wrapped, plaintext, binding []byte) ([]byte, error) {
	if v.noop {
		return v.Seal(nil, plaintext, binding)
	}
	k, err := v.DataKey(subject, wrapped)
	if err != nil {
		return nil, err
	}
	return v.Seal(k, plaintext, binding)
}

// OpenFor decrypts a value sealed by SealFor.
func (v *Vault) OpenFor(subject string, wrapped, ciphertext, binding []byte) ([]byte, error) {
	if v.noop {
		return v.Open(nil, ciphertext, binding)
	}
	if len(wrapped) == 0 {
		return nil, ErrDecrypt // the key was destroyed (purge): the value is gone for good
	}
	k, err := v.DataKey(subject, wrapped)
	if err != nil {
		return nil, err
	}
	return v.Open(k, ciphertext, binding)
}
