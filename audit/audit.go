// Package audit defines registrar's audit events and the hash chain that makes the
// trail tamper-evident.
//
// Each instance appends to its own chain (no global lock between instances): event n
// of a chain carries hash_n = SHA-256(hash_{n-1} || canonical(event_n)), where the
// canonical encoding covers every field including the chain id and sequence number.
// Editing, deleting, inserting or reordering events breaks the chain at the first
// place touched; truncating the tail is caught by signed checkpoints kept outside the
// database. The store writes events in the same transaction as the change they
// describe (see sqlstore's committer); this package holds no I/O of its own.
//
// Events never carry sensitive values: ids, field names, actions and outcomes only.
// audit imports nothing from registrar but internal/jsonenc, a leaf package.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"registrar/internal/jsonenc"
)

// Principal kinds.
const (
	KindClient   = "client"   // an API client (system) by OAuth2 client credentials
	KindUser     = "user"     // a person by an OIDC or local token
	KindOperator = "operator" // someone at the command line with access to the data dir
	KindSystem   = "system"   // registrar itself (worker, rotation)
)

// Outcomes.
const (
	OK       = "ok"
	Denied   = "denied"
	NotFound = "not_found"
	Invalid  = "invalid"
	Failed   = "error"
)

// Event is one audited operation.
type Event struct {
	Chain         string    `json:"chain"`
	Seq           int64     `json:"seq"`
	Time          time.Time `json:"time"`
	PrincipalKind string    `json:"principalKind"`
	PrincipalID   string    `json:"principalId"`
	ClientID      string    `json:"clientId,omitempty"`
	OnBehalfOf    string    `json:"onBehalfOf,omitempty"`
	Action        string    `json:"action"`
	Route         string    `json:"route,omitempty"`
	ResourceType  string    `json:"resourceType,omitempty"`
	ResourceID    string    `json:"resourceId,omitempty"`
	Students      []string  `json:"students,omitempty"`
	Fields        []string  `json:"fields,omitempty"`
	Count         int       `json:"count,omitempty"`
	LegalBasis    string    `json:"legalBasis,omitempty"`
	Purpose       string    `json:"purpose,omitempty"`
	// Disclosed marks a read that disclosed its students' records to a party outside
	// the school (34 CFR 99.32): each student gets a record-of-disclosure entry derived
	// from this event (party, basis, purpose, resource, Fields), and verify checks the
	// entries against it. DisclosureRequired says whether 99.32 requires the entry
	// (false: kept as good practice, e.g. for school officials).
	Disclosed          bool   `json:"disclosed,omitempty"`
	DisclosureRequired bool   `json:"disclosureRequired,omitempty"`
	Outcome            string `json:"outcome"`
	Status             int    `json:"status,omitempty"`
	RequestID          string `json:"requestId,omitempty"`
	Source             string `json:"source,omitempty"`
	Detail             string `json:"detail,omitempty"`
}

// Canonical returns the event's canonical encoding: JSON with fields in the fixed
// order of the struct, time in UTC with nanoseconds, no insignificant white space.
// It is byte for byte what encoding/json writes for the struct with
// SetEscapeHTML(false) (audit_test.go checks it, by fuzzing among other things): the
// trail's events were hashed as encoding/json wrote them before this encoder existed.
func (e *Event) Canonical() []byte {
	return append(e.appendOpen(make([]byte, 0, e.sizeHint())), '}')
}

// appendOpen appends the canonical encoding without its closing brace.
func (e *Event) appendOpen(b []byte) []byte {
	b = append(b, `{"chain":`...)
	b = jsonenc.AppendString(b, e.Chain)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	return e.appendTail(append(b, ','))
}

// CanonicalTail is the event's canonical encoding without its chain and sequence
// number, which come first: Splice(chain, seq, tail) equals the canonical encoding of
// the event with that chain and number. Callers encode the tail where they run in
// parallel and leave only the splice to the one goroutine that numbers the chain.
func (e *Event) CanonicalTail() []byte {
	return append(e.appendTail(make([]byte, 0, e.sizeHint())), '}')
}

// sizeHint is about the length of the canonical encoding, so that it is built in one
// allocation.
func (e *Event) sizeHint() int {
	n := 320 + len(e.Chain) + len(e.PrincipalID) + len(e.ClientID) + len(e.OnBehalfOf) + len(e.Route) + len(e.ResourceID) +
		len(e.Purpose) + len(e.RequestID) + len(e.Source) + len(e.Detail)
	for _, l := range [][]string{e.Students, e.Fields} {
		for _, s := range l {
			n += len(s) + 3
		}
	}
	return n
}

// appendTail appends the canonical encoding from "time" to the last field, without
// the closing brace (Entry and LogView add theirs).
func (e *Event) appendTail(b []byte) []byte {
	t := e.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		// encoding/json refuses such a time too; events are stamped by the store.
		panic("audit: event does not encode: year outside of range [0,9999]")
	}
	b = append(b, `"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "principalKind", e.PrincipalKind, false)
	b = appendField(b, "principalId", e.PrincipalID, false)
	b = appendField(b, "clientId", e.ClientID, true)
	b = appendField(b, "onBehalfOf", e.OnBehalfOf, true)
	b = appendField(b, "action", e.Action, false)
	b = appendField(b, "route", e.Route, true)
	b = appendField(b, "resourceType", e.ResourceType, true)
	b = appendField(b, "resourceId", e.ResourceID, true)
	if len(e.Students) > 0 {
		b = append(b, `,"students":`...)
		b = jsonenc.AppendStrings(b, e.Students)
	}
	if len(e.Fields) > 0 {
		b = append(b, `,"fields":`...)
		b = jsonenc.AppendStrings(b, e.Fields)
	}
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(e.Count), 10)
	}
	b = appendField(b, "legalBasis", e.LegalBasis, true)
	b = appendField(b, "purpose", e.Purpose, true)
	if e.Disclosed {
		b = append(b, `,"disclosed":true`...)
	}
	if e.DisclosureRequired {
		b = append(b, `,"disclosureRequired":true`...)
	}
	b = appendField(b, "outcome", e.Outcome, false)
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	b = appendField(b, "requestId", e.RequestID, true)
	b = appendField(b, "source", e.Source, true)
	return appendField(b, "detail", e.Detail, true)
}

// appendField appends `,"key":"v"`, or nothing when v is empty and omitEmpty.
func appendField(b []byte, key, v string, omitEmpty bool) []byte {
	if v == "" && omitEmpty {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return jsonenc.AppendString(b, v)
}

// ChainPrefix is the start of the canonical encoding of every event of chain, up to
// its sequence number: encoded once per chain, not once per event.
func ChainPrefix(chain string) []byte {
	b := append([]byte(`{"chain":`), jsonenc.AppendString(nil, chain)...)
	return append(b, `,"seq":`...)
}

// Splice returns the canonical encoding of the event numbered seq, of the chain
// whose ChainPrefix is prefix, whose CanonicalTail is tail.
func Splice(prefix []byte, seq int64, tail []byte) []byte {
	out := make([]byte, 0, len(prefix)+len(tail)+21)
	out = append(out, prefix...)
	out = strconv.AppendInt(out, seq, 10)
	out = append(out, ',')
	return append(out, tail...)
}

// Genesis is the "previous hash" of the first event of every chain.
var Genesis = make([]byte, sha256.Size)

// Link returns the hash of an event whose canonical encoding is canonical and whose
// predecessor's hash is prev.
func Link(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(nil)
}

// Record is an event as stored: its canonical body and chain hashes.
type Record struct {
	Chain string
	Seq   int64
	Body  []byte // canonical encoding
	Prev  []byte
	Hash  []byte
}

// Break says where a chain stops verifying.
type Break struct {
	Chain  string
	Seq    int64 // the first stored sequence number at which the chain is wrong
	Reason string
}

func (b *Break) Error() string {
	return fmt.Sprintf("audit chain %s broken at event %d: %s", b.Chain, b.Seq, b.Reason)
}

// Verifier checks one chain's records in order. Feed every record of the chain, in
// stored sequence order, to Next; the first error is a *Break naming the place.
// Checkpoints given to Expect (their signatures checked by the caller) must agree
// with the chain, and Finish reports those the chain no longer reaches (truncation).
type Verifier struct {
	chain   string
	nextSeq int64
	prev    []byte
	Count   int64
	expect  map[int64]Checkpoint
	last    Event
}

// NewVerifier starts verifying chain from its first event.
func NewVerifier(chain string) *Verifier {
	return &Verifier{chain: chain, nextSeq: 1, prev: Genesis}
}

// NewVerifierAt starts verifying chain just after event seq, whose hash is hash: how a
// range is verified from a signed checkpoint instead of from the genesis.
func NewVerifierAt(chain string, seq int64, hash []byte) *Verifier {
	return &Verifier{chain: chain, nextSeq: seq + 1, prev: hash}
}

// Expect adds checkpoints of this chain that the chain must agree with. Their
// signatures must already have been checked (see Checkpoint.Check).
func (v *Verifier) Expect(cps ...Checkpoint) {
	if v.expect == nil {
		v.expect = make(map[int64]Checkpoint, len(cps))
	}
	for _, c := range cps {
		if c.Chain == v.chain && c.Seq >= v.nextSeq {
			v.expect[c.Seq] = c
		}
	}
}

// Decoded is what can be checked of a record on its own, before its place in the
// chain is known: its body parsed and re-encoded, and its hash over the stored
// previous hash. Decoding is the costly part of verification and can run in parallel
// ahead of the walk along the chain (NextDecoded).
type Decoded struct {
	Event     Event
	bad       string // why the body is not an event ("" when it is)
	canonical bool
	hash      []byte // Link(r.Prev, r.Body)
}

// Decode checks a record on its own.
func Decode(r Record) *Decoded {
	d := &Decoded{hash: Link(r.Prev, r.Body)}
	if err := json.Unmarshal(r.Body, &d.Event); err != nil {
		d.bad = err.Error()
		return d
	}
	d.canonical = bytes.Equal(d.Event.Canonical(), r.Body)
	return d
}

// Next checks one record.
func (v *Verifier) Next(r Record) error { return v.NextDecoded(r, Decode(r)) }

// NextDecoded checks one record that Decode has already checked on its own.
func (v *Verifier) NextDecoded(r Record, d *Decoded) error {
	fail := func(format string, args ...any) error {
		return &Break{Chain: v.chain, Seq: r.Seq, Reason: fmt.Sprintf(format, args...)}
	}
	if r.Seq != v.nextSeq {
		if r.Seq > v.nextSeq {
			return &Break{Chain: v.chain, Seq: v.nextSeq, Reason: fmt.Sprintf("event %d is missing (next stored is %d): deleted", v.nextSeq, r.Seq)}
		}
		return fail("sequence number %d repeats or goes backwards (expected %d)", r.Seq, v.nextSeq)
	}
	if !bytes.Equal(r.Prev, v.prev) {
		return fail("previous-hash field does not match the hash of event %d (an event was inserted, deleted or moved here)", r.Seq-1)
	}
	if d.bad != "" {
		return fail("body is not a valid event: %s", d.bad)
	}
	e := &d.Event
	if e.Chain != r.Chain || e.Seq != r.Seq {
		return fail("body names chain %s event %d, stored as chain %s event %d (moved or inserted)", e.Chain, e.Seq, r.Chain, r.Seq)
	}
	if !d.canonical {
		return fail("body is not in canonical form (edited)")
	}
	// r.Prev equals v.prev here, so d.hash is the hash the chain wants.
	if !bytes.Equal(d.hash, r.Hash) {
		return fail("hash does not match the body (edited): have %s, want %s", short(r.Hash), short(d.hash))
	}
	if c, ok := v.expect[r.Seq]; ok && !bytes.Equal(c.Hash, r.Hash) {
		return fail("the chain up to here does not match the checkpoint signed at %s (hash %s, stored %s): events up to %d were rewritten after it was signed",
			c.Time.UTC().Format(time.RFC3339), short(c.Hash), short(r.Hash), r.Seq)
	}
	v.prev = r.Hash
	v.nextSeq++
	v.Count++
	v.last = d.Event
	return nil
}

// Event returns the event of the record Next last accepted.
func (v *Verifier) Event() *Event { return &v.last }

// Finish reports the first expected checkpoint at or below upTo (0: any) that the
// chain did not reach: events were deleted from the tail.
func (v *Verifier) Finish(upTo int64) error {
	var missing *Checkpoint
	for _, c := range v.expect {
		if c.Seq < v.nextSeq || upTo > 0 && c.Seq > upTo {
			continue
		}
		if missing == nil || c.Seq > missing.Seq {
			c := c
			missing = &c
		}
	}
	if missing == nil {
		return nil
	}
	return &Break{Chain: v.chain, Seq: v.nextSeq, Reason: fmt.Sprintf("events %d to %d are missing: a checkpoint signed at %s covers event %d (the tail was truncated)",
		v.nextSeq, missing.Seq, missing.Time.UTC().Format(time.RFC3339), missing.Seq)}
}

// Head returns the last verified sequence number and hash.
func (v *Verifier) Head() (int64, []byte) { return v.nextSeq - 1, v.prev }

func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		s = s[:16]
	}
	return s
}
