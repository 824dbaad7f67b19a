package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"registrar/audit"
	"registrar/records"
)

// The student index (audit_students) and the record of disclosures (disclosures) are
// derived from the audit events, which carry every fact they hold: the students an
// event names, and, for an event marked Disclosed, the party, legal basis, purpose,
// resource, fields and whether 99.32 requires the entry. They are written behind the
// trail, not in each request's transaction: a read's commit appends one event row,
// while index rows for 30 students land on 30 scattered pages of a student-keyed
// index, which at district scale made the index most of the cost of every audited
// read (docs/audit.md, "The student index is written behind the trail").
//
// audit_indexed holds, per chain, the highest sequence number whose rows are written
// (the watermark). The committer indexes its own chain's tail inside an ordinary batch
// transaction every indexInterval or indexBatch events, sorting the rows by student so
// that each index page is written once per run; anything that reads the index
// (a record of disclosures, the trail filtered by student, verify, the purge) first
// calls FlushAuditIndex, so no caller ever sees a lagging index. Because the rows are
// derived, an index run after a crash writes exactly what the lost run would have:
// the events are durable, and the watermark moves in the same transaction as the rows.
const (
	indexInterval = time.Second
	indexBatch    = 8192
	indexRunRows  = 16384 // rows per run outside a flush: bounds a catch-up batch (a run costs about 20 µs a row)
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
	return strings.Join(cols, ", ") + " FROM disclosures d LEFT JOIN disclosure_events de ON de.chain = d.chain AND de.seq = d.seq"
}()

// indexRows is how many rows one multi-row INSERT of the index writes.
const indexRows = 64

var (
	insertAuditStudentsMany = "INSERT INTO audit_students (chain, seq, student_id) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", indexRows), ", ")
	// A student's entry: the event's details are in disclosure_events.
	insertDisclosureEntry      = "INSERT INTO disclosures (" + disclosureCols + ") VALUES (?, '', ?, ?, '', '', '', '', '', '', '', '', 0, '')"
	insertDisclosureEntriesMny = "INSERT INTO disclosures (" + disclosureCols + ") VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, '', ?, ?, '', '', '', '', '', '', '', '', 0, ''), ", indexRows), ", ")
	insertDisclosureEvent = "INSERT INTO disclosure_events (chain, seq, time, party_kind, party_id, party_name, legal_basis, purpose, contract_ref, resource_type, fields, required, request_id) " +
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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

// ensureIndexed registers the committer's chain in audit_indexed, so that
// FlushAuditIndex finds it, and reads where its index stands.
func (c *committer) ensureIndexed(ctx context.Context) error {
	if _, err := c.s.w.ExecContext(ctx, c.s.d.rebind("INSERT INTO audit_indexed (chain, seq) VALUES (?, 0) ON CONFLICT (chain) DO NOTHING"), c.chain); err != nil {
		return fmt.Errorf("sqlstore: register the audit chain's index: %w", err)
	}
	if err := c.s.w.QueryRowContext(ctx, c.s.d.rebind("SELECT seq FROM audit_indexed WHERE chain = ?"), c.chain).Scan(&c.indexed); err != nil {
		return fmt.Errorf("sqlstore: read the audit index watermark: %w", err)
	}
	c.indexedAt = c.s.now()
	return nil
}

// indexDue says whether this batch should index the chain's tail.
func (c *committer) indexDue(now time.Time) bool {
	if c.s.audit.off {
		return false
	}
	return c.indexWish || c.indexBehind || c.seq-c.indexed >= indexBatch || (c.seq > c.indexed && now.Sub(c.indexedAt) >= indexInterval)
}

// indexTail writes the index rows of the events after the watermark: of every chain
// when the batch was asked to flush, else of the committer's own.
func (c *committer) indexTail(ctx context.Context, tx *sql.Tx, now time.Time) error {
	chains := []string{c.chain}
	if c.indexWish {
		var err error
		if chains, err = c.indexedChains(ctx, tx); err != nil {
			return err
		}
	}
	for _, chain := range chains {
		upTo, err := c.indexChain(ctx, tx, chain)
		if err != nil {
			return fmt.Errorf("index audit chain %s: %w", chain, err)
		}
		if chain == c.chain {
			c.indexed = upTo
		}
	}
	c.indexedAt = now
	return nil
}

func (c *committer) indexedChains(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, "SELECT chain FROM audit_indexed ORDER BY chain")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ch string
		if err := rows.Scan(&ch); err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, rows.Err()
}

// indexChain indexes one chain's events after its watermark and moves the watermark;
// it returns the new watermark. On PostgreSQL the watermark row is locked first, so
// two instances flushing the same chain write its rows once.
func (c *committer) indexChain(ctx context.Context, tx *sql.Tx, chain string) (int64, error) {
	q := "SELECT seq FROM audit_indexed WHERE chain = ?"
	if c.s.d.name() == "postgres" {
		q += " FOR UPDATE"
	}
	var from int64
	if err := tx.QueryRowContext(ctx, c.s.d.rebind(q), chain).Scan(&from); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	var evs []memEvent
	var upTo int64
	fromMem := chain == c.chain && c.mem.ok && from == c.mem.base
	if fromMem {
		evs, upTo = c.mem.events[c.mem.start:], max(c.mem.head, from)
	} else {
		var err error
		if evs, upTo, err = c.readTail(ctx, tx, chain, from); err != nil {
			return 0, err
		}
	}
	// A run writes about indexRunRows rows at most (whole events), so no batch waits long
	// behind it; the rest goes in the next batches. A flush writes everything.
	partial := false
	if !c.indexWish {
		n := 0
		for i := range evs {
			if n += len(evs[i].e.Students); n >= c.s.audit.indexRunRows && i+1 < len(evs) {
				evs, upTo, partial = evs[:i+1], evs[i].seq, true
				break
			}
		}
	}
	if chain == c.chain {
		c.mem.consumed = upTo
		// A table read to the head makes the copy complete from here on.
		c.mem.fromTable = !fromMem && !partial
		c.indexBehind = partial
	}
	type studentRow struct {
		seq     int64
		student string
	}
	type disclosureRow struct {
		seq int64
		d   Disclosure
	}
	var students, entries []studentRow
	var discl []disclosureRow // one per disclosing event
	for _, me := range evs {
		seq, e := me.seq, &me.e
		for _, st := range e.Students {
			students = append(students, studentRow{seq, st})
			if e.Disclosed {
				entries = append(entries, studentRow{seq, st})
			}
		}
		if e.Disclosed && len(e.Students) > 0 {
			fields := e.Fields
			if fields == nil {
				fields = []string{}
			}
			discl = append(discl, disclosureRow{seq, Disclosure{Time: e.Time, Chain: chain, Seq: seq, PartyKind: e.PrincipalKind, PartyID: e.PrincipalID,
				LegalBasis: e.LegalBasis, Purpose: e.Purpose, ResourceType: e.ResourceType, Fields: fields, Required: e.DisclosureRequired, RequestID: e.RequestID}})
		}
	}
	if upTo == from {
		return from, nil
	}
	// Sorted by student, each page of the student-keyed indexes is written once.
	slices.SortFunc(students, func(a, b studentRow) int {
		return cmp.Or(strings.Compare(a.student, b.student), cmp.Compare(a.seq, b.seq))
	})
	slices.SortFunc(entries, func(a, b studentRow) int {
		return cmp.Or(strings.Compare(a.student, b.student), cmp.Compare(a.seq, b.seq))
	})
	args := make([]any, 0, indexRows*3)
	flush := func(one, many string, width int) error {
		for len(args) >= indexRows*width {
			if _, err := txExec(ctx, c.s.wstmt, tx, c.s.d.rebind(many), args[:indexRows*width]...); err != nil {
				return err
			}
			args = args[indexRows*width:]
		}
		for ; len(args) > 0; args = args[width:] {
			if _, err := txExec(ctx, c.s.wstmt, tx, c.s.d.rebind(one), args[:width]...); err != nil {
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
		return 0, fmt.Errorf("student index: %w", err)
	}
	args = args[:0:cap(args)]
	for _, r := range entries {
		args = append(args, r.student, chain, r.seq)
	}
	if err := flush(insertDisclosureEntry, insertDisclosureEntriesMny, 3); err != nil {
		return 0, fmt.Errorf("record of disclosures: %w", err)
	}
	parties := map[string][2]string{}
	for i := range discl {
		d := &discl[i].d
		if d.PartyKind == audit.KindClient {
			p, ok := parties[d.PartyID]
			if !ok {
				var name string
				var contract sql.NullString
				err := tx.QueryRowContext(ctx, c.s.d.rebind(selectClientParty), d.PartyID).Scan(&name, &contract)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return 0, fmt.Errorf("disclosure party: %w", err)
				}
				p = [2]string{name, contract.String}
				parties[d.PartyID] = p
			}
			d.PartyName, d.ContractRef = p[0], p[1]
		}
		fields, _ := json.Marshal(d.Fields) // a list of strings: cannot fail
		required := 0
		if d.Required {
			required = 1
		}
		if _, err := txExec(ctx, c.s.wstmt, tx, c.s.d.rebind(insertDisclosureEvent), chain, d.Seq, records.FormatDateTime(d.Time), d.PartyKind, d.PartyID, d.PartyName,
			d.LegalBasis, d.Purpose, d.ContractRef, d.ResourceType, string(fields), required, d.RequestID); err != nil {
			return 0, fmt.Errorf("record of disclosures: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, c.s.d.rebind("INSERT INTO audit_indexed (chain, seq) VALUES (?, ?) ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq"), chain, upTo); err != nil {
		return 0, fmt.Errorf("move the watermark: %w", err)
	}
	return upTo, nil
}

// FlushAuditIndex writes the student index and the record of disclosures of every
// event appended so far, on every chain. Whatever reads them calls it first.
func (s *Store) FlushAuditIndex(ctx context.Context) error {
	if s.audit.off {
		return nil
	}
	return s.Write(ctx, func(_ context.Context, t *Tx) error {
		t.s.commit.indexWish = true
		return nil
	})
}

// indexWatermark is where chain's index stands in tx's snapshot.
func (s *Store) indexWatermark(ctx context.Context, tx *sql.Tx, chain string) (int64, error) {
	var seq int64
	err := tx.QueryRowContext(ctx, s.d.rebind("SELECT seq FROM audit_indexed WHERE chain = ?"), chain).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// readTail reads and decodes the events of chain after seq from that name students,
// and returns them with the chain's last sequence number.
func (c *committer) readTail(ctx context.Context, tx *sql.Tx, chain string, from int64) ([]memEvent, int64, error) {
	rows, err := tx.QueryContext(ctx, c.s.d.rebind("SELECT seq, body FROM audit_events WHERE chain = ? AND seq > ? ORDER BY seq"), chain, from)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []memEvent
	upTo := from
	for rows.Next() {
		var seq int64
		var body string
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, 0, err
		}
		upTo = seq
		if !strings.Contains(body, `"students":`) {
			continue // names no student: nothing to index
		}
		me := memEvent{seq: seq}
		if err := json.Unmarshal([]byte(body), &me.e); err != nil {
			// The chain check names this event; the index cannot be derived from it.
			return nil, 0, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("event %s/%d does not decode: %w", chain, seq, err)}
		}
		out = append(out, me)
	}
	return out, upTo, rows.Err()
}

// memIndex is the committer's own copy of what its appends need indexed, so that an
// index run does not read back and decode the events it has just written. The copy is
// used only while it is known complete: every event after base up to head that names
// a student, with no other process appending to the chain in between (readHead
// notices a head it did not write and the next run reads the table instead).
type memIndex struct {
	ok     bool
	base   int64 // the watermark the copy starts at
	start  int   // events[start:] are those after base
	head   int64 // the last event the committer knows of
	events []memEvent

	// The batch in hand: what to restore if it fails, what it indexed if it commits.
	mark      int
	markHead  int64
	markBase  int64
	markOK    bool
	consumed  int64 // -1: the batch indexed nothing of this chain
	fromTable bool
}

type memEvent struct {
	seq int64
	e   indexedEvent
}

// begin marks the start of a batch.
func (m *memIndex) begin() {
	m.mark, m.markHead, m.markBase, m.markOK, m.consumed = len(m.events), m.head, m.base, m.ok, -1
}

// add notes an event appended in the batch in hand.
func (m *memIndex) add(e *audit.Event) {
	m.head = e.Seq
	if m.ok && len(e.Students) > 0 {
		m.events = append(m.events, memEvent{seq: e.Seq, e: indexedEvent{Time: e.Time.UTC(), PrincipalKind: e.PrincipalKind, PrincipalID: e.PrincipalID,
			ResourceType: e.ResourceType, Students: e.Students, Fields: e.Fields, LegalBasis: e.LegalBasis, Purpose: e.Purpose,
			Disclosed: e.Disclosed, DisclosureRequired: e.DisclosureRequired, RequestID: e.RequestID}})
	}
}

// settle ends the batch: a failed one leaves the copy as it was; a committed one
// that indexed drops what is now in the tables.
func (m *memIndex) settle(committed bool) {
	if !committed {
		clear(m.events[m.mark:])
		m.events = m.events[:m.mark]
		m.head, m.base, m.ok = m.markHead, m.markBase, m.markOK
		return
	}
	if m.consumed < 0 {
		return
	}
	for m.start < len(m.events) && m.events[m.start].seq <= m.consumed {
		m.start++
	}
	// Indexed events are skipped by start; the slice is compacted once they are most
	// of it, so a copy that trails the head costs no copying per batch.
	if m.start == len(m.events) {
		clear(m.events)
		m.events, m.start = m.events[:0], 0
	} else if m.start > 1024 && m.start > len(m.events)/2 {
		n := copy(m.events, m.events[m.start:])
		clear(m.events[n:])
		m.events, m.start = m.events[:n], 0
	}
	m.base = m.consumed
	if m.fromTable {
		m.ok = true // the table was read to the head: from here on the copy is complete
	}
}
