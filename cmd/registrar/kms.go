package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/tink-crypto/tink-go/v2/tink"

	"registrar/config"
	"registrar/vault"
	"registrar/vault/awskms"
)

// openVault opens the keys in DATA/keys: the local KEK file, or with --kek-uri the AWS
// KMS key, whose service keyset comes from REGISTRAR_KEYSET or, on one machine, from
// DATA/keys/service.json (both made by `registrar keys init`).
func openVault(ctx context.Context, e *env, cfg *config.Config) (*vault.Vault, error) {
	dir := filepath.Join(cfg.Data, "keys")
	if cfg.KEKURI == "" {
		return vault.Open(vault.Options{Dir: dir, ServiceKeyset: cfg.Keyset})
	}
	// Keys wrapped by a local KEK do not open under a KMS key: starting would fail every
	// read of a sealed field instead of failing here.
	if _, err := os.Stat(vault.LocalKEKFile(dir)); err == nil {
		return nil, fmt.Errorf("--kek-uri is set but %s holds a local key-encryption key: this data directory's keys are wrapped by it, not by KMS. "+
			"Moving a data directory from the local KEK to AWS KMS is not supported; use a new data directory (and database) with --kek-uri, or leave --kek-uri empty", vault.LocalKEKFile(dir))
	}
	if cfg.Keyset == "" {
		if _, err := os.Stat(vault.ServiceKeysetFile(dir)); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("--kek-uri is set but there is no service keyset: set REGISTRAR_KEYSET (or REGISTRAR_KEYSET_FILE) to the output of "+
				"`registrar keys init --kek-uri %s`, or on a single machine run `registrar keys init --kek-uri %s --save --data %s` once", cfg.KEKURI, cfg.KEKURI, cfg.Data)
		}
	}
	kek, err := kmsKEK(ctx, e, cfg)
	if err != nil {
		return nil, err
	}
	v, err := vault.Open(vault.Options{Dir: dir, KEK: kek, ServiceKeyset: cfg.Keyset})
	if err != nil {
		return nil, fmt.Errorf("%w (is the service keyset wrapped by %s? `registrar keys init` makes one that is)", err, cfg.KEKURI)
	}
	return v, nil
}

// kmsKEK is the AWS KMS key named by --kek-uri, checked to encrypt and decrypt.
func kmsKEK(ctx context.Context, e *env, cfg *config.Config) (tink.AEAD, error) {
	return awskms.New(ctx, awskms.Options{URI: cfg.KEKURI, Region: cfg.AWSRegion, Endpoint: cfg.AWSEndpoint, Credentials: envCredentials(e.getenv)})
}

// envCredentials reads AWS_ACCESS_KEY_ID and friends through the command's environment,
// which is the process's except in tests; nil leaves the SDK's default chain (which
// reads the same variables first, then the ECS task role on AWS).
func envCredentials(getenv func(string) string) aws.CredentialsProvider {
	id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		return nil
	}
	return credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))
}

// keysInit makes a new service keyset wrapped by the AWS KMS key, for Secrets Manager
// (REGISTRAR_KEYSET) or, with --save, for DATA/keys/service.json on one machine. It
// needs only KMS: no database, no data directory unless --save.
func keysInit(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "keys init", "--kek-uri aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID [--save]")
	save := fs.Bool("save", false, "write the keyset to DATA/keys/service.json (one machine with a KMS KEK) instead of printing it")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("keys init takes no arguments, got %q", fs.Args())}
	}
	if cfg.KEKURI == "" {
		return &exitError{code: 2, msg: "keys init makes the service keyset for a key-encryption key in AWS KMS: give --kek-uri aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID (or REGISTRAR_KEK_URI). " +
			"With the local keyset file (no --kek-uri) the service keyset is made on first start"}
	}
	kek, err := kmsKEK(ctx, e, cfg)
	if err != nil {
		return err
	}
	ks, err := vault.NewServiceKeyset(kek)
	if err != nil {
		return err
	}
	if _, err := vault.Open(vault.Options{KEK: kek, ServiceKeyset: ks}); err != nil {
		return fmt.Errorf("the new service keyset does not open under %s: %w", cfg.KEKURI, err)
	}
	const warning = "A service keyset is made once per deployment: replacing one in use orphans the blind indexes, " +
		"the tokens issued and the signatures of audit checkpoints and deletion certificates."
	if !*save {
		fmt.Fprintln(e.stdout, ks)
		fmt.Fprintf(e.stderr, "Service keyset wrapped by %s printed on stdout: store it as REGISTRAR_KEYSET (the keyset secret in Secrets Manager). %s\n", cfg.KEKURI, warning)
		return nil
	}
	dir := filepath.Join(cfg.Data, "keys")
	if _, err := os.Stat(vault.LocalKEKFile(dir)); err == nil {
		return fmt.Errorf("%s holds a local key-encryption key: this data directory does not use AWS KMS", vault.LocalKEKFile(dir))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	path := vault.ServiceKeysetFile(dir)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return &exitError{code: 1, msg: fmt.Sprintf("%s exists: this data directory has its service keyset already. %s", path, warning)}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.WriteString(ks); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	fmt.Fprintf(e.stdout, "service keyset wrapped by %s written to %s; start registrar with --kek-uri %s --data %s\n", cfg.KEKURI, path, cfg.KEKURI, cfg.Data)
	return nil
}
