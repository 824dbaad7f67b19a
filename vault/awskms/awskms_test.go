package awskms_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/proto"

	"registrar/vault"
	"registrar/vault/awskms"
	"registrar/vault/awskms/kmstest"
)

func newKEK(t *testing.T, endpoint, uri string) tink.AEAD {
	t.Helper()
	kek, err := awskms.New(context.Background(), awskms.Options{URI: uri, Endpoint: endpoint, Credentials: kmstest.Credentials})
	if err != nil {
		t.Fatalf("awskms.New(%s): %v", uri, err)
	}
	return kek
}

func TestParseURI(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, uri, arn, region string
	}{
		{"a key ARN is accepted", "aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "us-east-1"},
		{"a GovCloud key ARN is accepted", "aws-kms://arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd",
			"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd", "us-gov-west-1"},
		{"an alias is refused", "aws-kms://arn:aws:kms:us-east-1:111122223333:alias/registrar/prod/kek", "", ""},
		{"a bare key id is refused", "aws-kms://1234abcd-12ab-34cd-56ef-1234567890ab", "", ""},
		{"an ARN without the scheme is refused", "arn:aws:kms:us-east-1:111122223333:key/1234abcd", "", ""},
		{"another scheme is refused", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "", ""},
		{"a short account is refused", "aws-kms://arn:aws:kms:us-east-1:1111:key/1234abcd", "", ""},
		{"trailing text is refused", "aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd extra", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			arn, region, err := awskms.ParseURI(c.uri)
			if c.arn == "" {
				if err == nil || !strings.Contains(err.Error(), "aws-kms://arn:aws:kms:REGION:ACCOUNT:key/KEY-ID") {
					t.Fatalf("got %v, want a refusal that shows the format", err)
				}
				return
			}
			if err != nil || arn != c.arn || region != c.region {
				t.Fatalf("got %q, %q, %v; want %q, %q", arn, region, err, c.arn, c.region)
			}
		})
	}
}

// kmsBlob returns the KMS ciphertext inside a key wrapped by the vault (a Tink
// EncryptedKeyset whose encrypted part is what KMS Encrypt returned).
func kmsBlob(t *testing.T, wrapped []byte) []byte {
	t.Helper()
	var ek tinkpb.EncryptedKeyset
	if err := proto.Unmarshal(wrapped, &ek); err != nil {
		t.Fatalf("wrapped key is not a Tink encrypted keyset: %v", err)
	}
	return ek.GetEncryptedKeyset()
}

func TestVaultUnderKMS(t *testing.T) {
	t.Parallel()
	ep := kmstest.Endpoint(t)
	uri := kmstest.NewKey(t, ep)
	kek := newKEK(t, ep, uri)
	keyset, err := vault.NewServiceKeyset(kek)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir, KEK: kek, ServiceKeyset: keyset})
	if err != nil {
		t.Fatal(err)
	}
	// Another process of the same deployment: same key, same injected keyset.
	other, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: newKEK(t, ep, uri), ServiceKeyset: keyset})
	if err != nil {
		t.Fatal(err)
	}
	binding := vault.Binding("users", "sealed", "u1")

	t.Run("no key file is written: the KEK is in KMS and the service keyset injected", func(t *testing.T) {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("key folder holds %v, want nothing", entries)
		}
	})

	t.Run("a value sealed under a KMS-wrapped data key opens in another process", func(t *testing.T) {
		wrapped, err := v.NewDataKey("s1")
		if err != nil {
			t.Fatal(err)
		}
		ct, err := v.SealFor("s1", wrapped, []byte("jane@example.edu"), binding)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := other.OpenFor("s1", wrapped, ct, binding)
		if err != nil || string(pt) != "jane@example.edu" {
			t.Fatalf("got %q, %v; want the plaintext", pt, err)
		}
		if _, err := other.OpenFor("s1", wrapped, ct, vault.Binding("users", "sealed", "u2")); !errors.Is(err, vault.ErrDecrypt) {
			t.Fatalf("moved to another row: got %v, want ErrDecrypt", err)
		}
	})

	t.Run("the data key is wrapped by KMS and bound to its subject", func(t *testing.T) {
		wrapped, err := v.NewDataKey("s2")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := vault.WrappedKEKID(wrapped); ok {
			t.Error("a KMS-wrapped key reads as a local KEK version")
		}
		// KMS itself opens the wrapping, with the subject as encryption context (Tink
		// sends the associated data hex-encoded as "associatedData").
		ctx := context.Background()
		c := kmstest.Client(ep)
		out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: kmsBlob(t, wrapped),
			EncryptionContext: map[string]string{"associatedData": hex.EncodeToString([]byte("registrar/datakey/v1/s2"))}})
		if err != nil || len(out.Plaintext) == 0 {
			t.Fatalf("KMS Decrypt of the wrapped data key: %v", err)
		}
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: kmsBlob(t, wrapped),
			EncryptionContext: map[string]string{"associatedData": hex.EncodeToString([]byte("registrar/datakey/v1/s3"))}}); err == nil {
			t.Fatal("KMS opened the data key of s2 as the key of s3")
		}
		other.Forget("s3")
		if _, err := other.DataKey("s3", wrapped); !errors.Is(err, vault.ErrDecrypt) {
			t.Fatalf("s2's key as s3's: got %v, want ErrDecrypt", err)
		}
	})

	t.Run("the service keyset is the same in every process that opens it", func(t *testing.T) {
		sig, err := v.Sign([]byte("checkpoint"))
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Verify(sig, []byte("checkpoint")); err != nil {
			t.Fatalf("signature of one process does not verify in another: %v", err)
		}
		if a, b := v.BlindIndex("email", "Jane@Example.edu"), other.BlindIndex("email", "jane@example.edu"); !bytes.Equal(a, b) {
			t.Fatal("blind indexes differ between processes")
		}
	})

	t.Run("another KMS key opens neither the data keys nor the service keyset", func(t *testing.T) {
		stranger := newKEK(t, ep, kmstest.NewKey(t, ep))
		if _, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: stranger, ServiceKeyset: keyset}); err == nil ||
			!strings.Contains(err.Error(), "does not open under this KEK") {
			t.Fatalf("got %v, want the service keyset refused", err)
		}
		own, err := vault.NewServiceKeyset(stranger)
		if err != nil {
			t.Fatal(err)
		}
		sv, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: stranger, ServiceKeyset: own})
		if err != nil {
			t.Fatal(err)
		}
		wrapped, err := v.NewDataKey("s4")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sv.DataKey("s4", wrapped); !errors.Is(err, vault.ErrDecrypt) {
			t.Fatalf("got %v, want ErrDecrypt", err)
		}
	})

	t.Run("the local rotation refuses: KMS rotates its own key", func(t *testing.T) {
		if _, _, err := v.KEKVersions(); !errors.Is(err, vault.ErrRemoteKEK) {
			t.Fatalf("KEKVersions: got %v, want ErrRemoteKEK", err)
		}
		if _, err := v.RotateKEK(); !errors.Is(err, vault.ErrRemoteKEK) {
			t.Fatalf("RotateKEK: got %v, want ErrRemoteKEK", err)
		}
	})
}

// TestKeysWrappedBeforeAKMSRotationStillOpen seeds a key whose automatic rotation falls
// due during the test: KMS keeps the old key material, so keys wrapped before the
// rotation open after it and nothing has to be rewrapped.
func TestKeysWrappedBeforeAKMSRotationStillOpen(t *testing.T) {
	t.Parallel()
	const id = "5f0f8e3c-7a52-4c1e-9a59-0d7f3c2b9e11"
	due := time.Now().Add(2 * time.Second).UTC()
	seed := fmt.Sprintf(`Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: %s
        NextKeyRotation: "%s"
        BackingKeys:
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
`, id, due.Format(time.RFC3339Nano))
	ep, _ := kmstest.Start(t, seed)
	uri := "aws-kms://arn:aws:kms:" + kmstest.Region + ":111122223333:key/" + id
	kek := newKEK(t, ep, uri)
	keyset, err := vault.NewServiceKeyset(kek)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: kek, ServiceKeyset: keyset})
	if err != nil {
		t.Fatal(err)
	}
	before, err := v.NewDataKey("s1")
	if err != nil {
		t.Fatal(err)
	}
	binding := vault.Binding("users", "sealed", "u1")
	ct, err := v.SealFor("s1", before, []byte("x"), binding)
	if err != nil {
		t.Fatal(err)
	}

	// Wait for the rotation: local-kms rotates on the first use after it is due, and
	// its ciphertext names the key version (after a length-prefixed ARN, 4 bytes LE).
	version := func(wrapped []byte) uint32 {
		b := kmsBlob(t, wrapped)
		n := int(b[0])
		return binary.LittleEndian.Uint32(b[1+n : 5+n])
	}
	var after []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		if after, err = v.NewDataKey("s2"); err != nil {
			t.Fatal(err)
		}
		if version(after) != version(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key did not rotate: still version %d", version(after))
		}
		time.Sleep(100 * time.Millisecond)
	}

	fresh, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: newKEK(t, ep, uri), ServiceKeyset: keyset})
	if err != nil {
		t.Fatalf("the service keyset wrapped before the rotation: %v", err)
	}
	if pt, err := fresh.OpenFor("s1", before, ct, binding); err != nil || string(pt) != "x" {
		t.Fatalf("a key wrapped before the rotation: got %q, %v", pt, err)
	}
	if _, err := fresh.DataKey("s2", after); err != nil {
		t.Fatalf("a key wrapped after the rotation: %v", err)
	}
}

func TestUnusableKeyIsAClearErrorAtStartup(t *testing.T) {
	t.Parallel()
	ep := kmstest.Endpoint(t)
	good := kmstest.NewKey(t, ep)
	arn, region, err := awskms.ParseURI(good)
	if err != nil {
		t.Fatal(err)
	}
	account := strings.Split(arn, ":")[4]
	disabled := kmstest.NewKey(t, ep)
	darn, _, _ := awskms.ParseURI(disabled)
	if _, err := kmstest.Client(ep).DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(darn)}); err != nil {
		t.Fatal(err)
	}
	closed := closedPort(t)

	for _, c := range []struct {
		name string
		opt  awskms.Options
		want []string
	}{
		{"a key ARN that names no key", awskms.Options{URI: "aws-kms://arn:aws:kms:" + region + ":" + account + ":key/00000000-0000-4000-8000-000000000000", Endpoint: ep},
			[]string{"00000000-0000-4000-8000-000000000000", "cannot be used", "no such key"}},
		{"a disabled key", awskms.Options{URI: disabled, Endpoint: ep},
			[]string{darn, "disabled"}},
		{"an endpoint nothing listens on", awskms.Options{URI: good, Endpoint: closed},
			[]string{"cannot reach the KMS at " + closed}},
		{"a region other than the key's", awskms.Options{URI: good, Region: "eu-west-3", Endpoint: ep},
			[]string{"--aws-region is eu-west-3", "in " + region}},
		{"an alias", awskms.Options{URI: "aws-kms://arn:aws:kms:" + region + ":" + account + ":alias/kek", Endpoint: ep},
			[]string{"not an alias"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.opt.Credentials = kmstest.Credentials
			start := time.Now()
			kek, err := awskms.New(context.Background(), c.opt)
			if err == nil {
				t.Fatalf("got a KEK %v, want an error", kek)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v to fail, want a prompt error", d)
			}
		})
	}
}

// closedPort is a loopback URL where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestMissingLocalKMSFailsWithTheInstallCommand(t *testing.T) {
	if os.Getenv("REGISTRAR_TEST_KMS_HELPER") == "1" {
		// In the child: no REGISTRAR_TEST_KMS_ENDPOINT, and no local-kms to be found.
		kmstest.Endpoint(t)
		return
	}
	t.Parallel()
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingLocalKMSFailsWithTheInstallCommand$", "-test.count=1")
	cmd.Env = []string{"REGISTRAR_TEST_KMS_HELPER=1", "PATH=" + empty, "HOME=" + empty, "GOBIN=" + filepath.Join(empty, "bin")}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the helper did not fail without local-kms:\n%s", out)
	}
	for _, w := range []string{"FAIL", kmstest.Install, "./scripts/test"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output does not say %q:\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "SKIP") {
		t.Errorf("the helper skipped instead of failing:\n%s", out)
	}
}

// TestAKMSOutageIsNotReportedAsTampering: when KMS stops answering, unwrapping fails
// with ErrDecrypt (no plaintext without the key) but the error says it was KMS, so the
// log sends an operator to the network rather than to a forensic hunt.
func TestAKMSOutageIsNotReportedAsTampering(t *testing.T) {
	t.Parallel()
	ep, stop := kmstest.Start(t, "")
	kek := newKEK(t, ep, kmstest.NewKey(t, ep))
	keyset, err := vault.NewServiceKeyset(kek)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(vault.Options{Dir: t.TempDir(), KEK: kek, ServiceKeyset: keyset})
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := v.NewDataKey("s1")
	if err != nil {
		t.Fatal(err)
	}
	v.Forget("s1")
	stop()
	_, err = v.DataKey("s1", wrapped)
	if !errors.Is(err, vault.ErrDecrypt) {
		t.Fatalf("got %v, want ErrDecrypt", err)
	}
	for _, w := range []string{"aws kms: decrypt with", "connection refused"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}
