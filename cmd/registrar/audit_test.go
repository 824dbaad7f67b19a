package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"registrar/audit"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
)

// auditBuffer is a buffer that the command and the store's logger may write at once,
// as they do to the process's stdout and stderr.
type auditBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *auditBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *auditBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs registrar in-process and returns its exit code, stdout and stderr.
func auditRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb auditBuffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

// openData opens a data dir as the CLI does.
func auditOpenData(t *testing.T, dir string) *app {
	t.Helper()
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fs, vals := newFlags(e, "test", "")
	cfg, err := parse(e, fs, vals, []string{"--data", dir, "--log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(context.Background(), e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const auditCLIEvents = 30

// auditedDataDir is a data dir with the test district and 30 audit events, a signed
// checkpoint after every tenth, and a record of disclosures on every seventh.
func auditedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	a := auditOpenData(t, dir)
	defer a.close()
	ctx := context.Background()
	if err := testdistrict.Load(ctx, a.store); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= auditCLIEvents; i++ {
		ev := operatorEvent("test.read")
		ev.Students = []string{testdistrict.Minor}
		var fn func(context.Context, *sqlstore.Tx) error
		if i%7 == 0 {
			ev.PrincipalKind, ev.PrincipalID, ev.LegalBasis, ev.Disclosed, ev.DisclosureRequired = audit.KindClient, "study", "studies", true, true
		}
		if err := a.store.Write(ctx, fn, ev); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := a.store.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// copyDataDir copies a data dir (database, keys, instance id).
func auditCopyDataDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// tamper runs statements on a data dir's database with the append-only triggers
// dropped, as someone with full access to the database could.
func auditTamper(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	db, err := sqlstore.OpenSQLite(filepath.Join(dir, "registrar.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.Query(triggersOfBothFiles)
	if err != nil {
		t.Fatal(err)
	}
	var drop []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		drop = append(drop, "DROP TRIGGER "+n)
	}
	rows.Close()
	for _, s := range append(drop, stmts...) {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// triggersOfBothFiles names the append-only triggers of the database and of its
// audit index file (attached as ix).
const triggersOfBothFiles = "SELECT 'main.' || name FROM main.sqlite_master WHERE type = 'trigger' UNION ALL SELECT 'ix.' || name FROM ix.sqlite_master WHERE type = 'trigger'"

func TestAuditVerifyNamesEachKindOfTampering(t *testing.T) {
	t.Parallel()
	base := auditedDataDir(t)
	code, cps, errOut := auditRun(t, "audit", "checkpoints", "--data", base)
	if code != 0 || strings.Count(cps, "\n") != auditCLIEvents/10 {
		t.Fatalf("audit checkpoints: exit %d, %q, %s", code, cps, errOut)
	}
	exported := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if err := os.WriteFile(exported, []byte(cps), 0o600); err != nil {
		t.Fatal(err)
	}
	edit := `UPDATE audit_events SET body = replace(body, '"action":"test.read"', '"action":"test.reaD"') WHERE seq = %d`
	cases := []struct {
		name  string
		stmts []string
		args  []string
		want  string // "" for an intact trail
	}{
		{name: "an unmodified trail passes"},
		{name: "an edited field is named", stmts: []string{fmt.Sprintf(edit, 6)}, want: "event 6: hash does not match the body (edited)"},
		{name: "a deleted event is named", stmts: []string{"DELETE FROM audit_events WHERE seq = 13", "DELETE FROM ix.audit_students WHERE seq = 13"}, want: "event 13: event 13 is missing"},
		{name: "an inserted event is named",
			stmts: []string{"UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 17", "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000",
				"INSERT INTO audit_events (chain, seq, time, action, principal, body, prev, hash) SELECT chain, 17, time, action, principal, replace(body, '\"seq\":16', '\"seq\":17'), hash, hash FROM audit_events WHERE seq = 16"},
			want: "event 17: hash does not match"},
		{name: "two swapped events are named", stmts: []string{"UPDATE audit_events SET seq = 1021 WHERE seq = 21", "UPDATE audit_events SET seq = 21 WHERE seq = 22", "UPDATE audit_events SET seq = 22 WHERE seq = 1021"},
			want: "event 21: previous-hash field does not match"},
		{name: "a truncated tail is named", stmts: []string{"DELETE FROM audit_events WHERE seq > 25", "DELETE FROM ix.audit_students WHERE seq > 25", "DELETE FROM ix.disclosures WHERE seq > 25"},
			want: "event 26: events 26 to 30 are missing"},
		{name: "a truncated tail and checkpoint table pass without the exported checkpoints",
			stmts: []string{"DELETE FROM audit_events WHERE seq > 25", "DELETE FROM ix.audit_students WHERE seq > 25", "DELETE FROM ix.disclosures WHERE seq > 25", "DELETE FROM audit_checkpoints WHERE seq > 20"}},
		{name: "a truncated tail and checkpoint table are named with the exported checkpoints",
			stmts: []string{"DELETE FROM audit_events WHERE seq > 25", "DELETE FROM ix.audit_students WHERE seq > 25", "DELETE FROM ix.disclosures WHERE seq > 25", "DELETE FROM audit_checkpoints WHERE seq > 20"},
			args:  []string{"--checkpoints", exported}, want: "event 26: events 26 to 30 are missing"},
		{name: "a replaced checkpoint is named", stmts: []string{"UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_events WHERE seq = 9) WHERE seq = 10"},
			want: "event 10: the checkpoint at event 10"},
		{name: "an edited record of disclosures is named", stmts: []string{"UPDATE ix.disclosures SET legal_basis = 'school-official' WHERE seq = 14"},
			want: "event 14: a record-of-disclosure entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := auditCopyDataDir(t, base)
			auditTamper(t, dir, c.stmts...)
			code, out, errOut := auditRun(t, append([]string{"audit", "verify", "--data", dir}, c.args...)...)
			if c.want == "" {
				if code != 0 || !strings.Contains(out, "audit trail intact") {
					t.Fatalf("got exit %d, %s%s; want 0 and intact", code, out, errOut)
				}
				return
			}
			if code != 1 || !strings.Contains(errOut, "NOT intact") || !strings.Contains(errOut, c.want) {
				t.Fatalf("got exit %d, stderr %q; want 1 naming %q", code, errOut, c.want)
			}
		})
	}
}

func TestAuditExportWritesJSONLinesAndIsAudited(t *testing.T) {
	t.Parallel()
	dir := auditedDataDir(t)
	out := filepath.Join(t.TempDir(), "trail.jsonl")
	if code, _, errOut := auditRun(t, "audit", "export", "--data", dir, "--out", out); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []audit.Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v", len(lines)+1, err)
		}
		lines = append(lines, e)
	}
	// The 30 events, and the export's own event, written before it ran.
	if len(lines) != auditCLIEvents+1 || lines[auditCLIEvents].Action != "audit.export" || len(lines[0].Hash) != 64 {
		t.Fatalf("got %d lines, the last %q; want %d ending with the export's own event", len(lines), lines[len(lines)-1].Action, auditCLIEvents+1)
	}
	for i, e := range lines {
		if e.Seq != int64(i+1) {
			t.Fatalf("line %d is event %d", i+1, e.Seq)
		}
	}
	// Incremental: after event 28 of the chain.
	code, stdout, _ := auditRun(t, "audit", "export", "--data", dir, "--chain", lines[0].Chain, "--after", "28")
	if code != 0 || strings.Count(stdout, "\n") != auditCLIEvents+2-28 {
		t.Fatalf("incremental export: exit %d, %d lines", code, strings.Count(stdout, "\n"))
	}
	if code, _, errOut := auditRun(t, "audit", "verify", "--data", dir, "--chain", lines[0].Chain, "--from", "15", "--to", "25"); code != 0 {
		t.Fatalf("range verify: exit %d: %s", code, errOut)
	}
}
