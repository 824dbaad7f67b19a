package sqlstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"registrar/sqlstore"
	"registrar/vault"
)

// TestRotationRefusesAKMSKEKBeforeRecordingIt: a KEK held by a KMS is rotated by the
// KMS; the store refuses at once and records no rotation that would then stay
// "running" (and be resumed, or reported unfinished, for ever).
func TestRotationRefusesAKMSKEKBeforeRecordingIt(t *testing.T) {
	t.Parallel()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	kek, err := aead.New(h) // stands in for the AWS KMS AEAD: a KEK that is not the local file
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir, KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, filepath.Join(dir, "registrar.db"), "server", v)
	ctx := context.Background()
	if _, err := st.RotateKEK(ctx, v, sqlstore.RotateOptions{}); !errors.Is(err, vault.ErrRemoteKEK) {
		t.Fatalf("got %v, want ErrRemoteKEK", err)
	}
	ks, err := st.KeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Rotation != nil {
		t.Fatalf("a refused rotation was recorded: %+v", *ks.Rotation)
	}
}
