package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"registrar/audit"
	"registrar/internal/jsonenc"
	"registrar/records"
)

// The student index (ix.audit_students) and the record of disclosures
// (ix.disclosures, ix.disclosure_events) are derived from the audit events, which
// carry every fact they hold: the students an event names, and, for an event marked
// Disclosed, the party, legal basis, purpose, resource, fields and whether 99.32
// requires the entry. They are written behind the trail by an indexer of their own,
// never in a request's transaction: a read's commit appends one event row, while
// index rows for 30 students land on 30 scattered pages of two student-keyed
// indexes, which at district scale made the index most of the cost of every audited
// read, and, once it was moved behind the trail but still run by the committer, a
// stall of 80-400 ms every second for every request waiting on that batch
// (docs/audit.md, "The student index is written behind the trail").
//
// The tables live in their own schema, ix: on SQLite a file of its own beside the
// database (IndexPath), attached to every reading connection, so that the indexer
// holds its own write lock and never the committer's; on PostgreSQL a schema of the
// same database, written on a connection of its own. ix.audit_indexed holds, per
// chain, the highest sequence number whose rows are written (the watermark), moved
// in the same transaction as the rows, so a run lost in a crash is redone exactly.
//
// The committer hands the indexer a copy of every committed batch's events that
// name students (handover); the indexer writes them every indexInterval, sorted by
// student so that each index page is written once per run, in runs of at most
// indexRunRows rows. When its copy is not known complete (another process appended
// to the chain, the copy overflowed, or the process just started) it reads the
// events from the trail instead. Anything that reads the index (a record of
// disclosures, the trail filtered by student, verify) first calls FlushAuditIndex,
// which indexes every chain up to its head, so no caller ever sees a lagging index.
const (
	indexInterval = 2 * time.Second
	indexRunRows  = 1 << 16 // rows per periodic run: bounds a catch-up run's memory and how long a flush may wait behind it
	indexPending  = 1 << 18 // events the copy may hold before it is dropped for the table
	finalRunWait  = 30 * time.Second
)

// migrationAuditIndex adds the watermark and disclosure_events. Every event before it
// was indexed in its own transaction, so each existing chain starts indexed to its
// head.
//
// A disclosing read names up to a page of students, and what was disclosed, to whom
// and why is the same for all of them: it is written once per event in
// disclosure_events, and each student's entry in disclosures keeps only the student
// and the event (its other columns empty). Entries written before this migration
// carry everything themselves; readers take an event's row where there is one
// (disclosureSelect).
func migrationAuditIndex(d dialect) []string {
	out := []string{
		d.ddl(`CREATE TABLE audit_indexed (chain TEXT PRIMARY KEY, seq {{bigint}} NOT NULL)`),
		`INSERT INTO audit_indexed (chain, seq) SELECT chain, MAX(seq) FROM audit_events GROUP BY chain`,
		d.ddl(`CREATE TABLE disclosure_events (
  chain TEXT NOT NULL,
  seq {{bigint}} NOT NULL,
  time TEXT NOT NULL,
  party_kind TEXT NOT NULL,
  party_id TEXT NOT NULL,
  party_name TEXT NOT NULL,
  legal_basis TEXT NOT NULL,
  purpose TEXT NOT NULL,
  contract_ref TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  fields TEXT NOT NULL,
  required INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  PRIMARY KEY (chain, seq)
)`),
	}
	const refuse = "the audit trail is append-only"
	if d.name() == "sqlite" {
		return append(out,
			"CREATE TRIGGER disclosure_events_no_update BEFORE UPDATE ON disclosure_events BEGIN SELECT RAISE(ABORT, '"+refuse+"'); END",
			"CREATE TRIGGER disclosure_events_no_delete BEFORE DELETE ON disclosure_events BEGIN SELECT RAISE(ABORT, '"+refuse+"'); END")
	}
	return append(out,
		"CREATE TRIGGER disclosure_events_append_only BEFORE UPDATE OR DELETE ON disclosure_events FOR EACH ROW EXECUTE FUNCTION registrar_append_only()",
		"CREATE TRIGGER disclosure_events_no_truncate BEFORE TRUNCATE ON disclosure_events FOR EACH STATEMENT EXECUTE FUNCTION registrar_append_only()")
}

// migrationIndexSchema moves the student index, the record of disclosures and the
// watermark into the schema ix, where the indexer writes them on a connection of
// its own. On PostgreSQL ix is a schema of the same database and the tables move by
// ALTER TABLE (their triggers go with them). On SQLite ix is a file of its own
// (IndexPath, created by setupIndexFile); moveIndexToItsFile copies the rows there
// before this migration drops the tables from the database (with their triggers).
func migrationIndexSchema(d dialect) []string {
	var out []string
	if d.name() == "postgres" {
		out = append(out, "CREATE SCHEMA IF NOT EXISTS ix")
		for _, t := range indexTables {
			out = append(out, "ALTER TABLE "+t+" SET SCHEMA ix")
		}
		return out
	}
	for _, t := range indexTables {
		out = append(out, "DROP TABLE IF EXISTS main."+t)
	}
	return out
}

// indexTables are the tables of the schema ix.
var indexTables = []string{"audit_indexed", "audit_students", "disclosures", "disclosure_events"}

// setupIndexFile creates the SQLite index file's tables where they are missing. Their
// definitions are those of the migrations that created them in the database (1, 2
// and 5), rewritten into the schema ix, so the two cannot drift apart (migration 7
// copies rows across with SELECT *). One trigger differs: a record of disclosures
// cannot be deleted even once its student is purged, because a trigger in this file
// cannot see the database's users (99.32(a)(2) allows the deletion; it does not
// require it).
func setupIndexFile(ctx context.Context, ix *sql.DB) error {
	stmts := append([]string{`CREATE TABLE IF NOT EXISTS ix.index_moves (source TEXT PRIMARY KEY, moved_at TEXT NOT NULL)`}, indexFileDDL()...)
	tx, err := ix.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: set up the index file: %w", err)
	}
	defer tx.Rollback()
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlstore: set up the index file: %w\n%s", err, q)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: set up the index file: %w", err)
	}
	return nil
}

// ddlObject reads what a migration statement creates: its kind, its name and, for an
// index or a trigger, its table.
var ddlObject = regexp.MustCompile(`(?s)^CREATE (TABLE|INDEX|TRIGGER) (\w+)(?:.*? ON (\w+))?`)

// indexFileDDL is the SQLite DDL of the index tables, their indexes and their
// append-only triggers, taken from the migrations and moved into ix.
func indexFileDDL() []string {
	d := sqliteDialect{}
	keep := map[string]bool{}
	for _, t := range indexTables {
		keep[t] = true
	}
	var out []string
	for _, q := range slices.Concat(migration1(d), migration2(d), migrationAuditIndex(d)) {
		m := ddlObject.FindStringSubmatch(q)
		if m == nil {
			continue
		}
		table := m[3]
		if m[1] == "TABLE" {
			table = m[2]
		}
		if !keep[table] || strings.Contains(q, "FROM users") {
			continue // not an index table, or the purged-student exception (below)
		}
		out = append(out, d.ddl(strings.Replace(q, "CREATE "+m[1]+" "+m[2], "CREATE "+m[1]+" IF NOT EXISTS ix."+m[2], 1)))
	}
	return append(out, "CREATE TRIGGER IF NOT EXISTS ix.disclosures_no_delete BEFORE DELETE ON disclosures BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END")
}

// pairIndexFile makes sure that the SQLite index file beside path was derived from
// this database: both carry the same random id in their header (user_version), and
// no chain's watermark is past the trail's head. An index file that fails either
// (left from a deleted database, or newer than a database restored from a backup) is
// moved aside (IndexPath + ".stale-TIME") and a new one is rebuilt from the trail:
// without this, its rows would be read as those of this database's events.
func pairIndexFile(ctx context.Context, path string, log *slog.Logger) error {
	for attempt := 0; attempt < 2; attempt++ {
		stale, err := checkIndexFile(ctx, path)
		if err != nil {
			return fmt.Errorf("sqlstore: check the audit index file: %w", err)
		}
		if stale == "" {
			return nil
		}
		aside := IndexPath(path) + ".stale-" + time.Now().UTC().Format("20060102T150405.000")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(IndexPath(path)+suffix, aside+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("sqlstore: move the stale audit index file aside: %w", err)
			}
		}
		log.Warn("the audit index file does not belong to this database: moved aside; the index is rebuilt from the trail", "reason", stale, "moved to", aside)
		f, err := os.OpenFile(IndexPath(path), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("sqlstore: create the audit index file: %w", err)
		}
		f.Close()
	}
	return errors.New("sqlstore: the new audit index file does not pair with the database")
}

// checkIndexFile pairs the files by id (giving a new one the database's) and returns
// why the index file is stale, or "".
func checkIndexFile(ctx context.Context, path string) (string, error) {
	db, err := OpenSQLite(path, "_pragma=busy_timeout(10000)")
	if err != nil {
		return "", err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var mainID, ixID int64
	if err := db.QueryRowContext(ctx, "PRAGMA main.user_version").Scan(&mainID); err != nil {
		return "", err
	}
	if mainID == 0 {
		mainID = rand.Int64N(math.MaxInt32) + 1
		if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA main.user_version = %d", mainID)); err != nil {
			return "", err
		}
	}
	if err := db.QueryRowContext(ctx, "PRAGMA ix.user_version").Scan(&ixID); err != nil {
		return "", err
	}
	switch {
	case ixID == 0:
		if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA ix.user_version = %d", mainID)); err != nil {
			return "", err
		}
	case ixID != mainID:
		return "it was made for another database", nil
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM ix.sqlite_master WHERE name = 'audit_indexed') * (SELECT COUNT(*) FROM main.sqlite_master WHERE name = 'audit_events')").Scan(&n); err != nil || n == 0 {
		return "", err
	}
	var chain string
	var seq, head int64
	err = db.QueryRowContext(ctx, "SELECT chain, seq, head FROM (SELECT a.chain, a.seq, COALESCE((SELECT MAX(e.seq) FROM main.audit_events e WHERE e.chain = a.chain), 0) AS head FROM ix.audit_indexed a) WHERE seq > head LIMIT 1").Scan(&chain, &seq, &head)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", err
	}
	return fmt.Sprintf("its watermark of chain %s is %d, past the trail's head %d", chain, seq, head), nil
}

// moveIndexToItsFile copies the index tables' rows from the SQLite database into the
// index file, once (ix.index_moves remembers it, so a crash before migration 7 drops
// the originals does not copy them twice).
func (s *Store) moveIndexToItsFile(ctx context.Context) error {
	var n int
	if err := s.w.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_indexed'").Scan(&n); err != nil || n == 0 {
		return err
	}
	conn, err := s.ix.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM ix.index_moves WHERE source = 'main'").Scan(&n); err != nil || n > 0 {
		return err
	}
	if _, err := conn.ExecContext(ctx, "ATTACH DATABASE ? AS old", s.path); err != nil {
		return err
	}
	defer conn.ExecContext(context.Background(), "DETACH DATABASE old")
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range indexTables {
		if _, err := tx.ExecContext(ctx, "INSERT INTO ix."+t+" SELECT * FROM old."+t); err != nil {
			return fmt.Errorf("copy %s into the index file: %w", t, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO ix.index_moves (source, moved_at) VALUES ('main', ?)", records.FormatDateTime(s.now())); err != nil {
		return err
	}
	return tx.Commit()
}

// disclosureSelect reads disclosureCols of entries d, each completed from its event's
// row in disclosure_events when it has one.
var disclosureSelect = func() string {
	var cols []string
	for _, c := range strings.Split(disclosureCols, ", ") {
		switch c {
		case "student_id", "chain", "seq":
			cols = append(cols, "d."+c)
		default:
			cols = append(cols, "COALESCE(de."+c+", d."+c+")")
		}
	}
	return strings.Join(cols, ", ") + " FROM ix.disclosures d LEFT JOIN ix.disclosure_events de ON de.chain = d.chain AND de.seq = d.seq"
}()

// studentIndex is the student index of student (bound twice, to the two ?): the
// events naming them, as (chain, seq). A disclosing event's students are indexed by
// its record-of-disclosure entries alone; ix.audit_students holds the other events'
// (and, before 2026-11-29, disclosing events' too: UNION keeps each event once).
const studentIndex = "(SELECT chain, seq FROM ix.audit_students WHERE student_id = ? UNION SELECT chain, seq FROM ix.disclosures WHERE student_id = ?)"

// indexRows is how many rows one multi-row INSERT of the index writes.
const indexRows = 64

var (
	insertAuditStudent      = "INSERT INTO ix.audit_students (chain, seq, student_id) VALUES (?, ?, ?)"
	insertAuditStudentsMany = "INSERT INTO ix.audit_students (chain, seq, student_id) VALUES " + manyRows
	// A student's entry: the event's details are in disclosure_events.
	insertDisclosureEntry      = "INSERT INTO ix.disclosures (" + disclosureCols + ") VALUES (?, '', ?, ?, '', '', '', '', '', '', '', '', 0, '')"
	insertDisclosureEntriesMny = "INSERT INTO ix.disclosures (" + disclosureCols + ") VALUES " + manyEntries
	insertDisclosureEvent      = "INSERT INTO ix.disclosure_events (" + disclosureEventCols + ") VALUES " + placeholders(disclosureEventWidth)
	insertDisclosureEventsMany = "INSERT INTO ix.disclosure_events (" + disclosureEventCols + ") VALUES " + valueRows(placeholders(disclosureEventWidth), indexRows)
	// A one-student disclosure's entry, with the event's details in the row.
	insertDisclosureFull      = "INSERT INTO ix.disclosures (" + disclosureCols + ") VALUES " + placeholders(disclosureWidth)
	insertDisclosuresFullMany = "INSERT INTO ix.disclosures (" + disclosureCols + ") VALUES " + valueRows(placeholders(disclosureWidth), indexRows)
	moveWatermark             = "INSERT INTO ix.audit_indexed (chain, seq) VALUES (?, ?) ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq"
)

const disclosureEventCols = "chain, seq, time, party_kind, party_id, party_name, legal_basis, purpose, contract_ref, resource_type, fields, required, request_id"

// The parameters of one row of ix.disclosures and of ix.disclosure_events: their
// column lists' lengths.
var (
	disclosureWidth      = strings.Count(disclosureCols, ",") + 1
	disclosureEventWidth = strings.Count(disclosureEventCols, ",") + 1
)

var (
	manyRows    = valueRows(placeholders(3), indexRows)
	manyEntries = valueRows("(?, '', ?, ?, '', '', '', '', '', '', '', '', 0, '')", indexRows)
)

// indexedEvent is what the index needs of an event's canonical body.
type indexedEvent struct {
	Time               time.Time `json:"time"`
	PrincipalKind      string    `json:"principalKind"`
	PrincipalID        string    `json:"principalId"`
	ResourceType       string    `json:"resourceType"`
	Students           []string  `json:"students"`
	Fields             []string  `json:"fields"`
	LegalBasis         string    `json:"legalBasis"`
	Purpose            string    `json:"purpose"`
	Disclosed          bool      `json:"disclosed"`
	DisclosureRequired bool      `json:"disclosureRequired"`
	RequestID          string    `json:"requestId"`
}

type memEvent struct {
	seq int64
	e   indexedEvent
}

func memEventOf(e *audit.Event) memEvent {
	return memEvent{seq: e.Seq, e: indexedEvent{Time: e.Time.UTC(), PrincipalKind: e.PrincipalKind, PrincipalID: e.PrincipalID,
		ResourceType: e.ResourceType, Students: e.Students, Fields: e.Fields, LegalBasis: e.LegalBasis, Purpose: e.Purpose,
		Disclosed: e.Disclosed, DisclosureRequired: e.DisclosureRequired, RequestID: e.RequestID}}
}

// indexer writes the student index and the record of disclosures behind the trail,
// on its own connection (Store.ix), in its own goroutine.
type indexer struct {
	s        *Store
	chain    string
	runRows  int
	interval time.Duration
	stmts    *stmtCache // the inserts, prepared on Store.ix

	mu      sync.Mutex
	copy    indexCopy     // the committer's handovers not yet indexed
	flushes []chan error  // FlushAuditIndex callers waiting for the next full run
	steps   []chan error  // tests: one periodic run each (export_test.go)
	wake    chan struct{} // a flush or step is waiting
	quit    chan struct{}
	done    chan struct{}
}

// indexCopy is the indexer's copy of the chain's events after base up to head that
// name students. It is used only while ok: every event in (base, head] is in it.
type indexCopy struct {
	ok         bool
	base, head int64
	events     []memEvent
}

// newIndexer prepares the indexer's inserts on Store.ix; register and start follow.
func newIndexer(ctx context.Context, s *Store, chain string, runRows int, interval time.Duration) (*indexer, error) {
	ix := &indexer{s: s, chain: chain, runRows: runRows, interval: interval, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	ix.stmts = newStmtCache(s.ix, 8)
	ix.stmts.fixed = true // Store.ix has one connection, held by the run's transaction
	if err := ix.stmts.prepare(ctx, s.d.rebind(insertAuditStudent), s.d.rebind(insertAuditStudentsMany), s.d.rebind(insertDisclosureEntry),
		s.d.rebind(insertDisclosureEntriesMny), s.d.rebind(insertDisclosureEvent), s.d.rebind(insertDisclosureEventsMany),
		s.d.rebind(insertDisclosureFull), s.d.rebind(insertDisclosuresFullMany)); err != nil {
		return nil, fmt.Errorf("sqlstore: prepare the audit index's statements: %w", err)
	}
	return ix, nil
}

// register enters this chain, and every chain of the trail that has no watermark
// yet, in ix.audit_indexed, so that a flush by any instance indexes them (an index
// file rebuilt from the trail starts every chain at 0). The chains are read by
// skipping from one to the next in the trail's primary key.
func (ix *indexer) register(ctx context.Context) error {
	s := ix.s
	var src rowQuerier = s.r // SQLite: the trail is in the other file
	if s.d.name() == "postgres" {
		src = s.ix // the primary (the readers may be a replica)
	}
	chains := []string{ix.chain}
	for last := ""; ; {
		var c sql.NullString
		if err := src.QueryRowContext(ctx, s.d.rebind("SELECT MIN(chain) FROM audit_events WHERE chain > ?"), last).Scan(&c); err != nil {
			return fmt.Errorf("sqlstore: read the audit chains: %w", err)
		}
		if !c.Valid {
			break
		}
		chains, last = append(chains, c.String), c.String
	}
	for _, c := range chains {
		if _, err := s.ix.ExecContext(ctx, s.d.rebind("INSERT INTO ix.audit_indexed (chain, seq) VALUES (?, 0) ON CONFLICT (chain) DO NOTHING"), c); err != nil {
			return fmt.Errorf("sqlstore: register the audit chain's index: %w", err)
		}
	}
	return nil
}

// handover gives the indexer a committed batch's events that name students: the
// chain went from prev to head in that batch.
func (ix *indexer) handover(prev, head int64, evs []memEvent) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	c := &ix.copy
	switch {
	case c.ok && c.head == prev:
		c.events = append(c.events, evs...)
		c.head = head
	default:
		// The first batch, or another process appended in between: the copy starts
		// here, and what lies between the watermark and prev is read from the trail.
		clear(c.events)
		c.ok, c.base, c.head, c.events = true, prev, head, append(c.events[:0], evs...)
	}
	if len(c.events) > indexPending {
		clear(c.events)
		c.ok, c.events = false, nil // the indexer has fallen far behind: it reads the trail
	}
}

func (ix *indexer) start() { go ix.loop() }

// stop ends the loop after a last run of the chain, to its head.
func (ix *indexer) stop() {
	close(ix.quit)
	<-ix.done
	ix.stmts.close()
}

func (ix *indexer) loop() {
	defer close(ix.done)
	var tick <-chan time.Time
	if ix.interval > 0 {
		t := time.NewTicker(ix.interval)
		defer t.Stop()
		tick = t.C
	}
	ctx := context.Background()
	for {
		select {
		case <-ix.quit:
			ix.mu.Lock()
			waiting := append(ix.flushes, ix.steps...)
			ix.flushes, ix.steps = nil, nil
			ix.mu.Unlock()
			// Bounded: a database that stopped answering must not hold Close forever
			// (the next start indexes what is left).
			fctx, cancel := context.WithTimeout(ctx, finalRunWait)
			err := ix.run(fctx, []string{ix.chain})
			cancel()
			if err != nil {
				ix.s.log.Warn("final audit index run", "err", err)
			}
			for _, ch := range waiting {
				ch <- ErrClosed
			}
			return
		case <-tick:
			// A periodic run of the chain; runs that stop short go on at once.
			for {
				behind, err := ix.runOwn(ctx)
				if err != nil {
					ix.s.log.Warn("audit index run", "err", err)
					break
				}
				if !behind || ix.waiting() || ix.stopping() {
					break
				}
			}
		case <-ix.wake:
		}
		ix.serve(ctx)
	}
}

func (ix *indexer) stopping() bool {
	select {
	case <-ix.quit:
		return true
	default:
		return false
	}
}

func (ix *indexer) waiting() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.flushes)+len(ix.steps) > 0
}

// serve answers the flushes and steps waiting now. A flush indexes every chain to
// the head it has when the run starts, which is after the caller asked.
func (ix *indexer) serve(ctx context.Context) {
	ix.mu.Lock()
	flushes, steps := ix.flushes, ix.steps
	ix.flushes, ix.steps = nil, nil
	ix.mu.Unlock()
	for _, ch := range steps {
		_, err := ix.runOwn(ctx)
		ch <- err
	}
	if len(flushes) == 0 {
		return
	}
	chains, err := ix.chains(ctx)
	if err == nil {
		err = ix.run(ctx, chains)
	}
	for _, ch := range flushes {
		ch <- err
	}
}

// ask queues a request (a flush or a step) and waits for its answer.
func (ix *indexer) ask(ctx context.Context, step bool) error {
	ch := make(chan error, 1)
	ix.mu.Lock()
	select {
	case <-ix.done:
		ix.mu.Unlock()
		return ErrClosed
	default:
	}
	if step {
		ix.steps = append(ix.steps, ch)
	} else {
		ix.flushes = append(ix.flushes, ch)
	}
	ix.mu.Unlock()
	select {
	case ix.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-ch:
		return err
	case <-ix.done:
		select {
		case err := <-ch:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runOwn runs the chain once, at most runRows rows; behind says it stopped short.
func (ix *indexer) runOwn(ctx context.Context) (behind bool, err error) {
	var short bool
	err = ix.runChain(ctx, ix.chain, ix.runRows, false, &short)
	return short, err
}

// run indexes chains to their heads, in runs of at most runRows rows.
func (ix *indexer) run(ctx context.Context, chains []string) error {
	for _, chain := range chains {
		for {
			var short bool
			if err := ix.runChain(ctx, chain, ix.runRows, true, &short); err != nil {
				return fmt.Errorf("index audit chain %s: %w", chain, err)
			}
			if !short {
				break
			}
		}
	}
	return nil
}

func (ix *indexer) chains(ctx context.Context) ([]string, error) {
	rows, err := ix.s.ix.QueryContext(ctx, "SELECT chain FROM ix.audit_indexed ORDER BY chain")
	if err != nil {
		return nil, unavailable("audit index chains", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ch string
		if err := rows.Scan(&ch); err != nil {
			return nil, unavailable("audit index chains", err)
		}
		out = append(out, ch)
	}
	return out, rows.Err()
}

// runChain writes one run of chain's rows after its watermark, at most about
// maxRows (whole events), and moves the watermark in the same transaction; short
// says events were left for the next run. whole: the run is part of a flush. The watermark is read inside the
// transaction (on PostgreSQL, its row locked), so two instances indexing one chain
// write its rows once.
func (ix *indexer) runChain(ctx context.Context, chain string, maxRows int, whole bool, short *bool) error {
	s := ix.s
	*short = false
	tx, err := s.ix.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("begin audit index run", err)
	}
	defer tx.Rollback()
	q := "SELECT seq FROM ix.audit_indexed WHERE chain = ?"
	if s.d.name() == "postgres" {
		q += " FOR UPDATE"
	}
	var from int64
	if err := tx.QueryRowContext(ctx, s.d.rebind(q), chain).Scan(&from); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return unavailable("audit index watermark", err)
	}
	// On SQLite the trail is in the other file, read through the reading pool; on
	// PostgreSQL the run's own transaction reads it (the readers may be a replica
	// that lags).
	var src rowQuerier = s.r
	if s.d.name() == "postgres" {
		src = tx
	}
	trailHead := int64(-1) // periodic runs take the copy as it is
	if whole {
		// A flush must reach the head as it is now, which another process appending
		// to this chain may have moved past the copy.
		var h sql.NullInt64
		if err := src.QueryRowContext(ctx, s.d.rebind("SELECT MAX(seq) FROM audit_events WHERE chain = ?"), chain).Scan(&h); err != nil {
			return unavailable("audit chain head", err)
		}
		trailHead = h.Int64
	}
	evs, upTo, fromCopy := ix.fromCopy(chain, from, trailHead)
	more := false
	if !fromCopy {
		var read int
		if evs, upTo, read, err = s.readTail(ctx, src, chain, from, maxRows); err != nil {
			return err
		}
		more = read == maxRows
	}
	n := 0
	for i := range evs {
		if n += len(evs[i].e.Students); n >= maxRows && i+1 < len(evs) {
			evs, upTo, more = evs[:i+1], evs[i].seq, true
			break
		}
	}
	*short = more
	if upTo <= from {
		return nil
	}
	if err := ix.write(ctx, tx, src, chain, evs); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.d.rebind(moveWatermark), chain, upTo); err != nil {
		return fmt.Errorf("move the watermark: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable("commit audit index run", err)
	}
	if chain == ix.chain {
		ix.consumed(upTo)
	}
	return nil
}

// fromCopy returns the copy's events after from, when the copy covers them (and
// reaches trailHead, unless that is negative).
func (ix *indexer) fromCopy(chain string, from, trailHead int64) ([]memEvent, int64, bool) {
	if chain != ix.chain {
		return nil, 0, false
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	c := &ix.copy
	if !c.ok || c.base > from || c.head < trailHead {
		return nil, 0, false
	}
	if from >= c.head {
		return nil, from, true // indexed already (by another instance's flush)
	}
	i, _ := slices.BinarySearchFunc(c.events, from+1, func(e memEvent, seq int64) int { return cmp.Compare(e.seq, seq) })
	return slices.Clone(c.events[i:]), c.head, true
}

// consumed drops from the copy what the run indexed.
func (ix *indexer) consumed(upTo int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	c := &ix.copy
	if !c.ok {
		return
	}
	i, _ := slices.BinarySearchFunc(c.events, upTo+1, func(e memEvent, seq int64) int { return cmp.Compare(e.seq, seq) })
	n := copy(c.events, c.events[i:])
	clear(c.events[n:])
	c.events = c.events[:n]
	if upTo >= c.head {
		c.base, c.head = upTo, upTo
	} else {
		c.base = max(c.base, upTo)
	}
}

type rowQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write inserts the rows of evs: the student index, each student's entry in the
// record of disclosures, and each disclosing event's details (the party's name and
// contract read through src, which on PostgreSQL is the run's own transaction).
func (ix *indexer) write(ctx context.Context, tx *sql.Tx, src rowQuerier, chain string, evs []memEvent) error {
	s := ix.s
	type studentRow struct {
		seq     int64
		student string
	}
	var students, entries []studentRow
	discl := make([]Disclosure, 0, len(evs)) // one per disclosing event
	for _, me := range evs {
		seq, e := me.seq, &me.e
		// A disclosing event's entries in the record of disclosures are its rows of
		// the student index too (studentIndex): one row per student, not two. A
		// one-student disclosure is a single full entry, written from discl below.
		single := e.Disclosed && len(e.Students) == 1
		for _, st := range e.Students {
			switch {
			case !e.Disclosed:
				students = append(students, studentRow{seq, st})
			case !single:
				entries = append(entries, studentRow{seq, st})
			}
		}
		if e.Disclosed && len(e.Students) > 0 {
			fields := e.Fields
			if fields == nil {
				fields = []string{}
			}
			d := Disclosure{Time: e.Time, Chain: chain, Seq: seq, PartyKind: e.PrincipalKind, PartyID: e.PrincipalID,
				LegalBasis: e.LegalBasis, Purpose: e.Purpose, ResourceType: e.ResourceType, Fields: fields, Required: e.DisclosureRequired, RequestID: e.RequestID}
			if single {
				d.Student = e.Students[0]
			}
			discl = append(discl, d)
		}
	}
	// A one-student disclosure (GET /students/{id}) is one full entry, the form of
	// entries before disclosure_events existed, which disclosureSelect reads as it is:
	// one row instead of an entry and an event row. Sorted by student, as the entries.
	slices.SortStableFunc(discl, func(a, b Disclosure) int { return strings.Compare(a.Student, b.Student) })
	// Sorted by student, each page of the student-keyed indexes is written once.
	bySeq := func(a, b studentRow) int {
		return cmp.Or(strings.Compare(a.student, b.student), cmp.Compare(a.seq, b.seq))
	}
	slices.SortFunc(students, bySeq)
	slices.SortFunc(entries, bySeq)
	args := make([]any, 0, indexRows*3)
	flush := func(one, many string, width int) error {
		for len(args) >= indexRows*width {
			if _, err := txExec(ctx, ix.stmts, tx, s.d.rebind(many), args[:indexRows*width]...); err != nil {
				return err
			}
			args = args[indexRows*width:]
		}
		for ; len(args) > 0; args = args[width:] {
			if _, err := txExec(ctx, ix.stmts, tx, s.d.rebind(one), args[:width]...); err != nil {
				return err
			}
		}
		args = args[:0]
		return nil
	}
	for _, r := range students {
		args = append(args, chain, r.seq, r.student)
	}
	if err := flush(insertAuditStudent, insertAuditStudentsMany, 3); err != nil {
		return fmt.Errorf("student index: %w", err)
	}
	args = args[:0:cap(args)]
	for _, r := range entries {
		args = append(args, r.student, chain, r.seq)
	}
	if err := flush(insertDisclosureEntry, insertDisclosureEntriesMny, 3); err != nil {
		return fmt.Errorf("record of disclosures: %w", err)
	}
	args = args[:0]
	full := make([]any, 0, len(discl)*disclosureWidth) // the one-student disclosures' rows
	// A run's disclosures mostly name the same fields (one route's, one projection's):
	// each list is encoded once while the next one is the same.
	var lastFields []string
	var lastJSON string
	fieldsJSON := func(f []string) string {
		if lastJSON == "" || !slices.Equal(f, lastFields) {
			lastFields, lastJSON = f, string(jsonenc.AppendStrings(nil, f))
		}
		return lastJSON
	}
	parties := map[string][2]string{}
	for i := range discl {
		d := &discl[i]
		if d.PartyKind == audit.KindClient {
			p, ok := parties[d.PartyID]
			if !ok {
				var name string
				var contract sql.NullString
				err := src.QueryRowContext(ctx, s.d.rebind(selectClientParty), d.PartyID).Scan(&name, &contract)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("disclosure party: %w", err)
				}
				p = [2]string{name, contract.String}
				parties[d.PartyID] = p
			}
			d.PartyName, d.ContractRef = p[0], p[1]
		}
		fields := fieldsJSON(d.Fields)
		required := 0
		if d.Required {
			required = 1
		}
		if d.Student != "" {
			full = append(full, d.Student, records.FormatDateTime(d.Time), chain, d.Seq, d.PartyKind, d.PartyID, d.PartyName,
				d.LegalBasis, d.Purpose, d.ContractRef, d.ResourceType, fields, required, d.RequestID)
			continue
		}
		args = append(args, chain, d.Seq, records.FormatDateTime(d.Time), d.PartyKind, d.PartyID, d.PartyName,
			d.LegalBasis, d.Purpose, d.ContractRef, d.ResourceType, fields, required, d.RequestID)
	}
	if err := flush(insertDisclosureEvent, insertDisclosureEventsMany, disclosureEventWidth); err != nil {
		return fmt.Errorf("record of disclosures: %w", err)
	}
	args = full
	if err := flush(insertDisclosureFull, insertDisclosuresFullMany, disclosureWidth); err != nil {
		return fmt.Errorf("record of disclosures: %w", err)
	}
	return nil
}

// FlushAuditIndex writes the student index and the record of disclosures of every
// event appended so far, on every chain. Whatever reads them calls it first.
func (s *Store) FlushAuditIndex(ctx context.Context) error {
	if s.audit.off {
		return nil
	}
	return s.idx.ask(ctx, false)
}

// indexWatermark is where chain's index stands in tx's snapshot.
func (s *Store) indexWatermark(ctx context.Context, tx *sql.Tx, chain string) (int64, error) {
	var seq int64
	err := tx.QueryRowContext(ctx, s.d.rebind("SELECT seq FROM ix.audit_indexed WHERE chain = ?"), chain).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// readTail reads and decodes up to limit events of chain after seq from, keeps those
// that name students, and returns them with the last sequence number read and how
// many events it read.
func (s *Store) readTail(ctx context.Context, q rowQuerier, chain string, from int64, limit int) (out []memEvent, upTo int64, read int, err error) {
	rows, err := q.QueryContext(ctx, s.d.rebind("SELECT seq, body FROM audit_events WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?"), chain, from, limit)
	if err != nil {
		return nil, 0, 0, unavailable("audit events", err)
	}
	defer rows.Close()
	upTo = from
	for rows.Next() {
		var seq int64
		var body string
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, 0, 0, unavailable("audit events", err)
		}
		upTo = seq
		read++
		if !strings.Contains(body, `"students":`) {
			continue // names no student: nothing to index
		}
		me := memEvent{seq: seq}
		if err := json.Unmarshal([]byte(body), &me.e); err != nil {
			// The chain check names this event; the index cannot be derived from it.
			return nil, 0, 0, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("event %s/%d does not decode: %w", chain, seq, err)}
		}
		out = append(out, me)
	}
	return out, upTo, read, rows.Err()
}
