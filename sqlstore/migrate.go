package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"registrar/records"
)

// A migration is a list of statements for each dialect. Migrations are append-only:
// once released, a migration never changes; a change of records' entities needs a new
// migration that alters the tables.
type migration func(d dialect) []string

var migrations = []migration{
	migration1,
	migration2,           // audit: record of disclosures, verify indexes, PostgreSQL append-only triggers (audit.go, disclosures.go)
	migrationKeys,        // KEK versions, document keys, key rotations, deletion certificates (sqlstore/keys.go)
	migrationStream,      // stream: leases, checkpoints, inbox, dead letters, embedded stream, delete scopes (stream.go)
	migrationAuditIndex,  // audit: the watermark of the student index and record of disclosures, written behind the trail (auditindex.go)
	migrationCaseloads,   // counselors' caseloads and dependency flags (caseloads.go)
	migrationIndexSchema, // audit: the student index and record of disclosures move to the schema ix, written by the indexer (auditindex.go)
}

// beforeMigration runs Go code before a migration's statements, outside their
// transaction: on SQLite, 7 copies the index tables into their own file first.
var beforeMigration = map[int]func(s *Store, ctx context.Context) error{
	7: func(s *Store, ctx context.Context) error {
		if s.d.name() != "sqlite" {
			return nil
		}
		return s.moveIndexToItsFile(ctx)
	},
}

// migrate applies the migrations the database lacks, each in its own transaction.
// A database newer than this binary is refused rather than served.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"); err != nil {
		return fmt.Errorf("sqlstore: migrations table: %w", err)
	}
	var have int
	if err := s.w.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&have); err != nil {
		return fmt.Errorf("sqlstore: read schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("sqlstore: the database has schema version %d but this binary knows only %d: run a newer registrar", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if before := beforeMigration[v]; before != nil {
			if err := before(s, ctx); err != nil {
				return fmt.Errorf("sqlstore: migration %d: %w", v, err)
			}
		}
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlstore: migration %d: %w", v, err)
		}
		for _, stmt := range migrations[v-1](s.d) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return fmt.Errorf("sqlstore: migration %d: %w\n%s", v, err, stmt)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"), v, records.FormatDateTime(s.now())); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlstore: migration %d: %w", v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlstore: migration %d: %w", v, err)
		}
		s.log.Info("applied migration", "version", v)
	}
	return nil
}

// columnType is the SQL type of a field's column.
func columnType(f *records.Field) string {
	switch {
	case f.Sensitive:
		return "" // sealed: no column of its own
	case f.Kind == records.KFloat:
		return "{{real}}"
	case f.Kind == records.KChildren:
		return ""
	}
	return "TEXT"
}

// entityDDL derives an entity's table, link tables and indexes from its description.
func entityDDL(e *records.Entity) []string {
	var cols []string
	var stmts []string
	for i := range e.Fields {
		f := &e.Fields[i]
		if f.Sensitive && f.BlindIndex {
			cols = append(cols, f.Column+"_bidx {{blob}}")
		}
		t := columnType(f)
		if t == "" {
			continue
		}
		c := f.Column + " " + t
		switch {
		case f.Name == "sourcedId":
			c += " PRIMARY KEY"
		case f.Required && !f.Sensitive && f.Kind != records.KRefs:
			c += " NOT NULL"
		}
		cols = append(cols, c)
		if f.Kind == records.KRef {
			stmts = append(stmts, fmt.Sprintf("CREATE INDEX %s_%s ON %s (%s)", e.Table, f.Column, e.Table, f.Column))
		}
		if f.Kind == records.KRefs {
			stmts = append(stmts,
				fmt.Sprintf("CREATE TABLE %s (owner_id TEXT NOT NULL, ord INTEGER NOT NULL, ref_id TEXT NOT NULL, PRIMARY KEY (owner_id, ord))", f.Link),
				fmt.Sprintf("CREATE INDEX %s_ref ON %s (ref_id, owner_id)", f.Link, f.Link))
		}
		if f.Sensitive && f.BlindIndex {
			stmts = append(stmts, fmt.Sprintf("CREATE INDEX %s_%s_bidx ON %s (%s_bidx)", e.Table, f.Column, e.Table, f.Column))
		}
	}
	if e.HasSensitive() {
		cols = append(cols, "sealed {{blob}}")
	}
	for _, f := range []string{"date_last_modified"} { // no index on status: too few values to help, and it misleads the planner
		stmts = append(stmts, fmt.Sprintf("CREATE INDEX %s_%s ON %s (%s)", e.Table, f, e.Table, f))
	}
	return append([]string{fmt.Sprintf("CREATE TABLE %s (\n  %s\n)", e.Table, strings.Join(cols, ",\n  "))}, stmts...)
}

func migration1(d dialect) []string {
	var out []string
	for _, e := range records.Entities {
		out = append(out, entityDDL(e)...)
	}
	out = append(out,
		// A user's roles, for queries by role and org (the JSON column serves reads).
		`CREATE TABLE user_roles (user_id TEXT NOT NULL, ord INTEGER NOT NULL, role_type TEXT NOT NULL, role TEXT NOT NULL, org_id TEXT NOT NULL, begin_date TEXT, end_date TEXT, PRIMARY KEY (user_id, ord))`,
		`CREATE INDEX user_roles_org ON user_roles (org_id, role, user_id)`,
		`CREATE INDEX user_roles_role ON user_roles (role, user_id)`,
		`CREATE INDEX enrollments_class_role ON enrollments (class_id, role, status, user_id)`,
		`CREATE INDEX enrollments_user_role ON enrollments (user_id, role, status, class_id)`,
		// Each person's data key, wrapped by the KEK. Deleting the row is crypto-shredding.
		`CREATE TABLE subject_keys (subject_id TEXT PRIMARY KEY, wrapped {{blob}} NOT NULL, created_at TEXT NOT NULL)`,
		// Registered API clients. The secret is kept only as a hash.
		`CREATE TABLE clients (
  client_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  secret_hash {{blob}} NOT NULL,
  scopes TEXT NOT NULL,
  orgs TEXT NOT NULL,
  legal_basis TEXT NOT NULL,
  contract_ref TEXT,
  purpose TEXT,
  created_at TEXT NOT NULL,
  revoked_at TEXT
)`,
		// The change log: the transactional outbox and the source of /v1/changes.
		`CREATE TABLE changes (
  id {{serial}},
  entity TEXT NOT NULL,
  sourced_id TEXT NOT NULL,
  op TEXT NOT NULL,
  time TEXT NOT NULL
)`,
		`CREATE INDEX changes_entity ON changes (entity, id)`,
		// The audit trail: one hash chain per writer instance.
		`CREATE TABLE audit_events (
  chain TEXT NOT NULL,
  seq {{bigint}} NOT NULL,
  time TEXT NOT NULL,
  action TEXT NOT NULL,
  principal TEXT NOT NULL,
  body TEXT NOT NULL,
  prev {{blob}} NOT NULL,
  hash {{blob}} NOT NULL,
  PRIMARY KEY (chain, seq)
)`,
		`CREATE INDEX audit_events_time ON audit_events (time)`,
		`CREATE TABLE audit_students (chain TEXT NOT NULL, seq {{bigint}} NOT NULL, student_id TEXT NOT NULL)`,
		`CREATE INDEX audit_students_student ON audit_students (student_id, chain, seq)`,
		`CREATE TABLE audit_checkpoints (chain TEXT NOT NULL, seq {{bigint}} NOT NULL, hash {{blob}} NOT NULL, time TEXT NOT NULL, signature {{blob}} NOT NULL, PRIMARY KEY (chain, seq))`,
		// Import jobs started through the API.
		`CREATE TABLE imports (id TEXT PRIMARY KEY, status TEXT NOT NULL, principal TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT, summary TEXT, errors TEXT)`,
	)
	for i := range out {
		out[i] = d.ddl(out[i])
	}
	if d.name() == "sqlite" {
		for _, t := range []string{"audit_events", "audit_students", "audit_checkpoints"} {
			out = append(out,
				fmt.Sprintf("CREATE TRIGGER %s_no_update BEFORE UPDATE ON %s BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END", t, t),
				fmt.Sprintf("CREATE TRIGGER %s_no_delete BEFORE DELETE ON %s BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END", t, t))
		}
	}
	return out
}
