package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"registrar/records"
)

// Caseloads and dependency flags: registrar's own data that authz.Resolve reads
// beside the OneRoster roster (docs/access-control.md).
//
// A counselor's caseload is a set of students; a counselor with one sees, of the
// students of their schools, only those (authz's caseload class). OneRoster has no
// place for it. A dependency flag records that a student is a dependent of a parent
// or guardian in the IRS sense (34 CFR 99.31(a)(8)), so that parent keeps access
// after the student becomes eligible. Both rows say who set them and when. A change
// of either is logged in the change log under authz.ChangeCaseload (sourcedId: the
// counselor) or authz.ChangeDependent (sourcedId: the student), in the same
// transaction: the scope cache watches those entries to drop stale scopes. Neither
// is a OneRoster entity: the change feed and the outbound stream leave them out.

// Change-log entity names; the same strings as authz.ChangeCaseload and
// authz.ChangeDependent (the store does not import authz; a test checks they agree).
const (
	changeCaseload  = "caseload"
	changeDependent = "dependent"
)

func migrationCaseloads(d dialect) []string {
	out := []string{
		`CREATE TABLE caseloads (counselor_id TEXT NOT NULL, student_id TEXT NOT NULL, set_by TEXT NOT NULL, set_at TEXT NOT NULL, PRIMARY KEY (counselor_id, student_id))`,
		`CREATE INDEX caseloads_student ON caseloads (student_id)`,
		`CREATE TABLE dependents (student_id TEXT NOT NULL, guardian_id TEXT NOT NULL, recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (student_id, guardian_id))`,
		`CREATE INDEX dependents_guardian ON dependents (guardian_id, student_id)`,
	}
	for i := range out {
		out[i] = d.ddl(out[i])
	}
	return out
}

// Caseload returns the students of a counselor's caseload, sorted (none: no caseload).
func (s *Store) Caseload(ctx context.Context, counselor string) ([]string, error) {
	return s.column(ctx, "caseload", "SELECT student_id FROM caseloads WHERE counselor_id = ? ORDER BY student_id", counselor)
}

// Dependents returns the students recorded as dependents of guardian, sorted.
func (s *Store) Dependents(ctx context.Context, guardian string) ([]string, error) {
	return s.column(ctx, "dependents", "SELECT student_id FROM dependents WHERE guardian_id = ? ORDER BY student_id", guardian)
}

func (s *Store) column(ctx context.Context, what, q string, args ...any) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, unavailable(what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, unavailable(what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(what, err)
	}
	return out, nil
}

// CaseloadEntry is one student of a caseload, with who put them there and when.
type CaseloadEntry struct {
	Student string `json:"student"`
	SetBy   string `json:"setBy"`
	SetAt   string `json:"setAt"`
}

// Dependency is a recorded dependency flag of one (student, guardian) pair.
type Dependency struct {
	Student    string `json:"student"`
	Guardian   string `json:"guardian"`
	RecordedBy string `json:"recordedBy"`
	RecordedAt string `json:"recordedAt"`
}

// CaseloadEntries reads a counselor's caseload, sorted by student.
func (s *Store) CaseloadEntries(ctx context.Context, counselor string) ([]CaseloadEntry, error) {
	return caseloadEntries(ctx, func(q string, args ...any) (*sql.Rows, error) { return s.r.QueryContext(ctx, s.d.rebind(q), args...) }, counselor)
}

// CaseloadEntries reads a counselor's caseload in the transaction, sorted by student.
func (t *Tx) CaseloadEntries(ctx context.Context, counselor string) ([]CaseloadEntry, error) {
	return caseloadEntries(ctx, func(q string, args ...any) (*sql.Rows, error) { return t.query(ctx, q, args...) }, counselor)
}

func caseloadEntries(_ context.Context, query func(string, ...any) (*sql.Rows, error), counselor string) ([]CaseloadEntry, error) {
	rows, err := query("SELECT student_id, set_by, set_at FROM caseloads WHERE counselor_id = ? ORDER BY student_id", counselor)
	if err != nil {
		return nil, unavailable("caseload", err)
	}
	defer rows.Close()
	out := []CaseloadEntry{}
	for rows.Next() {
		var e CaseloadEntry
		if err := rows.Scan(&e.Student, &e.SetBy, &e.SetAt); err != nil {
			return nil, unavailable("caseload", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("caseload", err)
	}
	return out, nil
}

// SetCaseload replaces a counselor's caseload with students (which the caller has
// checked are students); students kept from the old caseload keep who set them and
// when. It reports whether the counselor had a caseload before.
func (t *Tx) SetCaseload(ctx context.Context, counselor string, students []string, by string) (replaced bool, err error) {
	old, err := t.column(ctx, "caseload", "SELECT student_id FROM caseloads WHERE counselor_id = ?", counselor)
	if err != nil {
		return false, err
	}
	keep := map[string]bool{}
	for _, s := range students {
		keep[s] = true
	}
	had := map[string]bool{}
	for _, s := range old {
		had[s] = true
		if !keep[s] {
			if _, err := t.exec(ctx, "DELETE FROM caseloads WHERE counselor_id = ? AND student_id = ?", counselor, s); err != nil {
				return false, unavailable("caseload", err)
			}
		}
	}
	now := records.FormatDateTime(t.now)
	for _, s := range students {
		if had[s] {
			continue
		}
		had[s] = true // a student named twice is inserted once
		if _, err := t.exec(ctx, "INSERT INTO caseloads (counselor_id, student_id, set_by, set_at) VALUES (?, ?, ?, ?)", counselor, s, by, now); err != nil {
			return false, unavailable("caseload", err)
		}
	}
	return len(old) > 0, t.logChange(ctx, changeCaseload, counselor, "upsert")
}

// ClearCaseload removes a counselor's caseload (the counselor then sees their
// schools). It reports whether there was one.
func (t *Tx) ClearCaseload(ctx context.Context, counselor string) (bool, error) {
	res, err := t.exec(ctx, "DELETE FROM caseloads WHERE counselor_id = ?", counselor)
	if err != nil {
		return false, unavailable("caseload", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, t.logChange(ctx, changeCaseload, counselor, "delete")
}

// Dependencies reads the dependency flags recorded for a student, sorted by guardian.
func (s *Store) Dependencies(ctx context.Context, student string) ([]Dependency, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT guardian_id, recorded_by, recorded_at FROM dependents WHERE student_id = ? ORDER BY guardian_id"), student)
	if err != nil {
		return nil, unavailable("dependents", err)
	}
	defer rows.Close()
	out := []Dependency{}
	for rows.Next() {
		d := Dependency{Student: student}
		if err := rows.Scan(&d.Guardian, &d.RecordedBy, &d.RecordedAt); err != nil {
			return nil, unavailable("dependents", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("dependents", err)
	}
	return out, nil
}

// SetDependent records that student is a dependent of guardian. A flag already
// recorded is left as it was (who recorded it first, and when); created reports
// whether it is new. The returned Dependency is the stored row.
func (t *Tx) SetDependent(ctx context.Context, student, guardian, by string) (d Dependency, created bool, err error) {
	d = Dependency{Student: student, Guardian: guardian}
	err = t.queryRow(ctx, "SELECT recorded_by, recorded_at FROM dependents WHERE student_id = ? AND guardian_id = ?", student, guardian).Scan(&d.RecordedBy, &d.RecordedAt)
	if err == nil {
		return d, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return d, false, unavailable("dependents", err)
	}
	d.RecordedBy, d.RecordedAt = by, records.FormatDateTime(t.now)
	if _, err := t.exec(ctx, "INSERT INTO dependents (student_id, guardian_id, recorded_by, recorded_at) VALUES (?, ?, ?, ?)", student, guardian, d.RecordedBy, d.RecordedAt); err != nil {
		return d, false, unavailable("dependents", err)
	}
	return d, true, t.logChange(ctx, changeDependent, student, "upsert")
}

// ClearDependent removes the dependency flag of (student, guardian); it reports
// whether there was one.
func (t *Tx) ClearDependent(ctx context.Context, student, guardian string) (bool, error) {
	res, err := t.exec(ctx, "DELETE FROM dependents WHERE student_id = ? AND guardian_id = ?", student, guardian)
	if err != nil {
		return false, unavailable("dependents", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, t.logChange(ctx, changeDependent, student, "delete")
}

// purgeCaseloads removes a purged student from every caseload and their dependency
// flags, logging each change; it returns how many rows it removed of each.
func (t *Tx) purgeCaseloads(ctx context.Context, student string) (caseloads, dependents int, err error) {
	counselors, err := t.column(ctx, "caseload", "SELECT counselor_id FROM caseloads WHERE student_id = ? ORDER BY counselor_id", student)
	if err != nil {
		return 0, 0, err
	}
	if _, err := t.exec(ctx, "DELETE FROM caseloads WHERE student_id = ?", student); err != nil {
		return 0, 0, unavailable("caseload", err)
	}
	for _, c := range counselors {
		if err := t.logChange(ctx, changeCaseload, c, "upsert"); err != nil {
			return 0, 0, err
		}
	}
	res, err := t.exec(ctx, "DELETE FROM dependents WHERE student_id = ?", student)
	if err != nil {
		return 0, 0, unavailable("dependents", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		if err := t.logChange(ctx, changeDependent, student, "delete"); err != nil {
			return 0, 0, err
		}
	}
	return len(counselors), int(n), nil
}

func (t *Tx) logChange(ctx context.Context, entity, id, op string) error {
	if _, err := t.exec(ctx, "INSERT INTO changes (entity, sourced_id, op, time) VALUES (?, ?, ?, ?)", entity, id, op, records.FormatDateTime(t.now)); err != nil {
		return unavailable("log change", err)
	}
	return nil
}
