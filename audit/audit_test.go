package audit_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"registrar/audit"
)

// edKey is a hand-written signer over the standard library's Ed25519.
type edKey struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(t *testing.T) edKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return edKey{pub, priv}
}

func (k edKey) Sign(b []byte) ([]byte, error) { return ed25519.Sign(k.priv, b), nil }
func (k edKey) Verify(sig, b []byte) error {
	if !ed25519.Verify(k.pub, b, sig) {
		return errors.New("bad signature")
	}
	return nil
}

// chain builds n linked records of chain "c".
func chain(n int) ([]audit.Record, []audit.Event) {
	prev := audit.Genesis
	var recs []audit.Record
	var evs []audit.Event
	for i := 1; i <= n; i++ {
		e := audit.Event{Chain: "c", Seq: int64(i), Time: time.Date(2026, 9, 15, 12, 0, i, 5, time.UTC), PrincipalKind: "user", PrincipalID: "u",
			Action: "read", Outcome: audit.OK, Students: []string{fmt.Sprint("s", i)}}
		body := e.Canonical()
		h := audit.Link(prev, body)
		recs = append(recs, audit.Record{Chain: "c", Seq: int64(i), Body: body, Prev: prev, Hash: h})
		evs = append(evs, e)
		prev = h
	}
	return recs, evs
}

func TestCheckpointsSignRoundTripAndRefuseEdits(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	recs, _ := chain(3)
	cp := audit.Checkpoint{Chain: "c", Seq: 3, Hash: recs[2].Hash, Time: time.Date(2026, 9, 15, 12, 0, 0, 123456789, time.UTC)}
	if err := cp.Sign(k); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	var back audit.Checkpoint
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Check(k); err != nil {
		t.Fatalf("a checkpoint read back from JSON: %v", err)
	}
	for name, edit := range map[string]func(c *audit.Checkpoint){
		"seq":   func(c *audit.Checkpoint) { c.Seq = 2 },
		"hash":  func(c *audit.Checkpoint) { c.Hash = recs[1].Hash },
		"chain": func(c *audit.Checkpoint) { c.Chain = "d" },
		"time":  func(c *audit.Checkpoint) { c.Time = c.Time.Add(time.Second) },
	} {
		c := back
		edit(&c)
		var b *audit.Break
		if err := c.Check(k); !errors.As(err, &b) {
			t.Errorf("a checkpoint with an edited %s: got %v, want a break", name, err)
		}
	}
}

func TestReadCheckpointsFromALogStream(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	recs, _ := chain(2)
	cp := audit.Checkpoint{Chain: "c", Seq: 2, Hash: recs[1].Hash, Time: time.Now()}
	if err := cp.Sign(k); err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(map[string]any{"time": "x", "level": "INFO", "msg": audit.LogCheckpoint, "checkpoint": cp})
	plain, _ := json.Marshal(cp)
	stream := strings.Join([]string{
		`{"time":"x","level":"INFO","msg":"request","status":200}`,
		"not json at all",
		string(line),
		string(plain),
		`{"msg":"audit event","event":{"chain":"c"}}`,
	}, "\n")
	cps, err := audit.ReadCheckpoints(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || cps[0].Seq != 2 || cps[1].Check(k) != nil {
		t.Fatalf("got %d checkpoints, want the logged one and the plain one", len(cps))
	}
	if _, err := audit.ReadCheckpoints(strings.NewReader(`{"msg":"audit checkpoint","checkpoint":{"chain":"c","seq":1,"hash":"zz"}}`)); err == nil {
		t.Fatal("a malformed checkpoint line was accepted")
	}
}

func TestVerifierExpectsCheckpointsAndFindsATruncatedTail(t *testing.T) {
	t.Parallel()
	recs, _ := chain(10)
	cp := audit.Checkpoint{Chain: "c", Seq: 8, Hash: recs[7].Hash, Time: time.Now()}
	t.Run("a chain that reaches its checkpoint verifies", func(t *testing.T) {
		v := audit.NewVerifier("c")
		v.Expect(cp)
		for _, r := range recs {
			if err := v.Next(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.Finish(0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a chain cut before its checkpoint names the first missing event", func(t *testing.T) {
		v := audit.NewVerifier("c")
		v.Expect(cp)
		for _, r := range recs[:5] {
			if err := v.Next(r); err != nil {
				t.Fatal(err)
			}
		}
		var b *audit.Break
		if err := v.Finish(0); !errors.As(err, &b) || b.Seq != 6 {
			t.Fatalf("got %v, want a break at 6", err)
		}
	})
	t.Run("a verifier anchored at a checkpoint starts after it", func(t *testing.T) {
		v := audit.NewVerifierAt("c", 8, recs[7].Hash)
		for _, r := range recs[8:] {
			if err := v.Next(r); err != nil {
				t.Fatal(err)
			}
		}
		if seq, _ := v.Head(); seq != 10 || v.Count != 2 {
			t.Fatalf("got head %d after %d events, want 10 after 2", seq, v.Count)
		}
	})
	t.Run("a checkpoint the chain disagrees with names its event", func(t *testing.T) {
		v := audit.NewVerifier("c")
		bad := cp
		bad.Hash = recs[6].Hash
		v.Expect(bad)
		var err error
		for _, r := range recs {
			if err = v.Next(r); err != nil {
				break
			}
		}
		var b *audit.Break
		if !errors.As(err, &b) || b.Seq != 8 {
			t.Fatalf("got %v, want a break at 8", err)
		}
	})
}

func TestLogViewCutsLongStudentLists(t *testing.T) {
	t.Parallel()
	e := audit.Event{Chain: "c", Seq: 1}
	for i := 0; i < audit.MaxLoggedStudents+5; i++ {
		e.Students = append(e.Students, fmt.Sprint("s", i))
	}
	v := audit.NewLogView(e, make([]byte, 32))
	if len(v.Students) != audit.MaxLoggedStudents || v.StudentsOmitted != 5 || len(e.Students) != audit.MaxLoggedStudents+5 || len(v.Hash) != 64 {
		t.Fatalf("got %d students, %d omitted, hash %q", len(v.Students), v.StudentsOmitted, v.Hash)
	}
}

// TestSpliceEqualsCanonical: a tail encoded apart and spliced with the chain and
// number gives the canonical encoding byte for byte, whatever the event holds.
func TestSpliceEqualsCanonical(t *testing.T) {
	events := []audit.Event{
		{},
		{Time: time.Date(2026, 9, 15, 8, 0, 0, 123456789, time.FixedZone("x", 3600)), PrincipalKind: audit.KindClient, PrincipalID: "vendor<&>", Action: "read",
			Students: []string{"a", "b\u2028"}, Fields: []string{"givenName"}, Count: 3, Disclosed: true, DisclosureRequired: true, Outcome: audit.OK, Status: 200, Detail: "quote \" and \\ and é"},
		{Action: "x", Outcome: audit.Failed, Detail: "\x00\x1f"},
	}
	for i, e := range events {
		for _, chain := range []string{"a", "inst-1f3\"<>", "é"} {
			for _, seq := range []int64{1, 42, 1 << 40} {
				want := e
				want.Chain, want.Seq = chain, seq
				if got := audit.Splice(audit.ChainPrefix(chain), seq, e.CanonicalTail()); string(got) != string(want.Canonical()) {
					t.Fatalf("event %d in %q at %d:\n got %s\nwant %s", i, chain, seq, got, want.Canonical())
				}
			}
		}
	}
}

// referenceCanonical is the definition Canonical must meet: encoding/json's encoding
// of the event with its time in UTC and SetEscapeHTML(false), the newline trimmed
// (what Canonical ran before it had an encoder of its own).
func referenceCanonical(t testing.TB, e audit.Event) string {
	e.Time = e.Time.UTC()
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&e); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// TestCanonicalIsEncodingJSON: every field, empty and set, odd strings and times.
func TestCanonicalIsEncodingJSON(t *testing.T) {
	odd := "q\" b\\ <&> \b\f\n\r\t \x00\x1f\x7f é 名 🙂 \u2028\u2029 \xff\xe2\x82"
	full := audit.Event{Chain: odd, Seq: 1 << 50, Time: time.Date(2026, 2, 3, 4, 5, 6, 7, time.FixedZone("x", -5*3600)), PrincipalKind: odd,
		PrincipalID: odd, ClientID: odd, OnBehalfOf: odd, Action: odd, Route: odd, ResourceType: odd, ResourceID: odd,
		Students: []string{odd, "", "s"}, Fields: []string{"a", odd}, Count: -3, LegalBasis: odd, Purpose: odd, Disclosed: true,
		DisclosureRequired: true, Outcome: odd, Status: 599, RequestID: odd, Source: odd, Detail: odd}
	events := []audit.Event{{}, full, everyField(t),
		{Seq: -1, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Students: []string{}, Fields: []string{}, Count: 1},
		{Time: time.Date(2026, 1, 1, 0, 0, 0, 120000000, time.Local), Students: []string{""}, Disclosed: true, Outcome: audit.OK}}
	for i, e := range events {
		if got, want := string(e.Canonical()), referenceCanonical(t, e); got != want {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func FuzzCanonicalIsEncodingJSON(f *testing.F) {
	f.Add("inst", int64(7), int64(1764400000123456789), "client", "id", "read", "s1", "givenName", 2, true, false, "ok", 200, "detail \u2028")
	f.Add("", int64(0), int64(0), "", "", "", "", "", 0, false, true, "", 0, "\xff")
	f.Fuzz(func(t *testing.T, chain string, seq, nanos int64, kind, id, action, student, field string, count int, disclosed, required bool, outcome string, status int, detail string) {
		tm := time.Unix(0, nanos)
		if y := tm.UTC().Year(); y < 0 || y > 9999 {
			return // encoding/json refuses these times too
		}
		e := audit.Event{Chain: chain, Seq: seq, Time: tm, PrincipalKind: kind, PrincipalID: id, ClientID: id, OnBehalfOf: detail,
			Action: action, Route: detail, ResourceType: field, ResourceID: student, Count: count, LegalBasis: detail, Purpose: kind,
			Disclosed: disclosed, DisclosureRequired: required, Outcome: outcome, Status: status, RequestID: id, Source: chain, Detail: detail}
		if student != "" {
			e.Students = []string{student, id}
		}
		if field != "" {
			e.Fields = []string{field}
		}
		if got, want := string(e.Canonical()), referenceCanonical(t, e); got != want {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
		if got, want := string(audit.Splice(audit.ChainPrefix(chain), seq, e.CanonicalTail())), referenceCanonical(t, e); got != want {
			t.Errorf("spliced:\n got %s\nwant %s", got, want)
		}
	})
}

// plainEntry and plainLogView are Entry and LogView without their MarshalJSON: what
// encoding/json makes of the structs is what the methods must write.
type plainEntry struct {
	audit.Event
	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash"`
}

type plainLogView struct {
	plainEntry
	StudentsOmitted int `json:"studentsOmitted,omitempty"`
}

// TestEntryAndLogViewAreEncodingJSON: exports keep the form encoding/json gave them,
// and the log stream's lines the same values, time in UTC.
func TestEntryAndLogViewAreEncodingJSON(t *testing.T) {
	many := make([]string, audit.MaxLoggedStudents+7)
	for i := range many {
		many[i] = fmt.Sprintf("s-%d", i)
	}
	for i, e := range []audit.Event{{}, everyField(t), {Chain: "c\"<", Seq: 9, Time: time.Date(2026, 5, 6, 7, 8, 9, 10, time.FixedZone("y", 7200)), PrincipalID: "p",
		Students: many, Fields: []string{"f"}, Disclosed: true, Outcome: audit.OK, Status: 200, Detail: "\u2028\xff"}} {
		for _, prev := range []string{"", "00ff"} {
			entry := audit.Entry{Event: e, Prev: prev, Hash: "abcd"}
			utc := e
			utc.Time = utc.Time.UTC()
			got, err := json.Marshal(entry)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(plainEntry{utc, prev, "abcd"})
			if string(got) != string(want) {
				t.Errorf("entry %d/%q:\n got %s\nwant %s", i, prev, got, want)
			}
		}
		v := audit.NewLogView(e, []byte{0xab, 0xcd})
		var line strings.Builder
		slog.New(slog.NewJSONHandler(&line, nil)).Info(audit.LogEvent, "event", v)
		var logged struct{ Event map[string]any }
		if err := json.Unmarshal([]byte(line.String()), &logged); err != nil {
			t.Fatal(err)
		}
		utc := v.Event
		utc.Time = utc.Time.UTC()
		plain, _ := json.Marshal(plainLogView{plainEntry{utc, "", "abcd"}, v.StudentsOmitted})
		var wantMap map[string]any
		if err := json.Unmarshal(plain, &wantMap); err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(logged.Event), fmt.Sprint(wantMap); got != want {
			t.Errorf("log view %d:\n got %s\nwant %s\nline %s", i, got, want, line.String())
		}
	}
}

// everyField is an event with every field set, by reflection: a field added to Event
// and forgotten by one of its encoders (Canonical, Entry, LogView) fails the tests
// that use it.
func everyField(t testing.TB) audit.Event {
	var e audit.Event
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch name := v.Type().Field(i).Name; f.Kind() {
		case reflect.String:
			f.SetString("v-" + name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(7 + i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{name + "-1", name + "-2"}))
		case reflect.Struct:
			f.Set(reflect.ValueOf(time.Date(2026, 11, 29, 14, 30, 0, 5, time.UTC)))
		default:
			t.Fatalf("everyField: set field %s (%s)", name, f.Kind())
		}
	}
	return e
}
