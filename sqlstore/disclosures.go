package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Disclosure is one entry of a student's record of disclosures (34 CFR 99.32): who
// received which of the student's records, when, and under what right. Entries are
// derived from the audit event of the read that disclosed the records (an event
// marked Disclosed), written behind the trail (auditindex.go), and point at that
// event (Chain, Seq), so verify can check each entry against the hash-chained event.
type Disclosure struct {
	ID           int64
	Student      string
	Time         time.Time
	Chain        string
	Seq          int64
	PartyKind    string // "client": registrar records disclosures to systems
	PartyID      string
	PartyName    string
	LegalBasis   string // the 99.31(a) basis the party was registered under
	Purpose      string
	ContractRef  string   // the agreement binding a vendor (99.31(a)(1)(i)(B)); filled from the client's registration when empty
	ResourceType string   // what kind of record was disclosed (user, result, ...)
	Fields       []string // the fields disclosed
	Required     bool     // 99.32 requires this entry (false: kept as good practice, e.g. school officials)
	RequestID    string
}

const disclosureCols = "student_id, time, chain, seq, party_kind, party_id, party_name, legal_basis, purpose, contract_ref, resource_type, fields, required, request_id"

const selectClientParty = "SELECT name, contract_ref FROM clients WHERE client_id = ?"

// Disclosures returns a student's record of disclosures, newest first: at most limit
// entries with ids below before (0: from the newest). Authorization is the caller's.
func (s *Store) Disclosures(ctx context.Context, student string, limit int, before int64) ([]Disclosure, error) {
	if limit <= 0 {
		limit = 100
	}
	if err := s.FlushAuditIndex(ctx); err != nil {
		return nil, err
	}
	q := "SELECT d.id, " + disclosureSelect + " WHERE d.student_id = ?"
	args := []any{student}
	if before > 0 {
		q += " AND d.id < ?"
		args = append(args, before)
	}
	q += " ORDER BY d.id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, unavailable("disclosures", err)
	}
	defer rows.Close()
	var out []Disclosure
	for rows.Next() {
		d, err := scanDisclosure(rows, true)
		if err != nil {
			return nil, unavailable("disclosures", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("disclosures", err)
	}
	return out, nil
}

func scanDisclosure(sc interface{ Scan(...any) error }, withID bool) (Disclosure, error) {
	var d Disclosure
	var at, fields string
	var required int
	dst := []any{&d.Student, &at, &d.Chain, &d.Seq, &d.PartyKind, &d.PartyID, &d.PartyName, &d.LegalBasis, &d.Purpose, &d.ContractRef, &d.ResourceType, &fields, &required, &d.RequestID}
	if withID {
		dst = append([]any{&d.ID}, dst...)
	}
	if err := sc.Scan(dst...); err != nil {
		return d, err
	}
	d.Time, _ = time.Parse(time.RFC3339Nano, at) // written by FormatDateTime
	if fields == "" {
		return d, nil // an entry whose event row is missing: verify names it
	}
	if err := json.Unmarshal([]byte(fields), &d.Fields); err != nil {
		return d, fmt.Errorf("disclosure %d: fields: %w", d.ID, err)
	}
	d.Required = required != 0
	return d, nil
}

// StudentExists reports whether a user with a student role exists (any status): the
// record of disclosures of a student who was never here is "not found".
func (s *Store) StudentExists(ctx context.Context, id string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT 1 FROM user_roles WHERE user_id = ? AND role = 'student' LIMIT 1"), id).Scan(&one)
	switch {
	case err == sql.ErrNoRows:
		return false, nil
	case err != nil:
		return false, unavailable("student exists", err)
	}
	return true, nil
}

// migration2 adds the record of disclosures, the indexes verify and GET /v1/audit
// read by, and, on PostgreSQL, the append-only triggers (SQLite got its own in
// migration 1).
func migration2(d dialect) []string {
	out := []string{
		`CREATE TABLE disclosures (
  id {{serial}},
  student_id TEXT NOT NULL,
  time TEXT NOT NULL,
  chain TEXT NOT NULL,
  seq {{bigint}} NOT NULL,
  party_kind TEXT NOT NULL,
  party_id TEXT NOT NULL,
  party_name TEXT NOT NULL,
  legal_basis TEXT NOT NULL,
  purpose TEXT NOT NULL,
  contract_ref TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  fields TEXT NOT NULL,
  required INTEGER NOT NULL,
  request_id TEXT NOT NULL
)`,
		`CREATE INDEX disclosures_student ON disclosures (student_id, id)`,
		`CREATE INDEX disclosures_event ON disclosures (chain, seq)`,
		`CREATE INDEX audit_students_event ON audit_students (chain, seq)`,
		`CREATE INDEX audit_events_principal ON audit_events (principal, time)`,
	}
	for i := range out {
		out[i] = d.ddl(out[i])
	}
	const refuse = "the audit trail is append-only"
	const keep = "the record of disclosures is kept as long as the student''s record (34 CFR 99.32(a)(2)): delete the student first"
	if d.name() == "sqlite" {
		return append(out,
			"CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures BEGIN SELECT RAISE(ABORT, '"+refuse+"'); END",
			"CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures WHEN EXISTS (SELECT 1 FROM users WHERE sourced_id = OLD.student_id) BEGIN SELECT RAISE(ABORT, '"+keep+"'); END")
	}
	out = append(out,
		`CREATE FUNCTION registrar_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '`+refuse+`'; END $$`,
		`CREATE FUNCTION registrar_disclosures_kept() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  IF EXISTS (SELECT 1 FROM users WHERE sourced_id = OLD.student_id) THEN RAISE EXCEPTION '`+keep+`'; END IF;
  RETURN OLD;
END $$`,
		`CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures FOR EACH ROW EXECUTE FUNCTION registrar_append_only()`,
		`CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures FOR EACH ROW EXECUTE FUNCTION registrar_disclosures_kept()`,
		`CREATE TRIGGER disclosures_no_truncate BEFORE TRUNCATE ON disclosures FOR EACH STATEMENT EXECUTE FUNCTION registrar_append_only()`,
	)
	for _, t := range []string{"audit_events", "audit_students", "audit_checkpoints"} {
		out = append(out,
			fmt.Sprintf("CREATE TRIGGER %s_append_only BEFORE UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION registrar_append_only()", t, t),
			fmt.Sprintf("CREATE TRIGGER %s_no_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION registrar_append_only()", t, t))
	}
	return out
}
