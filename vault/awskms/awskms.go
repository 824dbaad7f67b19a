// Package awskms is the key-encryption key held in AWS KMS: a Tink AEAD (Tink's AWS KMS
// integration, tink-go-awskms/v3 over aws-sdk-go-v2) that the vault uses in place of
// the local keyset file to wrap each person's data key and the service keyset.
//
// The key never leaves KMS: wrapping is a KMS Encrypt call and unwrapping a Decrypt
// call, with the vault's associated data sent as the encryption context. New checks
// the key once (an Encrypt and a Decrypt) so that a wrong key ARN, region, endpoint or
// permission stops registrar at startup with a clear error instead of at the first
// request. It imports nothing from registrar.
package awskms

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	tinkawskms "github.com/tink-crypto/tink-go-awskms/v3/integration/awskms"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Prefix starts every key URI this package accepts.
const Prefix = "aws-kms://"

// keyURI is aws-kms:// and a key ARN. Aliases are refused: KMS decrypts only under the
// key a ciphertext names, so an alias moved to another key would strand every wrapped
// key, and a key ARN cannot move.
var keyURI = regexp.MustCompile(`^aws-kms://(arn:(aws[a-z-]*):kms:([a-z0-9-]+):([0-9]{12}):key/([A-Za-z0-9-]+))$`)

// Options configure New.
type Options struct {
	// URI names the key: aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID.
	URI string
	// Region is the SDK's region; empty means the key ARN's. A key is used in its own
	// region, so a different value is refused.
	Region string
	// Endpoint overrides the KMS endpoint (an emulator in tests); empty means AWS's.
	Endpoint string
	// Credentials override the SDK's default chain (environment, shared config, ECS task
	// role, instance profile). Nil in production.
	Credentials aws.CredentialsProvider
	// Timeout bounds one Encrypt or Decrypt, retries included (default 20s).
	Timeout time.Duration
}

// ParseURI checks a key URI and returns the key ARN and its region.
func ParseURI(uri string) (arn, region string, err error) {
	m := keyURI.FindStringSubmatch(uri)
	if m == nil {
		return "", "", fmt.Errorf("aws kms: %q is not a key URI: want aws-kms://arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (a key ARN, not an alias)", uri)
	}
	return m[1], m[3], nil
}

// New returns the AEAD of the KMS key named by o.URI, after checking that the key
// encrypts and decrypts with these credentials.
func New(ctx context.Context, o Options) (tink.AEAD, error) {
	arn, region, err := ParseURI(o.URI)
	if err != nil {
		return nil, err
	}
	if o.Region != "" && o.Region != region {
		return nil, fmt.Errorf("aws kms: --aws-region is %s but the key-encryption key %s is in %s; a KMS key is used in its own region", o.Region, arn, region)
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		// A few quick retries on throttling and connection errors; every wrap and unwrap
		// waits on KMS, so a long backoff would hold a request rather than fail it.
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = 3
				so.MaxBackoff = 2 * time.Second
			})
		}),
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(10 * time.Second)),
	}
	if o.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws kms: AWS configuration: %w", err)
	}
	client := kms.NewFromConfig(cfg, func(ko *kms.Options) {
		if o.Endpoint != "" {
			ko.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	a, err := tinkawskms.NewAEADWithContext(ctx, arn, tinkawskms.WithKMS(client))
	if err != nil {
		return nil, fmt.Errorf("aws kms: %w", err)
	}
	k := &kek{aead: a, arn: arn, timeout: o.Timeout}
	if err := k.check(ctx, o.Endpoint); err != nil {
		return nil, err
	}
	return k, nil
}

// kek is the KMS AEAD with a deadline on every call: the vault's wrap and unwrap take no
// context, and a KMS that stops answering must not hold a request forever.
type kek struct {
	aead    tink.AEADWithContext
	arn     string
	timeout time.Duration
}

var _ tink.AEAD = (*kek)(nil)

// Encrypt wraps plaintext under the KMS key, bound to associatedData.
func (k *kek) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	ct, err := k.aead.EncryptWithContext(ctx, plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("aws kms: encrypt with %s: %w", k.arn, err)
	}
	return ct, nil
}

// Decrypt unwraps ciphertext with the KMS key, checking associatedData.
func (k *kek) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	pt, err := k.aead.DecryptWithContext(ctx, ciphertext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("aws kms: decrypt with %s: %w", k.arn, err)
	}
	return pt, nil
}

// check encrypts and decrypts a random value: the two calls the vault makes, so the
// check needs exactly the permissions the service has (kms:Encrypt, kms:Decrypt).
func (k *kek) check(ctx context.Context, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	probe := make([]byte, 16)
	if _, err := rand.Read(probe); err != nil {
		return fmt.Errorf("aws kms: no randomness: %w", err)
	}
	ad := []byte("registrar/kek-check/v1")
	ct, err := k.aead.EncryptWithContext(ctx, probe, ad)
	if err != nil {
		return k.unusable("encrypt", endpoint, err)
	}
	pt, err := k.aead.DecryptWithContext(ctx, ct, ad)
	if err != nil {
		return k.unusable("decrypt", endpoint, err)
	}
	if !bytes.Equal(pt, probe) {
		return fmt.Errorf("aws kms: the key-encryption key %s decrypted a test value to something else: is --aws-endpoint a real KMS?", k.arn)
	}
	return nil
}

// unusable explains why the key cannot be used, with the most likely fix first.
func (k *kek) unusable(op, endpoint string, err error) error {
	where := "AWS KMS"
	if endpoint != "" {
		where = "the KMS at " + endpoint
	}
	var (
		notFound *types.NotFoundException
		disabled *types.DisabledException
		state    *types.KMSInvalidStateException
		netErr   net.Error
		opErr    *net.OpError
		api      smithy.APIError
	)
	hint := ""
	switch {
	case errors.As(err, &notFound):
		hint = "no such key: check the key ARN in --kek-uri (REGISTRAR_KEK_URI), its account and region"
	case errors.As(err, &disabled), errors.As(err, &state):
		hint = "the key is disabled or pending deletion: enable it (or cancel its deletion) in KMS"
	case errors.As(err, &api) && (api.ErrorCode() == "AccessDeniedException" || api.ErrorCode() == "UnrecognizedClientException" ||
		api.ErrorCode() == "InvalidSignatureException" || api.ErrorCode() == "ExpiredTokenException"):
		hint = "the credentials may not use this key: they need kms:Encrypt and kms:Decrypt on it (the key policy and the IAM role)"
	case errors.As(err, &opErr), errors.As(err, &netErr), errors.Is(err, context.DeadlineExceeded):
		hint = "cannot reach " + where + ": check --aws-endpoint (REGISTRAR_AWS_ENDPOINT), the network and the VPC endpoint for KMS"
	default:
		hint = "check the key ARN, the region, --aws-endpoint and the credentials"
	}
	return fmt.Errorf("aws kms: the key-encryption key %s cannot be used (%s failed): %s: %w", k.arn, op, hint, err)
}
