package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"registrar/audit"
	"registrar/internal/testdistrict"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

func queryPage(limit, offset int) query.Page { return query.Page{Limit: limit, Offset: offset} }

// fakeFiles stands in for the document folder.
type fakeFiles struct {
	mu      sync.Mutex
	count   map[string]int
	deleted []string
}

func (f *fakeFiles) Count(subject string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[subject], nil
}

func (f *fakeFiles) DeleteSubject(subject string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.count[subject]
	delete(f.count, subject)
	f.deleted = append(f.deleted, subject)
	return n, nil
}

var operator = audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "registrar-office"}

// sensitive lists every sensitive field present in obj.
func sensitive(e *records.Entity, obj records.Object) []string {
	var out []string
	for i := range e.Fields {
		if f := &e.Fields[i]; f.Sensitive {
			if _, ok := obj[f.Name]; ok {
				out = append(out, f.Name)
			}
		}
	}
	return out
}

// TestPurge destroys a student and checks the live database, a backup copied before
// the purge with its rows put back (but not the key), and the certificate.
func TestPurge(t *testing.T) {
	t.Parallel()
	k := newKeyed(t, 0)
	ctx := context.Background()
	minor := testdistrict.Minor
	if err := k.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.DocumentKey(ctx, minor)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	exec(t, rawDB(t, k.dbPath()), "VACUUM INTO ?", backup)

	files := &fakeFiles{count: map[string]int{minor: 2}}
	ev := operator
	ev.RequestID = "req-1"
	res, err := k.store.Purge(ctx, sqlstore.PurgeRequest{Student: minor, Reason: "district request 2026-17", Event: ev, Signer: k.vault, Documents: files})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the student's rows and keys are gone", func(t *testing.T) {
		for _, c := range []struct {
			e  *records.Entity
			id string
		}{{records.User, minor}, {records.Demographics, minor}, {records.Result, testdistrict.ResultMinA}, {records.Enrollment, "enr-minor-math"}, {records.Enrollment, "enr-minor-sci"}} {
			if _, err := k.store.Get(ctx, sqlstore.Query{Entity: c.e}, c.id); err == nil {
				t.Errorf("%s %s still readable", c.e.Name, c.id)
			}
		}
		db := rawDB(t, k.dbPath())
		for _, q := range []string{
			"SELECT COUNT(*) FROM subject_keys WHERE subject_id = ?",
			"SELECT COUNT(*) FROM user_roles WHERE user_id = ?",
			"SELECT COUNT(*) FROM user_agents WHERE owner_id = ? OR ref_id = ?",
			"SELECT COUNT(*) FROM enrollments WHERE user_id = ?",
			"SELECT COUNT(*) FROM results WHERE student_id = ?",
		} {
			var n int
			args := []any{minor}
			if strings.Count(q, "?") == 2 {
				args = append(args, minor)
			}
			if err := db.QueryRow(q, args...).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d rows (%v), want 0", q, n, err)
			}
		}
		if !slices.Equal(files.deleted, []string{minor}) {
			t.Errorf("document files deleted for %v, want [%s]", files.deleted, minor)
		}
	})
	t.Run("the guardian no longer lists the student", func(t *testing.T) {
		g, err := k.store.Get(ctx, sqlstore.Query{Entity: records.User}, testdistrict.Guardian)
		if err != nil {
			t.Fatal(err)
		}
		if agents, _ := g["agents"].([]string); slices.Contains(agents, minor) {
			t.Fatalf("guardian's agents %v still list %s", agents, minor)
		}
	})
	t.Run("the change log records each deletion", func(t *testing.T) {
		var n int
		if err := rawDB(t, k.dbPath()).QueryRow("SELECT COUNT(*) FROM changes WHERE op = 'delete' AND sourced_id IN (?, ?, ?, ?)",
			minor, testdistrict.ResultMinA, "enr-minor-math", "enr-minor-sci").Scan(&n); err != nil || n != 5 {
			t.Fatalf("got %d delete entries (%v), want 5 (user, demographics, result, two enrollments)", n, err)
		}
	})
	t.Run("the purge is in the audit trail", func(t *testing.T) {
		var body string
		if err := rawDB(t, k.dbPath()).QueryRow("SELECT body FROM audit_events WHERE action = 'students.purge'").Scan(&body); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, res.Body.ID) || !strings.Contains(body, "registrar-office") || strings.Contains(body, testdistrict.Canary) {
			t.Fatalf("audit event %s: want the certificate id and the operator, and no sensitive value", body)
		}
	})

	t.Run("the certificate verifies and says what was deleted", func(t *testing.T) {
		typ, body, err := k.vault.VerifyJSON(res.Certificate)
		if err != nil || typ != sqlstore.CertificateType {
			t.Fatalf("verify: %q %v", typ, err)
		}
		var c sqlstore.DeletionCertificate
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"user": 1, "demographics": 1, "enrollment": 2, "result": 1, "user_roles": 1, "user_agents": 1, "documents": 2}
		if fmt.Sprint(c.Deleted) != fmt.Sprint(want) {
			t.Errorf("deleted %v, want %v", c.Deleted, want)
		}
		if c.Student != minor || c.DeletedBy.ID != "registrar-office" || c.DeletedBy.RequestID != "req-1" || c.Reason == "" || len(c.KeysDestroyed) != 2 || len(c.WrappedUnder) != 1 {
			t.Errorf("certificate %+v", c)
		}
		for _, f := range []string{"user.email", "demographics.birthDate", "result.score", "result.comment"} {
			if !slices.Contains(c.UnreadableEverywhere, f) {
				t.Errorf("unreadableEverywhere lacks %s", f)
			}
		}
		if !slices.Contains(c.NotEncrypted, "user.givenName") {
			t.Errorf("notEncrypted lacks user.givenName: the certificate must not claim plaintext fields are unreadable")
		}
		if strings.Contains(string(res.Certificate), testdistrict.Canary) {
			t.Error("the certificate carries a sensitive value")
		}
		var stored string
		if err := rawDB(t, k.dbPath()).QueryRow("SELECT document FROM deletion_certificates WHERE id = ?", c.ID).Scan(&stored); err != nil || stored != string(res.Certificate) {
			t.Errorf("stored certificate: %v", err)
		}
	})
	t.Run("a modified certificate does not verify", func(t *testing.T) {
		bad := strings.Replace(string(res.Certificate), `"user": 1`, `"user": 0`, 1)
		if bad == string(res.Certificate) {
			t.Fatal("edit not applied")
		}
		if _, _, err := k.vault.VerifyJSON([]byte(bad)); !errors.Is(err, vault.ErrBadSignature) {
			t.Fatalf("got %v, want ErrBadSignature", err)
		}
	})

	t.Run("rows restored from a backup without the key do not open", func(t *testing.T) {
		db := rawDB(t, k.dbPath())
		exec(t, db, "ATTACH DATABASE ? AS bk", backup)
		for _, q := range []string{
			"INSERT INTO users SELECT * FROM bk.users WHERE sourced_id = ?",
			"INSERT INTO user_roles SELECT * FROM bk.user_roles WHERE user_id = ?",
			"INSERT INTO demographics SELECT * FROM bk.demographics WHERE sourced_id = ?",
			"INSERT INTO enrollments SELECT * FROM bk.enrollments WHERE user_id = ?",
			"INSERT INTO results SELECT * FROM bk.results WHERE student_id = ?",
		} {
			exec(t, db, q, minor)
		}
		exec(t, db, "DETACH DATABASE bk")
		for _, st := range []struct {
			name  string
			store *sqlstore.Store
			v     *vault.Vault
		}{{"the server that purged", k.store, k.vault}, {"a fresh server", nil, nil}} {
			s, v := st.store, st.v
			if s == nil {
				v = openVault(t, k.keysDir(), 0)
				s = openStore(t, k.dbPath(), "fresh", v)
			}
			for _, c := range []struct {
				e  *records.Entity
				id string
			}{{records.User, minor}, {records.Demographics, minor}, {records.Result, testdistrict.ResultMinA}} {
				obj, err := s.Get(ctx, sqlstore.Query{Entity: c.e}, c.id)
				if err != nil {
					t.Fatalf("%s: %s %s: %v (want the row, without its sealed fields)", st.name, c.e.Name, c.id, err)
				}
				if got := sensitive(c.e, obj); len(got) > 0 {
					t.Errorf("%s: %s %s: sensitive fields %v readable after purge", st.name, c.e.Name, c.id, got)
				}
				b, _ := json.Marshal(obj)
				if strings.Contains(string(b), testdistrict.Canary) {
					t.Errorf("%s: %s %s: %s", st.name, c.e.Name, c.id, b)
				}
			}
			var sealed []byte
			if err := rawDB(t, k.dbPath()).QueryRow("SELECT sealed FROM users WHERE sourced_id = ?", minor).Scan(&sealed); err != nil {
				t.Fatal(err)
			}
			if _, err := v.OpenFor(minor, nil, sealed, vault.Binding("users", "sealed", minor)); !errors.Is(err, vault.ErrDecrypt) {
				t.Errorf("%s: the restored sealed value: got %v, want ErrDecrypt", st.name, err)
			}
		}
	})
}

func TestPurgeRefusals(t *testing.T) { // not parallel: it adds a purge guard
	k := newKeyed(t, 0)
	ctx := context.Background()
	req := func(id string) sqlstore.PurgeRequest {
		return sqlstore.PurgeRequest{Student: id, Event: operator, Signer: k.vault}
	}
	t.Run("a student under a hold is not purged", func(t *testing.T) {
		exec(t, rawDB(t, k.dbPath()), "CREATE TABLE test_holds (student_id TEXT)")
		exec(t, rawDB(t, k.dbPath()), "INSERT INTO test_holds VALUES (?)", testdistrict.Eligible)
		sqlstore.AddPurgeGuard(t, "a legal hold", "SELECT 1 FROM test_holds WHERE student_id = ?")
		_, err := k.store.Purge(ctx, req(testdistrict.Eligible))
		var re *records.Error
		if !errors.As(err, &re) || re.Code != records.Conflict || !strings.Contains(re.Message, "legal hold") {
			t.Fatalf("got %v, want a conflict naming the legal hold", err)
		}
		if _, err := k.store.Get(ctx, sqlstore.Query{Entity: records.User}, testdistrict.Eligible); err != nil {
			t.Fatalf("the refused purge deleted something: %v", err)
		}
	})
	// The reason is signed into the certificate: checked here, for the API and the CLI.
	for name, reason := range map[string]string{"a NUL byte": "req\x00", "bytes that are not UTF-8": "req\xff", "more than 200 characters": strings.Repeat("r", 201)} {
		t.Run("a reason with "+name+" is refused", func(t *testing.T) {
			r := req(testdistrict.Student3)
			r.Reason = reason
			_, err := k.store.Purge(ctx, r)
			var re *records.Error
			if !errors.As(err, &re) || re.Code != records.Invalid || re.Field != "reason" {
				t.Fatalf("got %v, want the reason refused", err)
			}
			if _, err := k.store.Get(ctx, sqlstore.Query{Entity: records.User}, testdistrict.Student3); err != nil {
				t.Fatalf("the student is gone after a refused purge: %v", err)
			}
		})
	}
	for name, id := range map[string]string{"someone who is not a student": testdistrict.TeacherA, "an unknown id": "nobody"} {
		t.Run(name+" is not found", func(t *testing.T) {
			_, err := k.store.Purge(ctx, req(id))
			var re *records.Error
			if !errors.As(err, &re) || re.Code != records.NotFound {
				t.Fatalf("got %v, want not found", err)
			}
		})
	}
	t.Run("a second purge finds nothing", func(t *testing.T) {
		if _, err := k.store.Purge(ctx, req(testdistrict.Student3)); err != nil {
			t.Fatal(err)
		}
		_, err := k.store.Purge(ctx, req(testdistrict.Student3))
		var re *records.Error
		if !errors.As(err, &re) || re.Code != records.NotFound {
			t.Fatalf("got %v, want not found", err)
		}
	})
}
