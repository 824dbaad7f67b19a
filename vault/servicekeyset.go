package vault

import (
	"errors"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// NewServiceKeyset returns a new service keyset (blind-index, signature and token
// keys) wrapped by kek, without opening a vault: `registrar keys init` makes the value
// of REGISTRAR_KEYSET with it for a deployment whose KEK is in AWS KMS.
func NewServiceKeyset(kek tink.AEAD) (string, error) {
	if kek == nil {
		return "", errors.New("vault: a key-encryption key is required to wrap a service keyset")
	}
	return (&Vault{remoteKEK: kek}).newServiceKeyset()
}

// ServiceKeysetFile is where Open keeps the service keyset in the key folder dir when
// it is not injected (Options.ServiceKeyset).
func ServiceKeysetFile(dir string) string { return filepath.Join(dir, serviceFile) }

// LocalKEKFile is where Open keeps the local KEK in the key folder dir.
func LocalKEKFile(dir string) string { return filepath.Join(dir, kekFile) }
