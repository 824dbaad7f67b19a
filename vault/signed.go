package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Signed is a document signed with the service signature key (Ed25519, Tink): a
// deletion certificate, for example. The body stays readable JSON; the signature
// covers its type and its compact form, so any change to a value, a name or the
// order of fields breaks it, while re-indenting does not.
type Signed struct {
	Type      string          `json:"type"`
	Body      json.RawMessage `json:"body"`
	Signature SignatureInfo   `json:"signature"`
}

// SignatureInfo says how a Signed document was signed.
type SignatureInfo struct {
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"keyId"`
	Value     string `json:"value"` // base64
}

// ErrBadSignature is returned for a signed document that was altered, or signed by
// another installation's key.
var ErrBadSignature = errors.New("vault: the signature does not verify: the document was altered or was not signed by this installation")

func signedInput(typ string, compactBody []byte) []byte {
	return append([]byte("registrar/signed/v1\x00"+typ+"\x00"), compactBody...)
}

// SignJSON encodes body, signs it as a document of type typ and returns the signed
// document, indented for people to read.
func (v *Vault) SignJSON(typ string, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("vault: encode signed body: %w", err)
	}
	sig, err := v.Sign(signedInput(typ, b))
	if err != nil {
		return nil, err
	}
	doc := Signed{Type: typ, Body: b, Signature: SignatureInfo{Algorithm: "Ed25519 (Tink)", KeyID: strconv.FormatUint(uint64(v.sigKeyID), 10),
		Value: base64.StdEncoding.EncodeToString(sig)}}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("vault: encode signed document: %w", err)
	}
	return append(out, '\n'), nil
}

// VerifyJSON checks a document made by SignJSON and returns its type and body.
func (v *Vault) VerifyJSON(doc []byte) (string, json.RawMessage, error) {
	var s Signed
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return "", nil, fmt.Errorf("vault: not a signed document: %w", err)
	}
	if s.Type == "" || len(s.Body) == 0 || s.Signature.Value == "" {
		return "", nil, errors.New("vault: not a signed document: type, body or signature missing")
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature.Value)
	if err != nil {
		return "", nil, ErrBadSignature
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, s.Body); err != nil {
		return "", nil, fmt.Errorf("vault: signed body: %w", err)
	}
	if err := v.verifier.Verify(sig, signedInput(s.Type, compact.Bytes())); err != nil {
		return "", nil, ErrBadSignature
	}
	return s.Type, compact.Bytes(), nil
}
