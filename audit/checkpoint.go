package audit

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Signer signs checkpoints (the vault's service signature key).
type Signer interface {
	Sign(data []byte) ([]byte, error)
}

// SignatureChecker checks signatures made by a Signer.
type SignatureChecker interface {
	Verify(sig, data []byte) error
}

// TimeFormat is how audit times are written outside the canonical event body: UTC,
// fixed width, milliseconds, so that text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Checkpoint is a signed statement that, at Time, event Seq of Chain had hash Hash.
// A checkpoint kept outside the database (the log stream, an exported file) lets
// verify detect that the tail of a chain was cut off, even by someone who can write
// every table.
type Checkpoint struct {
	Chain     string
	Seq       int64
	Hash      []byte
	Time      time.Time
	Signature []byte
}

// Payload is what the signature covers: chain, sequence number, hash and time, in a
// fixed encoding under a domain-separation prefix.
func (c *Checkpoint) Payload() []byte {
	b, err := json.Marshal(struct {
		Chain string `json:"chain"`
		Seq   int64  `json:"seq"`
		Hash  string `json:"hash"`
		Time  string `json:"time"`
	}{c.Chain, c.Seq, hex.EncodeToString(c.Hash), c.Time.UTC().Format(TimeFormat)})
	if err != nil {
		panic("audit: checkpoint does not encode: " + err.Error()) // plain types: cannot happen
	}
	return append([]byte("registrar/audit-checkpoint/v1\n"), b...)
}

// Sign fills in the signature.
func (c *Checkpoint) Sign(s Signer) error {
	c.Time = c.Time.UTC().Truncate(time.Millisecond)
	sig, err := s.Sign(c.Payload())
	if err != nil {
		return fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	c.Signature = sig
	return nil
}

// Check verifies the signature; a *Break names the checkpoint otherwise.
func (c *Checkpoint) Check(v SignatureChecker) error {
	if err := v.Verify(c.Signature, c.Payload()); err != nil {
		return &Break{Chain: c.Chain, Seq: c.Seq, Reason: fmt.Sprintf("the checkpoint at event %d (time %s) has no valid signature: it was edited, replaced or forged",
			c.Seq, c.Time.UTC().Format(time.RFC3339))}
	}
	return nil
}

type checkpointJSON struct {
	Chain     string `json:"chain"`
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	Time      string `json:"time"`
	Signature string `json:"signature"`
}

// MarshalJSON writes the checkpoint with a hex hash and a base64 signature.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	return json.Marshal(checkpointJSON{c.Chain, c.Seq, hex.EncodeToString(c.Hash), c.Time.UTC().Format(TimeFormat), base64.StdEncoding.EncodeToString(c.Signature)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Checkpoint) UnmarshalJSON(b []byte) error {
	var j checkpointJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Chain == "" || j.Seq <= 0 {
		return errors.New("audit: a checkpoint needs a chain and a positive seq")
	}
	h, err := hex.DecodeString(j.Hash)
	if err != nil {
		return fmt.Errorf("audit: checkpoint hash: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(j.Signature)
	if err != nil {
		return fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("audit: checkpoint time: %w", err)
	}
	*c = Checkpoint{Chain: j.Chain, Seq: j.Seq, Hash: h, Time: t, Signature: sig}
	return nil
}

// ReadCheckpoints reads checkpoints from JSON lines: either checkpoints as written by
// `registrar audit checkpoints`, or registrar's JSON log lines, where each checkpoint
// is logged as {"msg":"audit checkpoint","checkpoint":{...}}. Other lines (the rest of
// a log stream) are skipped; a line that claims to be a checkpoint and does not parse
// is an error.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []Checkpoint
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		var probe struct {
			Msg        string          `json:"msg"`
			Checkpoint json.RawMessage `json:"checkpoint"`
			Chain      string          `json:"chain"`
			Signature  string          `json:"signature"`
		}
		if json.Unmarshal(b, &probe) != nil {
			continue // not JSON: some other line of a log stream
		}
		raw := b
		switch {
		case probe.Msg == LogCheckpoint && probe.Checkpoint != nil:
			raw = probe.Checkpoint
		case probe.Msg == "" && probe.Chain != "" && probe.Signature != "":
		default:
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(raw, &c); err != nil {
			return out, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("line %d: %w", line+1, err)
	}
	return out, nil
}

// Messages of the log lines that carry the audit trail into the log stream.
const (
	LogEvent      = "audit event"
	LogCheckpoint = "audit checkpoint"
)

// Entry is a stored event as exported (JSON lines for a SIEM, GET /v1/audit): the
// event's fields and its chain hashes in hex.
type Entry struct {
	Event
	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash"`
}

// MarshalJSON is encoding/json's encoding of the struct (time in UTC) without its
// reflection: exports and the log stream write one per event.
func (e Entry) MarshalJSON() ([]byte, error) {
	return append(e.appendOpen(make([]byte, 0, 384)), '}'), nil
}

// appendOpen appends the entry's encoding without its closing brace.
func (e *Entry) appendOpen(b []byte) []byte {
	b = e.Event.appendOpen(b)
	b = appendField(b, "prev", e.Prev, true)
	return appendField(b, "hash", e.Hash, false)
}

// NewEntry builds an Entry from a stored record's parts.
func NewEntry(e Event, prev, hash []byte) Entry {
	return Entry{Event: e, Prev: hex.EncodeToString(prev), Hash: hex.EncodeToString(hash)}
}

// MaxLoggedStudents bounds the student ids copied into one log line; the export and
// the database hold them all.
const MaxLoggedStudents = 100

// LogView is the form of an event in the log stream: everything but the tail of a long
// student list (log lines have size limits), plus the hash that ties it to the trail.
type LogView struct {
	Entry
	StudentsOmitted int `json:"studentsOmitted,omitempty"`
}

// LogValue is the view as the log handler's own attributes, in the struct's order
// and with its omissions, time in UTC: slog writes strings and numbers itself, where
// a JSON value would go through encoding/json, whose check of a marshaller's output
// cost more than the rest of the line.
func (v LogView) LogValue() slog.Value {
	e := &v.Event
	a := make([]slog.Attr, 0, 26)
	str := func(key, s string, omitEmpty bool) {
		if s != "" || !omitEmpty {
			a = append(a, slog.String(key, s))
		}
	}
	a = append(a, slog.String("chain", e.Chain), slog.Int64("seq", e.Seq), slog.String("time", e.Time.UTC().Format(time.RFC3339Nano)))
	str("principalKind", e.PrincipalKind, false)
	str("principalId", e.PrincipalID, false)
	str("clientId", e.ClientID, true)
	str("onBehalfOf", e.OnBehalfOf, true)
	str("action", e.Action, false)
	str("route", e.Route, true)
	str("resourceType", e.ResourceType, true)
	str("resourceId", e.ResourceID, true)
	if len(e.Students) > 0 {
		a = append(a, slog.Any("students", e.Students))
	}
	if len(e.Fields) > 0 {
		a = append(a, slog.Any("fields", e.Fields))
	}
	if e.Count != 0 {
		a = append(a, slog.Int("count", e.Count))
	}
	str("legalBasis", e.LegalBasis, true)
	str("purpose", e.Purpose, true)
	if e.Disclosed {
		a = append(a, slog.Bool("disclosed", true))
	}
	if e.DisclosureRequired {
		a = append(a, slog.Bool("disclosureRequired", true))
	}
	str("outcome", e.Outcome, false)
	if e.Status != 0 {
		a = append(a, slog.Int("status", e.Status))
	}
	str("requestId", e.RequestID, true)
	str("source", e.Source, true)
	str("detail", e.Detail, true)
	str("prev", v.Prev, true)
	str("hash", v.Hash, false)
	if v.StudentsOmitted != 0 {
		a = append(a, slog.Int("studentsOmitted", v.StudentsOmitted))
	}
	return slog.GroupValue(a...)
}

// NewLogView builds the log form of an event.
func NewLogView(e Event, hash []byte) LogView {
	v := LogView{Entry: Entry{Event: e, Hash: hex.EncodeToString(hash)}}
	if n := len(e.Students); n > MaxLoggedStudents {
		v.Students = e.Students[:MaxLoggedStudents:MaxLoggedStudents]
		v.StudentsOmitted = n - MaxLoggedStudents
	}
	return v
}
