// Package rawload is the raw baseline of the import benchmark: it puts the rows of a
// OneRoster CSV package into registrar's own tables as fast as the engine allows
// (SQLite: prepared INSERTs; PostgreSQL: COPY),
// with none of the import's work: no validation, no encryption (sensitive values go
// into the sealed column as plain text), no link-table bookkeeping, no change log, no
// audit, no comparison with stored rows. One prepared INSERT per CSV row, all in one
// transaction, on a connection with the store's settings (WAL, synchronous=FULL) and
// the import's page cache.
//
// Entity files go into their entity tables; roles.csv into user_roles;
// classResources, courseResources and userResources into their link tables; the other
// files that fill part of another object (learning objectives, score-scale links,
// userProfiles) into a plain table each. The rows are the same rows the import reads.
package rawload

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	_ "modernc.org/sqlite" // the store's driver

	"registrar/importer"
	"registrar/records"
	"registrar/sqlstore"
)

// Load inserts the rows of the package folder dir into the SQLite database at db,
// whose schema the store has created. It returns the number of rows inserted.
func Load(ctx context.Context, dir, db string) (int, error) {
	conn, err := sql.Open("sqlite", fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_pragma=synchronous(FULL)&_pragma=cache_size(-%d)&_txlock=immediate", db, sqlstore.ImportCacheKiB))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	now := records.FormatDateTime(time.Now())
	total := 0
	for _, m := range importer.Mapping() {
		path := filepath.Join(dir, m.File+".csv")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		n, err := loadFile(ctx, tx, m, path, now)
		if err != nil {
			return total, fmt.Errorf("%s: %w", m.File, err)
		}
		total += n
	}
	return total, tx.Commit()
}

// target is where the rows of one file go: the table, its columns, and for each
// column where its value comes from (a CSV column index, or a constant).
type target struct {
	table string
	cols  []string
	from  []func(rec []string, line int) any
}

func plan(m importer.FileMapping, hdr []string, now string) (*target, error) {
	pos := map[string]int{}
	for i, h := range hdr {
		pos[strings.TrimPrefix(h, "\uFEFF")] = i
	}
	col := func(name string) func([]string, int) any {
		i, ok := pos[name]
		if !ok {
			return func([]string, int) any { return nil }
		}
		return func(rec []string, _ int) any {
			if rec[i] == "" {
				return nil
			}
			return rec[i]
		}
	}
	line := func(_ []string, l int) any { return l }
	t := &target{}
	add := func(c string, f func([]string, int) any) { t.cols = append(t.cols, c); t.from = append(t.from, f) }
	if m.Owner == "" {
		e := m.Entity
		t.table = e.Table
		add("sourced_id", col("sourcedId"))
		add("status", func([]string, int) any { return "active" })
		add("date_last_modified", func([]string, int) any { return now })
		var sealed []int
		for csvCol, field := range m.Columns {
			f, ok := e.Field(field)
			if !ok || field == "sourcedId" || field == "status" || field == "dateLastModified" {
				continue
			}
			if f.Sensitive {
				if i, ok := pos[csvCol]; ok {
					sealed = append(sealed, i)
				}
				continue
			}
			if f.Kind == records.KFloat {
				add(f.Column, floatCol(col(csvCol)))
				continue
			}
			add(f.Column, col(csvCol))
		}
		for i := range e.Fields {
			f := &e.Fields[i]
			if f.Kind == records.KRoles || f.Kind == records.KRefs && !contains(t.cols, f.Column) {
				add(f.Column, func([]string, int) any { return "[]" }) // filled from other files by the import
			}
		}
		if e.HasSensitive() {
			add("sealed", func(rec []string, _ int) any {
				var b []byte
				for _, i := range sealed {
					b = append(append(b, rec[i]...), 0x1f)
				}
				return b
			})
		}
		return t, nil
	}
	switch {
	case m.File == "roles":
		t.table = "user_roles"
		add("user_id", col("userSourcedId"))
		add("ord", line)
		add("role_type", col("roleType"))
		add("role", col("role"))
		add("org_id", col("orgSourcedId"))
		add("begin_date", col("beginDate"))
		add("end_date", col("endDate"))
	case strings.HasSuffix(m.File, "Resources"):
		f, _ := m.Entity.Field(m.Field)
		t.table = f.Link
		add("owner_id", col(m.OwnerColumn))
		add("ord", line)
		add("ref_id", col("resourceSourcedId"))
	default:
		t.table = "raw_" + strings.ToLower(m.File) // unquoted in CREATE TABLE: PostgreSQL folds it
		add("sourced_id", col("sourcedId"))
		add("owner_id", col(m.OwnerColumn))
		add("payload", func(rec []string, _ int) any { return strings.Join(rec, ",") })
	}
	return t, nil
}

// floatCol parses a number column (COPY sends typed values).
func floatCol(f func([]string, int) any) func([]string, int) any {
	return func(rec []string, l int) any {
		v, _ := f(rec, l).(string)
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil
		}
		return x
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func loadFile(ctx context.Context, tx *sql.Tx, m importer.FileMapping, path, now string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.ReuseRecord = true
	hdr, err := cr.Read()
	if err != nil {
		return 0, err
	}
	t, err := plan(m, append([]string(nil), hdr...), now)
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(t.table, "raw_") {
		if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+t.table+" (sourced_id TEXT PRIMARY KEY, owner_id TEXT, payload TEXT)"); err != nil {
			return 0, err
		}
	}
	st, err := tx.PrepareContext(ctx, "INSERT INTO "+t.table+" ("+strings.Join(t.cols, ", ")+") VALUES ("+strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ")+")")
	if err != nil {
		return 0, err
	}
	defer st.Close()
	args := make([]any, len(t.cols))
	n := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		line, _ := cr.FieldPos(0)
		for i, from := range t.from {
			args[i] = from(rec, line)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return n, fmt.Errorf("line %d: %w", line, err)
		}
		n++
	}
}

// LoadPostgres is Load on PostgreSQL: the rows of each file go in with one COPY, all
// in one transaction, into the database at url whose schema the store has created.
func LoadPostgres(ctx context.Context, dir, url string) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	now := records.FormatDateTime(time.Now())
	total := 0
	for _, m := range importer.Mapping() {
		path := filepath.Join(dir, m.File+".csv")
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return total, err
		}
		cr := csv.NewReader(f)
		cr.ReuseRecord = true
		hdr, err := cr.Read()
		if err != nil {
			f.Close()
			return total, fmt.Errorf("%s: %w", m.File, err)
		}
		t, _ := plan(m, append([]string(nil), hdr...), now)
		if strings.HasPrefix(t.table, "raw_") {
			if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+t.table+" (sourced_id TEXT PRIMARY KEY, owner_id TEXT, payload TEXT)"); err != nil {
				f.Close()
				return total, err
			}
		}
		vals := make([]any, len(t.cols))
		var rerr error
		n, err := tx.CopyFrom(ctx, pgx.Identifier{t.table}, t.cols, pgx.CopyFromFunc(func() ([]any, error) {
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			if err != nil {
				rerr = err
				return nil, err
			}
			line, _ := cr.FieldPos(0)
			for i, from := range t.from {
				vals[i] = from(rec, line)
			}
			return vals, nil
		}))
		f.Close()
		if err != nil {
			return total, fmt.Errorf("%s: %w", m.File, errors.Join(err, rerr))
		}
		total += int(n)
	}
	return total, tx.Commit(ctx)
}
