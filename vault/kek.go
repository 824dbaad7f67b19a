package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/proto"
)

// ErrRemoteKEK is returned by the rotation methods when the KEK is not the local
// keyset file: a KMS key is rotated by the KMS, which keeps its old versions itself.
var ErrRemoteKEK = errors.New("vault: the key-encryption key is held by a KMS; rotate it there (AWS KMS rotates automatically and keeps old versions)")

// localKEK is one loaded version of the local KEK keyset file. It is replaced, never
// changed, so readers need no lock: another process (registrar keys rotate) may add a
// version while this one serves, and the vault then reloads the file.
type localKEK struct {
	handle *keyset.Handle
	aead   tink.AEAD
	info   os.FileInfo
}

func loadLocalKEK(path string) (*localKEK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vault: open KEK: %w", err)
	}
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
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("vault: KEK primitive: %w", err)
	}
	return &localKEK{handle: h, aead: a, info: fi}, nil
}

// kek is the key-encryption key as of now.
func (v *Vault) kek() tink.AEAD {
	if v.remoteKEK != nil {
		return v.remoteKEK
	}
	return v.local.Load().aead
}

// refreshKEK reloads the local KEK file if it changed since it was loaded (another
// process rotated or retired a version). It reports whether it reloaded.
func (v *Vault) refreshKEK() (bool, error) {
	if v.kekPath == "" {
		return false, nil
	}
	// The common case, unchanged, takes no lock: wraps of concurrent imports do not queue.
	if fi, err := os.Stat(v.kekPath); err == nil && sameFile(fi, v.local.Load().info) {
		return false, nil
	}
	v.kekMu.Lock()
	defer v.kekMu.Unlock()
	return v.refreshLocked()
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (v *Vault) refreshLocked() (bool, error) {
	cur := v.local.Load()
	fi, err := os.Stat(v.kekPath)
	if err != nil {
		return false, fmt.Errorf("vault: stat KEK: %w", err)
	}
	if sameFile(fi, cur.info) {
		return false, nil
	}
	st, err := loadLocalKEK(v.kekPath)
	if err != nil {
		return false, err
	}
	v.local.Store(st)
	return true, nil
}

// wrap encrypts keyset h under the current primary KEK version, bound to ad. The KEK
// file is checked first, so that a key made while another process rotates is wrapped
// under the new primary, not under a version that rotation is about to retire.
func (v *Vault) wrap(h *keyset.Handle, ad []byte) ([]byte, error) {
	if _, err := v.refreshKEK(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), v.kek(), ad); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// unwrap decrypts a wrapped keyset bound to ad, with any KEK version. When that fails
// and the KEK file changed (rotated by another process), it reloads and tries again.
func (v *Vault) unwrap(wrapped, ad []byte) (*keyset.Handle, error) {
	if len(wrapped) == 0 {
		return nil, ErrDecrypt
	}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), v.kek(), ad)
	if err == nil {
		return h, nil
	}
	if changed, rerr := v.refreshKEK(); rerr == nil && changed {
		if h, err = keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), v.kek(), ad); err == nil {
			return h, nil
		}
	}
	if v.remoteKEK != nil {
		// A KMS that is unreachable, throttles or denies access is not tampering: keep
		// its reason for the log (it names no key material).
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return nil, ErrDecrypt
}

// WrappedKEKID returns the id of the KEK version that wrapped a key (a data key, a
// document key or a service keyset component). ok is false when the wrapping carries
// no Tink key id (a KMS KEK, or not a wrapped keyset at all).
func WrappedKEKID(wrapped []byte) (id uint32, ok bool) {
	var ek tinkpb.EncryptedKeyset
	if err := proto.Unmarshal(wrapped, &ek); err != nil {
		return 0, false
	}
	ct := ek.GetEncryptedKeyset()
	// Tink's output prefix: 0x01 and the 4-byte big-endian key id.
	if len(ct) < 5 || ct[0] != 1 {
		return 0, false
	}
	return binary.BigEndian.Uint32(ct[1:5]), true
}

// KEKVersions returns the primary version of the local KEK and every version it
// holds, sorted.
func (v *Vault) KEKVersions() (primary uint32, all []uint32, err error) {
	if v.kekPath == "" {
		return 0, nil, ErrRemoteKEK
	}
	if _, err := v.refreshKEK(); err != nil {
		return 0, nil, err
	}
	info := v.local.Load().handle.KeysetInfo()
	for _, k := range info.GetKeyInfo() {
		all = append(all, k.GetKeyId())
	}
	slices.Sort(all)
	return info.GetPrimaryKeyId(), all, nil
}

// RotateKEK adds a new version to the local KEK and makes it the primary: keys wrapped
// from now on use it; keys wrapped before still open with their version until it is
// retired. The file is replaced atomically (temporary file, 0600, rename).
func (v *Vault) RotateKEK() (uint32, error) {
	if v.kekPath == "" {
		return 0, ErrRemoteKEK
	}
	v.kekMu.Lock()
	defer v.kekMu.Unlock()
	if _, err := v.refreshLocked(); err != nil {
		return 0, err
	}
	m := keyset.NewManagerFromHandle(v.local.Load().handle)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return 0, fmt.Errorf("vault: new KEK version: %w", err)
	}
	if err := m.SetPrimary(id); err != nil {
		return 0, fmt.Errorf("vault: new KEK version: %w", err)
	}
	if err := v.replaceKEK(m); err != nil {
		return 0, err
	}
	return id, nil
}

// RetireKEK deletes every KEK version except the primary, those in keep, and those the
// service keyset is still wrapped under. It returns the versions deleted. A key wrapped
// under a deleted version can never be opened again: callers pass in keep every
// version that a stored key still uses.
func (v *Vault) RetireKEK(keep []uint32) ([]uint32, error) {
	if v.kekPath == "" {
		return nil, ErrRemoteKEK
	}
	v.kekMu.Lock()
	defer v.kekMu.Unlock()
	if _, err := v.refreshLocked(); err != nil {
		return nil, err
	}
	needed := map[uint32]bool{}
	for _, id := range keep {
		needed[id] = true
	}
	v.svcMu.Lock()
	svcIDs, err := serviceKEKIDs(v.svcJSON)
	v.svcMu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, id := range svcIDs {
		needed[id] = true
	}
	h := v.local.Load().handle
	info := h.KeysetInfo()
	m := keyset.NewManagerFromHandle(h)
	var retired []uint32
	for _, k := range info.GetKeyInfo() {
		id := k.GetKeyId()
		if id == info.GetPrimaryKeyId() || needed[id] {
			continue
		}
		if err := m.Delete(id); err != nil {
			return nil, fmt.Errorf("vault: retire KEK version %d: %w", id, err)
		}
		retired = append(retired, id)
	}
	if len(retired) == 0 {
		return nil, nil
	}
	if err := v.replaceKEK(m); err != nil {
		return nil, err
	}
	slices.Sort(retired)
	return retired, nil
}

// replaceKEK writes the manager's keyset as the KEK file and loads it. kekMu is held.
func (v *Vault) replaceKEK(m *keyset.Manager) error {
	h, err := m.Handle()
	if err != nil {
		return fmt.Errorf("vault: KEK keyset: %w", err)
	}
	if err := writeKEK(v.kekPath, h); err != nil {
		return err
	}
	st, err := loadLocalKEK(v.kekPath)
	if err != nil {
		return err
	}
	v.local.Store(st)
	return nil
}

// RewrapServiceKeyset wraps the service keyset again under the current primary KEK
// version and, when it lives in the data directory, replaces the file. For an
// injected keyset (REGISTRAR_KEYSET) it returns the rewrapped value for the operator
// to install, and the versions it needs stay until then (see RetireKEK).
func (v *Vault) RewrapServiceKeyset() (rewrapped string, inFile bool, err error) {
	v.svcMu.Lock()
	defer v.svcMu.Unlock()
	var s serviceKeyset
	if err := json.Unmarshal([]byte(v.svcJSON), &s); err != nil {
		return "", false, fmt.Errorf("vault: service keyset is not valid JSON: %w", err)
	}
	for _, c := range []struct {
		p       *string
		purpose string
	}{{&s.PRF, "prf"}, {&s.Signature, "signature"}, {&s.JWT, "jwt"}} {
		raw, err := base64.StdEncoding.DecodeString(*c.p)
		if err != nil {
			return "", false, fmt.Errorf("vault: service keyset %s: %w", c.purpose, err)
		}
		out, err := v.rewrap(raw, []byte("registrar/service/"+c.purpose))
		if err != nil {
			return "", false, fmt.Errorf("vault: service keyset %s: %w", c.purpose, err)
		}
		*c.p = base64.StdEncoding.EncodeToString(out)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", false, fmt.Errorf("vault: encode service keyset: %w", err)
	}
	if v.svcPath == "" {
		return string(b), false, nil
	}
	if err := writeFileAtomic(v.svcPath, b); err != nil {
		return "", false, err
	}
	v.svcJSON = string(b)
	return string(b), true, nil
}

// serviceKEKIDs lists the KEK versions the components of a service keyset are wrapped under.
func serviceKEKIDs(js string) ([]uint32, error) {
	var s serviceKeyset
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		return nil, fmt.Errorf("vault: service keyset is not valid JSON: %w", err)
	}
	var ids []uint32
	for _, c := range []string{s.PRF, s.Signature, s.JWT} {
		raw, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, fmt.Errorf("vault: service keyset: %w", err)
		}
		if id, ok := WrappedKEKID(raw); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
