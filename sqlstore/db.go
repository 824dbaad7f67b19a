// Package sqlstore keeps registrar's records in SQLite (embedded default) or
// PostgreSQL, behind one set of methods.
//
// Tables and queries are derived from the entity descriptions in records: one table per
// entity, one column per plain field, a sealed column holding the sensitive fields
// encrypted under the data subject's key (vault), blind-index columns for the sensitive
// fields that can be searched by equality, and link tables for lists of references.
//
// Every write goes through one committer per instance that batches concurrent requests
// into one transaction (group commit): each request's rows, its change-log entries and
// its audit events commit together or not at all, and reads' audit events become
// durable before the response leaves. Reads run in their own read-only transaction on a
// pool of connections, with the caller's authorization scope joined into the SQL.
//
// sqlstore imports records, audit, the query grammar and the vault; never httpapi.
package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"registrar/audit"

	"modernc.org/sqlite" // the pure-Go SQLite driver: CGO_ENABLED=0 builds stay static
)

// Sealer is what the store needs from the vault.
type Sealer interface {
	Sealing
	BlindIndex(field, value string) []byte
}

// Store is one open database.
type Store struct {
	d      dialect
	w      *sql.DB // the writer: one connection on SQLite, the primary on PostgreSQL
	r      *sql.DB // readers (on SQLite with the index file attached as ix)
	ix     *sql.DB // the audit index's writer: the index file (SQLite), a connection of its own (PostgreSQL)
	idx    *indexer
	path   string // the SQLite file
	vault  Sealer
	log    *slog.Logger
	now    func() time.Time
	commit *committer
	rstmt  *stmtCache  // prepared statements on the read pool
	wstmt  *stmtCache  // prepared statements on the writer
	audit  auditConfig // checkpoints, benchmarks' switch (audit.go)

	wal     walCheckpointer // SQLite: the WAL copied back into the database off the commit path
	clients clientCache     // client rows read by Client (clients.go)
	selects sync.Map        // *records.Entity -> selectList (read.go)
	counts  *countCache     // List's totals; nil on PostgreSQL (counts.go)

	closeOnce sync.Once
}

// Options configure Open.
type Options struct {
	// Path is the SQLite file; used when URL is empty.
	Path string
	// URL is a PostgreSQL connection URL.
	URL string
	// ReaderURL optionally points reads at a replica (PostgreSQL).
	ReaderURL string
	// Password is the PostgreSQL password, kept out of URL so it is never printed;
	// it overrides one in the URL.
	Password string
	// CAFile is the CA bundle that verifies the PostgreSQL server (sslrootcert); with
	// it, a URL without sslmode gets sslmode=verify-full.
	CAFile string
	// Chain is this instance's audit chain id.
	Chain string
	// Readers is the size of the read pool (default 4 on SQLite, 10 on PostgreSQL).
	Readers int
	Vault   Sealer
	Logger  *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
	// Signer signs audit checkpoints (default: Vault, when it can sign).
	Signer audit.Signer
	// CheckpointEvery and CheckpointInterval set how often the chain head is signed
	// (defaults 1000 events, 30s; a negative interval turns the ticker off).
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// NoAuditForBenchmarks drops every audit event. It exists only so benchmarks can
	// measure what the durable audit costs in the same run; no setting reaches it.
	NoAuditForBenchmarks bool
	// IndexRunRows caps the student-index rows one run writes behind the trail
	// (default 65,536; tests lower it to exercise runs that stop short).
	IndexRunRows int
	// IndexInterval is how often the indexer writes the trail's tail (default 2s; a
	// negative interval leaves it to flushes: tests).
	IndexInterval time.Duration
	// CommitDelay is how long the committer waits for more requests before it
	// commits a batch, when the batch before had more than one (default 2ms; a
	// negative delay never waits). See docs/architecture.md, "The committer".
	CommitDelay time.Duration
}

// commitDelay is Options.CommitDelay's default.
const commitDelay = 2 * time.Millisecond

// Open opens (creating if needed) the database, applies migrations and starts the
// committer. Close stops it.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Vault == nil {
		return nil, errors.New("sqlstore: a vault is required: sensitive fields are always encrypted")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Chain == "" {
		return nil, errors.New("sqlstore: an audit chain id is required")
	}
	s := &Store{vault: o.Vault, log: o.Logger, now: o.Now, audit: newAuditConfig(o)}
	var err error
	if o.URL != "" {
		// Both pools, then the migrations under an advisory lock (postgres.go).
		if err := s.openPostgres(ctx, o); err != nil {
			return nil, err
		}
		s.rstmt, s.wstmt = newStmtCache(s.r, 512), newStmtCache(s.w, 256)
		s.wstmt.fixed = true
	} else {
		if o.Readers <= 0 {
			o.Readers = 4
		}
		s.d = sqliteDialect{}
		s.path = o.Path
		if s.w, s.r, s.ix, err = openSQLite(ctx, o.Path, o.Readers, o.Logger); err != nil {
			return nil, err
		}
		s.rstmt, s.wstmt = newStmtCache(s.r, 512), newStmtCache(s.w, 256)
		s.wstmt.fixed = true
		s.counts = newCountCache(countEntries, countBytes) // sound on SQLite only (counts.go)
		if err := s.migrate(ctx); err != nil {
			s.closeDBs()
			return nil, err
		}
		if err := s.startWALCheckpoints(o.Path); err != nil {
			s.closeDBs()
			return nil, err
		}
	}
	interval := o.IndexInterval
	if interval == 0 {
		interval = indexInterval
	}
	if s.idx, err = newIndexer(ctx, s, o.Chain, s.audit.indexRunRows, interval); err != nil {
		s.stopWALCheckpoints()
		s.closeDBs()
		return nil, err
	}
	if err := s.idx.register(ctx); err != nil {
		s.stopWALCheckpoints()
		s.closeDBs()
		return nil, err
	}
	if s.commit, err = newCommitter(ctx, s, o.Chain, cmp.Or(o.CommitDelay, commitDelay)); err != nil {
		s.stopWALCheckpoints()
		s.closeDBs()
		return nil, err
	}
	s.idx.start()
	s.startCheckpoints()
	return s, nil
}

func (s *Store) closeDBs() { s.w.Close(); s.r.Close(); s.ix.Close() }

// IndexPath is the SQLite file that holds the audit trail's student index and record
// of disclosures beside the database at path (auditindex.go): registrar.db ->
// registrar-index.db. It belongs to the database: copy, move and delete them together.
func IndexPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-index" + ext
}

// OpenSQLite opens a pool on the SQLite database at path with its index file attached
// as ix, as the store's readers see it; params are the DSN's query (without "?"). For
// tools and tests that read or (deliberately) tamper with the file.
func OpenSQLite(path, params string) (*sql.DB, error) {
	base, err := sqlite.NewConnector("file:" + path + "?" + params)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(attachIndex{base: base, path: IndexPath(path)}), nil
}

// attachIndex connects through base and attaches the index file as ix, then runs after.
type attachIndex struct {
	base  driver.Connector
	path  string
	after []string
}

func (a attachIndex) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := a.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("sqlstore: the SQLite driver's connection cannot execute")
	}
	if _, err := ex.ExecContext(ctx, "ATTACH DATABASE ? AS ix", []driver.NamedValue{{Ordinal: 1, Value: a.path}}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sqlstore: attach the index file %s: %w", a.path, err)
	}
	for _, q := range a.after {
		if _, err := ex.ExecContext(ctx, q, nil); err != nil {
			conn.Close()
			return nil, fmt.Errorf("sqlstore: %s: %w", q, err)
		}
	}
	return conn, nil
}

func (a attachIndex) Driver() driver.Driver { return a.base.Driver() }

func openSQLite(ctx context.Context, path string, readers int, log *slog.Logger) (w, r, ix *sql.DB, err error) {
	if path == "" {
		return nil, nil, nil, errors.New("sqlstore: SQLite path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("sqlstore: create data folder: %w", err)
	}
	// The files are created 0600: they hold wrapped keys and ciphertext, but also names.
	for _, p := range []string{path, IndexPath(path)} {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			f.Close()
		} else {
			return nil, nil, nil, fmt.Errorf("sqlstore: create database file: %w", err)
		}
	}
	if err := pairIndexFile(ctx, path, log); err != nil {
		return nil, nil, nil, err
	}
	// The index's writer: a private in-memory main with the index file attached, so
	// that its BEGIN IMMEDIATE takes the index file's write lock and not the
	// database's. The index is derived from the trail and its watermark moves with its
	// rows, so a run lost to a power cut is redone: synchronous NORMAL is enough.
	ixc, err := sqlite.NewConnector("file::memory:?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return nil, nil, nil, err
	}
	ix = sql.OpenDB(attachIndex{base: ixc, path: IndexPath(path), after: []string{"PRAGMA ix.journal_mode=WAL", "PRAGMA ix.synchronous=NORMAL"}})
	ix.SetMaxOpenConns(1)
	ix.SetMaxIdleConns(1)
	ix.SetConnMaxLifetime(0)
	if err := setupIndexFile(ctx, ix); err != nil {
		ix.Close()
		return nil, nil, nil, err
	}
	pragmas := "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
	w, err = sql.Open("sqlite", "file:"+path+pragmas)
	if err != nil {
		ix.Close()
		return nil, nil, nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	rc, err := sqlite.NewConnector("file:" + path + "?_pragma=busy_timeout(10000)&_txlock=deferred")
	if err != nil {
		w.Close()
		ix.Close()
		return nil, nil, nil, fmt.Errorf("sqlstore: open %s for reading: %w", path, err)
	}
	// query_only after the ATTACH: it covers both files.
	r = sql.OpenDB(attachIndex{base: rc, path: IndexPath(path), after: []string{"PRAGMA query_only=ON"}})
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	if err := w.Ping(); err != nil {
		w.Close()
		r.Close()
		ix.Close()
		return nil, nil, nil, fmt.Errorf("sqlstore: %s: %w", path, err)
	}
	return w, r, ix, nil
}

// Close stops the committer (after it finishes the batch in hand) and closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stopCheckpoints()
		s.commit.stop()
		// The indexer's last run indexes the chain to the head the committer left: a
		// stopped data dir has its whole trail indexed (auditindex.go).
		s.idx.stop()
		s.stopWALCheckpoints()
		s.rstmt.close()
		s.wstmt.close()
		err = errors.Join(s.r.Close(), s.w.Close(), s.ix.Close())
	})
	return err
}

// Ping checks that the database answers and its schema is current.
func (s *Store) Ping(ctx context.Context) error {
	var v int
	if err := s.r.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	if v != len(migrations) {
		return fmt.Errorf("sqlstore: schema version %d, this binary needs %d", v, len(migrations))
	}
	return nil
}

// dialect hides the few places where SQLite and PostgreSQL differ.
type dialect interface {
	name() string
	// rebind turns ? placeholders into the engine's.
	rebind(q string) string
	// ddl replaces type tokens in a migration.
	ddl(q string) string
	// jsonAgg aggregates expr into a JSON array ordered by expr.
	jsonAgg(expr string) string
	// jsonContains is a predicate: the JSON array in col has an element equal to the next bound argument.
	jsonContains(col string) string
	// like is a case-insensitive LIKE with '\' as escape.
	like(col string) string
	// nullsLow is the ORDER BY suffix that sorts NULL below every value, as SQLite does.
	nullsLow(desc bool) string
}

type sqliteDialect struct{}

func (sqliteDialect) name() string           { return "sqlite" }
func (sqliteDialect) rebind(q string) string { return q }
func (sqliteDialect) ddl(q string) string {
	return strings.NewReplacer("{{blob}}", "BLOB", "{{real}}", "REAL", "{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT", "{{bigint}}", "INTEGER").Replace(q)
}
func (sqliteDialect) jsonAgg(expr string) string {
	return "json_group_array(" + expr + " ORDER BY " + expr + ")"
}
func (sqliteDialect) jsonContains(col string) string {
	return "EXISTS (SELECT 1 FROM json_each(" + col + ") WHERE json_each.value = ?)"
}
func (sqliteDialect) like(col string) string { return col + " LIKE ? ESCAPE '\\'" }
func (sqliteDialect) nullsLow(bool) string   { return "" }

// RebindDollar rewrites ? into $1, $2, ... (PostgreSQL's placeholders; tests that
// query a store's database directly use it too). Safe because registrar never puts a
// literal containing '?' into SQL: every value is bound.
func RebindDollar(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// walCheckpointer copies SQLite's write-ahead log back into the database file from
// its own connection, every walCheckpointEvery. SQLite would otherwise do it inside
// the commit that crosses a thousand pages, and every request waiting on that batch
// would wait for the copy and its fsync too (the writer runs wal_autocheckpoint(0)).
// A PASSIVE checkpoint runs beside the writer and readers without blocking them.
type walCheckpointer struct {
	db   *sql.DB
	stop chan struct{}
	done chan struct{}
}

const walCheckpointEvery = time.Second

func (s *Store) startWALCheckpoints(path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("sqlstore: open %s for checkpoints: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s.wal = walCheckpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.wal.done)
		t := time.NewTicker(walCheckpointEvery)
		defer t.Stop()
		for {
			select {
			case <-s.wal.stop:
				return
			case <-t.C:
				if _, err := db.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
					s.log.Warn("WAL checkpoint", "err", err)
				}
			}
		}
	}()
	return nil
}

func (s *Store) stopWALCheckpoints() {
	if s.wal.db == nil {
		return
	}
	close(s.wal.stop)
	<-s.wal.done
	// Our writer has stopped: copy back what it left. PASSIVE, because another process
	// (a server beside this CLI) may still be writing, and this must not wait for it.
	if _, err := s.wal.db.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		s.log.Warn("final WAL checkpoint", "err", err)
	}
	s.wal.db.Close()
}
