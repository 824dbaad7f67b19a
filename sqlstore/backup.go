package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotSQLite answers Backup on PostgreSQL, whose backups are the database's own
// (Aurora's automated backups and snapshots: docs/deploy-aws.md).
var ErrNotSQLite = errors.New("sqlstore: the database is PostgreSQL; back it up with its own tools")

// BackupReport says what Backup wrote.
type BackupReport struct {
	Database, Index         string // the files written
	DatabaseSize, IndexSize int64  // their sizes in bytes
}

// Backup writes a consistent copy of the SQLite database and of its index file into
// dir, under the names a data dir uses, while the store keeps serving. Each file is
// one snapshot (VACUUM INTO: a read transaction, so writers go on and no request
// waits for the copy; the write-ahead log grows meanwhile, because it cannot be
// copied back past a snapshot still being read), the index's taken first: the copy's index is never ahead of its
// trail, and at its first start the copy indexes the events after it (pairIndexFile
// would otherwise set the index aside and rebuild it). The files are created 0600,
// synced, checked with PRAGMA quick_check, and then the folder is synced. The copies
// are what the data dir's files hold: ciphertext for every sensitive field, and
// wrapped keys that open only with the data dir's key-encryption key.
func (s *Store) Backup(ctx context.Context, dir string) (BackupReport, error) {
	var rep BackupReport
	if s.path == "" {
		return rep, ErrNotSQLite
	}
	rep.Database = filepath.Join(dir, filepath.Base(s.path))
	rep.Index = filepath.Join(dir, filepath.Base(IndexPath(s.path)))
	db, err := OpenSQLite(s.path, "_pragma=busy_timeout(10000)")
	if err != nil {
		return rep, fmt.Errorf("sqlstore: open %s for a backup: %w", s.path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, f := range []struct {
		schema, path string
		size         *int64
	}{{"ix", rep.Index, &rep.IndexSize}, {"main", rep.Database, &rep.DatabaseSize}} {
		// VACUUM INTO writes into a new or empty file: create it first, so that it is
		// 0600 like the data dir's own, and so that an existing file is never overwritten.
		out, err := os.OpenFile(f.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return rep, fmt.Errorf("sqlstore: backup: %w", err)
		}
		out.Close()
		if _, err := db.ExecContext(ctx, "VACUUM "+f.schema+" INTO ?", f.path); err != nil {
			return rep, fmt.Errorf("sqlstore: backup of %s: %w", f.schema, err)
		}
		if err := SyncPath(f.path); err != nil {
			return rep, fmt.Errorf("sqlstore: backup: %w", err)
		}
		if err := quickCheck(ctx, f.path); err != nil {
			return rep, fmt.Errorf("sqlstore: backup %s does not check: %w", f.path, err)
		}
		fi, err := os.Stat(f.path)
		if err != nil {
			return rep, fmt.Errorf("sqlstore: backup: %w", err)
		}
		*f.size = fi.Size()
	}
	if err := SyncPath(dir); err != nil {
		return rep, fmt.Errorf("sqlstore: backup: %w", err)
	}
	return rep, nil
}

// SyncPath fsyncs a file or a folder (a backup syncs every file it writes and the
// folders that name them).
func SyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// quickCheck runs PRAGMA quick_check on the SQLite file at path, read-only.
func quickCheck(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// CheckKeys opens the wrapped data and document keys of the database with open (the
// vault that will serve it), people in sourcedId order, up to limit keys (0: every
// one), and fails on the first that does not open, naming its subject; it returns how
// many it opened (KeyStatus counts them). A backup runs it against its own copy of the
// keys: a copy whose keys cannot open its data is no backup.
func (s *Store) CheckKeys(ctx context.Context, open func(subject string, wrapped []byte, document bool) error, limit int) (opened int, err error) {
	rows, err := s.r.QueryContext(ctx, "SELECT subject_id, wrapped, doc_wrapped FROM subject_keys ORDER BY subject_id")
	if err != nil {
		return 0, unavailable("key check", err)
	}
	defer rows.Close()
	for rows.Next() {
		var subject string
		var w, d []byte
		if err := rows.Scan(&subject, &w, &d); err != nil {
			return opened, unavailable("key check", err)
		}
		for _, k := range []struct {
			wrapped  []byte
			document bool
		}{{w, false}, {d, true}} {
			if limit > 0 && opened == limit {
				return opened, nil
			}
			if len(k.wrapped) == 0 {
				continue // no document key
			}
			if err := open(subject, k.wrapped, k.document); err != nil {
				kind := "data"
				if k.document {
					kind = "document"
				}
				return opened, fmt.Errorf("the %s key of %s does not open: %w", kind, clipID(subject), err)
			}
			opened++
		}
	}
	if err := rows.Err(); err != nil {
		return opened, unavailable("key check", err)
	}
	return opened, nil
}
