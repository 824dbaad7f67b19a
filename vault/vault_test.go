package vault_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"registrar/vault"
)

func open(t *testing.T, dir string) *vault.Vault {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKEKFileIsCreatedPrivateAndRefusedWhenOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open(t, dir)
	for _, f := range []string{"kek.json", "service.json"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, got)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "kek.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Open(vault.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("open with a world-readable KEK: got %v, want a refusal that says how to fix it", err)
	}
}

func TestSealedValueOpensOnlyInItsOwnPlace(t *testing.T) {
	t.Parallel()
	v := open(t, t.TempDir())
	wa, err := v.NewDataKey("alice")
	if err != nil {
		t.Fatal(err)
	}
	wb, err := v.NewDataKey("bob")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := v.SealFor("alice", wa, []byte("alice's secret"), vault.Binding("users", "sealed", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := v.OpenFor("alice", wa, ct, vault.Binding("users", "sealed", "alice")); err != nil || string(pt) != "alice's secret" {
		t.Fatalf("open in place: got %q, %v", pt, err)
	}
	for name, c := range map[string]struct {
		subject string
		wrapped []byte
		binding []byte
	}{
		"another row":          {"alice", wa, vault.Binding("users", "sealed", "bob")},
		"another column":       {"alice", wa, vault.Binding("users", "other", "alice")},
		"another table":        {"alice", wa, vault.Binding("demographics", "sealed", "alice")},
		"another person's key": {"bob", wb, vault.Binding("users", "sealed", "alice")},
		"a destroyed key":      {"alice", nil, vault.Binding("users", "sealed", "alice")},
	} {
		t.Run("moved to "+name+" it does not open", func(t *testing.T) {
			pt, err := v.OpenFor(c.subject, c.wrapped, ct, c.binding)
			if !errors.Is(err, vault.ErrDecrypt) {
				t.Fatalf("got %q, %v; want ErrDecrypt", pt, err)
			}
		})
	}
	t.Run("a wrapped key copied to another subject does not unwrap", func(t *testing.T) {
		fresh := open(t, t.TempDir()) // another installation: nothing cached
		if _, err := fresh.DataKey("bob", wa); !errors.Is(err, vault.ErrDecrypt) {
			t.Fatalf("got %v, want ErrDecrypt", err)
		}
	})
}

func TestCacheStaysBoundedEvenWhenTiny(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := v.NewDataKey(strings.Repeat("s", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := vault.CacheLen(v); n > 2 {
		t.Fatalf("cache holds %d keys, want at most 2", n)
	}
}

func TestRotationAddsAPrimaryThatOtherProcessesPickUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	server := open(t, dir)  // the server, loaded before rotation
	rotator := open(t, dir) // registrar keys rotate, another process
	old, _, err := rotator.KEKVersions()
	if err != nil {
		t.Fatal(err)
	}
	wrappedOld, err := server.NewDataKey("s1")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := vault.WrappedKEKID(wrappedOld); !ok || id != old {
		t.Fatalf("WrappedKEKID: got %d, %v; want %d", id, ok, old)
	}
	ct, err := server.SealFor("s1", wrappedOld, []byte("v"), vault.Binding("t", "c", "r"))
	if err != nil {
		t.Fatal(err)
	}

	newID, err := rotator.RotateKEK()
	if err != nil {
		t.Fatal(err)
	}
	if newID == old {
		t.Fatal("rotation kept the old primary")
	}
	rewrapped, err := rotator.Rewrap("s1", wrappedOld)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := vault.WrappedKEKID(rewrapped); id != newID {
		t.Fatalf("rewrapped under %d, want the new primary %d", id, newID)
	}

	t.Run("the server opens keys wrapped under the new version", func(t *testing.T) {
		server.Forget("s1")
		pt, err := server.OpenFor("s1", rewrapped, ct, vault.Binding("t", "c", "r"))
		if err != nil || string(pt) != "v" {
			t.Fatalf("got %q, %v", pt, err)
		}
	})
	t.Run("the server wraps new keys under the new version", func(t *testing.T) {
		w, err := server.NewDataKey("s2")
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := vault.WrappedKEKID(w); id != newID {
			t.Fatalf("wrapped under %d, want %d", id, newID)
		}
	})

	t.Run("retirement keeps versions still needed", func(t *testing.T) {
		retired, err := rotator.RetireKEK([]uint32{old})
		if err != nil {
			t.Fatal(err)
		}
		if len(retired) != 0 {
			t.Fatalf("retired %v while a key needs it", retired)
		}
	})
	t.Run("retirement keeps the version the service keyset needs until it is rewrapped", func(t *testing.T) {
		retired, err := rotator.RetireKEK(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(retired) != 0 {
			t.Fatalf("retired %v while service.json needs it", retired)
		}
		if _, inFile, err := rotator.RewrapServiceKeyset(); err != nil || !inFile {
			t.Fatalf("rewrap service keyset: %v (in file %v)", err, inFile)
		}
		retired, err = rotator.RetireKEK(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(retired, []uint32{old}) {
			t.Fatalf("retired %v, want [%d]", retired, old)
		}
	})
	t.Run("after retirement a fresh start opens the rewrapped key and not the old one", func(t *testing.T) {
		fresh := open(t, dir)
		_, all, _ := fresh.KEKVersions()
		if !slices.Equal(all, []uint32{newID}) {
			t.Fatalf("KEK versions %v, want [%d]", all, newID)
		}
		if pt, err := fresh.OpenFor("s1", rewrapped, ct, vault.Binding("t", "c", "r")); err != nil || string(pt) != "v" {
			t.Fatalf("rewrapped: got %q, %v", pt, err)
		}
		fresh.Forget("s1")
		if _, err := fresh.OpenFor("s1", wrappedOld, ct, vault.Binding("t", "c", "r")); !errors.Is(err, vault.ErrDecrypt) {
			t.Fatalf("wrapped under the retired version: got %v, want ErrDecrypt", err)
		}
		sig, err := fresh.Sign([]byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if err := server.Verify(sig, []byte("x")); err != nil {
			t.Fatalf("the service keys changed in rotation: %v", err)
		}
	})
}

func TestRemoteKEKIsNotRotatedHere(t *testing.T) {
	t.Parallel()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.RotateKEK(); !errors.Is(err, vault.ErrRemoteKEK) {
		t.Fatalf("got %v, want ErrRemoteKEK", err)
	}
	w, err := v.NewDataKey("s")
	if err != nil {
		t.Fatal(err)
	}
	v.Forget("s")
	if _, err := v.DataKey("s", w); err != nil {
		t.Fatal(err)
	}
}

func TestDocumentKeyStreamsAndIsBoundToItsPlace(t *testing.T) {
	t.Parallel()
	v := open(t, t.TempDir())
	w, err := v.NewDocumentKey("alice")
	if err != nil {
		t.Fatal(err)
	}
	k, err := v.DocumentKey("alice", w)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc, err := k.NewEncryptingWriter(&buf, vault.DocumentBinding("alice", "transcript.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("transcript "), 2000)
	if _, err := enc.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("transcript")) {
		t.Fatal("ciphertext contains plaintext")
	}
	dec, err := k.NewDecryptingReader(bytes.NewReader(buf.Bytes()), vault.DocumentBinding("alice", "transcript.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dec)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
	dec, err = k.NewDecryptingReader(bytes.NewReader(buf.Bytes()), vault.DocumentBinding("alice", "other.pdf"))
	if err == nil {
		_, err = io.ReadAll(dec)
	}
	if err == nil {
		t.Fatal("a document renamed on disk still opened")
	}
	if _, err := v.DocumentKey("alice", nil); !errors.Is(err, vault.ErrDecrypt) {
		t.Fatalf("destroyed document key: got %v, want ErrDecrypt", err)
	}
}

func TestSignedDocuments(t *testing.T) {
	t.Parallel()
	v := open(t, t.TempDir())
	doc, err := v.SignJSON("test/v1", map[string]any{"student": "s1", "rows": 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a signed document verifies", func(t *testing.T) {
		typ, body, err := v.VerifyJSON(doc)
		if err != nil || typ != "test/v1" || !strings.Contains(string(body), `"student":"s1"`) {
			t.Fatalf("got %q %s %v", typ, body, err)
		}
	})
	t.Run("re-indented it still verifies", func(t *testing.T) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, doc, "", "\t\t"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := v.VerifyJSON(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	})
	for name, edit := range map[string][2]string{
		"a changed value": {`"rows": 3`, `"rows": 2`},
		"a changed name":  {`"student": "s1"`, `"student": "s2"`},
		"a changed type":  {`"type": "test/v1"`, `"type": "test/v2"`},
	} {
		t.Run("with "+name+" it does not verify", func(t *testing.T) {
			bad := strings.Replace(string(doc), edit[0], edit[1], 1)
			if bad == string(doc) {
				t.Fatalf("edit %q not applied to %s", edit[0], doc)
			}
			if _, _, err := v.VerifyJSON([]byte(bad)); !errors.Is(err, vault.ErrBadSignature) {
				t.Fatalf("got %v, want ErrBadSignature", err)
			}
		})
	}
	t.Run("another installation's key does not verify it", func(t *testing.T) {
		other := open(t, t.TempDir())
		if _, _, err := other.VerifyJSON(doc); !errors.Is(err, vault.ErrBadSignature) {
			t.Fatalf("got %v, want ErrBadSignature", err)
		}
	})
}
