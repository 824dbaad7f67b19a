package sqlstore

import (
	"container/list"
	"context"
	"database/sql"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"registrar/records"
)

// countCache keeps the totals List computes for X-Total-Count, so that a client paging
// through a collection has it counted once rather than once per page (the count reads
// the whole visible set; the page reads a slice of it).
//
// A total is served from the cache only when it is exactly what the count would return
// in the reader's own snapshot:
//
//   - The key is the full count statement and its bound arguments. The authorization
//     scope is part of the statement and its arguments (orgs, students, classes, the
//     date), so a principal can only ever get a total computed under the same
//     predicate with the same values.
//   - Each entry holds the generation of every entity whose rows the statement reads:
//     the highest change-log id of that entity (`changes`, indexed on (entity, id)),
//     read in the same read transaction as the page. Every write to a record appends
//     to the change log in the transaction that makes it (Put, Delete, Bulk,
//     MarkAbsent, Purge's unlinking, caseloads and dependency flags), so the content
//     of an entity's tables in a snapshot is determined by its highest change id
//     there, as long as ids commit in order. countDeps maps the statement's tables to
//     entities; a statement that reads any other table is never cached.
//
// Ids commit in order only on SQLite: one writer at a time, AUTOINCREMENT ids. On
// PostgreSQL a sequence hands out ids before commit, so a transaction holding id 41 can
// commit after a snapshot saw 42, and two snapshots with the same highest id can hold
// different rows: the cache is off there (counts is nil), and every page counts.
// Making it sound there needs a per-entity counter row that every writer updates
// (its row lock orders the commits), which is a migration not made yet.
//
// The cache lives in the process: a restored database needs a restart, which
// empties it. The change log must never lose its newest row of an entity (it is
// never pruned today); AUTOINCREMENT keeps a deleted id from being handed out again.
type countCache struct {
	maxEntries int
	maxBytes   int

	mu    sync.Mutex
	m     map[string]*list.Element // key -> *countEntry in lru
	lru   list.List                // front: most recently used
	bytes int

	hits, misses atomic.Int64
}

type countEntry struct {
	key   string
	deps  []string // entities the statement reads, sorted
	gens  []int64  // their generations when n was counted, in deps' order
	n     int
	bytes int
}

// Bounds of the count cache: a district administrator's key is about a kilobyte; a
// counselor with a full caseload binds 1000 ids (some 40 KB), so the byte bound, not
// the entry bound, is what limits those.
const (
	countEntries  = 4096
	countBytes    = 16 << 20
	countKeyBytes = 256 << 10 // a larger key is counted every time
)

func newCountCache(entries, bytes int) *countCache {
	return &countCache{maxEntries: entries, maxBytes: bytes, m: map[string]*list.Element{}}
}

// total returns the count of stmt with args in tx: from the cache when the generations
// of what it reads are, in tx's snapshot, those the cached count was made at.
func (s *Store) total(ctx context.Context, tx *sql.Tx, stmt string, args []any) (int, error) {
	c := s.counts
	key, ok := "", c != nil
	if ok {
		key, ok = countKey(stmt, args)
	}
	var deps []string
	var gens []int64
	if ok {
		var cached countEntry
		cached, ok = c.lookup(key)
		deps = cached.deps
		if !ok {
			deps, ok = countDeps(stmt)
		}
		if ok {
			var err error
			if gens, err = s.generations(ctx, tx, deps); err != nil {
				return 0, err
			}
			if cached.gens != nil && slices.Equal(cached.gens, gens) {
				c.hits.Add(1)
				return cached.n, nil
			}
			c.misses.Add(1)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.d.rebind(stmt), args...).Scan(&n); err != nil {
		return 0, err
	}
	if ok {
		c.store(key, deps, gens, n)
	}
	return n, nil
}

// generations reads the newest change id of each entity (0 for none), in tx.
func (s *Store) generations(ctx context.Context, tx *sql.Tx, deps []string) ([]int64, error) {
	if len(deps) == 0 {
		return []int64{}, nil
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	args := make([]any, len(deps))
	for i, d := range deps {
		if i > 0 {
			b.WriteString(", ")
		}
		// One scalar subquery per entity: each is a seek to the end of its range of
		// changes_entity (a GROUP BY over an IN list would scan the ranges).
		b.WriteString("(SELECT MAX(id) FROM changes WHERE entity = ?)")
		args[i] = d
	}
	rows, err := txQuery(ctx, s.rstmt, tx, s.d.rebind(b.String()), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vals := make([]sql.NullInt64, len(deps))
	dest := make([]any, len(deps))
	for i := range vals {
		dest[i] = &vals[i]
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	gens := make([]int64, len(deps))
	for i, v := range vals {
		gens[i] = v.Int64 // NULL: no change of that entity yet
	}
	return gens, rows.Close()
}

// lookup returns a copy of key's entry, and marks it used.
func (c *countCache) lookup(key string) (countEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return countEntry{}, false
	}
	c.lru.MoveToFront(el)
	return *el.Value.(*countEntry), true
}

// store keeps n as the count of key at gens, evicting the least recently used
// entries beyond the bounds.
func (c *countCache) store(key string, deps []string, gens []int64, n int) {
	size := len(key) + 8*len(gens) + 16*len(deps) + 128 // the entry, its list element and map slot, roughly
	if len(key) > countKeyBytes || size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		e := el.Value.(*countEntry)
		e.gens, e.n = gens, n
		c.lru.MoveToFront(el)
		return
	}
	c.m[key] = c.lru.PushFront(&countEntry{key: key, deps: deps, gens: gens, n: n, bytes: size})
	c.bytes += size
	for len(c.m) > c.maxEntries || c.bytes > c.maxBytes {
		el := c.lru.Back()
		e := el.Value.(*countEntry)
		c.lru.Remove(el)
		delete(c.m, e.key)
		c.bytes -= e.bytes
	}
}

// countKey encodes a statement and its arguments into a key that two different pairs
// never share: every part is tagged with its type and prefixed with its length.
// Arguments of another type make the statement uncacheable.
func countKey(stmt string, args []any) (string, bool) {
	var b strings.Builder
	b.Grow(len(stmt) + 24*len(args) + 8)
	lenPrefixed := func(tag byte, s string) {
		b.WriteByte(tag)
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	lenPrefixed('q', stmt)
	for _, a := range args {
		switch v := a.(type) {
		case nil:
			b.WriteByte('n')
		case string:
			lenPrefixed('s', v)
		case []byte:
			lenPrefixed('b', string(v))
		case int:
			lenPrefixed('i', strconv.FormatInt(int64(v), 10))
		case int64:
			lenPrefixed('l', strconv.FormatInt(v, 10))
		case float64:
			lenPrefixed('f', strconv.FormatUint(math.Float64bits(v), 16))
		case bool:
			lenPrefixed('t', strconv.FormatBool(v))
		default:
			return "", false
		}
	}
	return b.String(), true
}

// countTables maps every table a count may read to the entity the change log names
// when it is written: an entity's own table and its link tables (lists of references)
// to the entity; user_roles to user (written only with the user); registrar's
// caseloads and dependency flags to their change-log names.
var countTables = sync.OnceValue(func() map[string]string {
	m := map[string]string{
		"user_roles": records.User.Name,
		"caseloads":  changeCaseload,
		"dependents": changeDependent,
	}
	for _, e := range records.Entities {
		m[e.Table] = e.Name
		for i := range e.Fields {
			if f := &e.Fields[i]; f.Kind == records.KRefs {
				m[f.Link] = e.Name
			}
		}
	}
	return m
})

// volatile are the SQL functions whose value does not follow from the statement, its
// arguments and the tables: a statement that calls one is never cached. (registrar
// binds today's date as an argument; none of these appear in its statements.)
var volatile = map[string]bool{
	"current_date": true, "current_time": true, "current_timestamp": true, "localtime": true, "localtimestamp": true,
	"now": true, "date": true, "time": true, "datetime": true, "julianday": true, "unixepoch": true, "strftime": true, "timediff": true,
	"random": true, "randomblob": true, "changes": true, "total_changes": true, "last_insert_rowid": true,
	"nextval": true, "currval": true, "lastval": true, "setval": true, "clock_timestamp": true, "statement_timestamp": true,
	"transaction_timestamp": true, "timeofday": true, "gen_random_uuid": true, "txid_current": true, "pg_current_snapshot": true,
}

// fromEnds are the keywords that end a FROM list at their depth.
var fromEnds = map[string]bool{
	"where": true, "group": true, "order": true, "limit": true, "having": true, "union": true,
	"intersect": true, "except": true, "window": true, "offset": true, "returning": true,
}

// countDeps reads a statement registrar built and returns the entities (as the change
// log names them) whose tables it reads, sorted; ok is false when it reads a table
// that no entity owns, or when it cannot be read with certainty: quoted identifiers,
// comments, a FROM item that is neither a known table, a subquery nor json_each, a
// volatile function, unbalanced parentheses or quotes.
//
// A table is what follows FROM, JOIN, or a comma of a FROM list. As a second guard,
// any other word that names a known table (a column of the same name, say) adds its
// entity too: a needless dependency costs hits, never correctness.
func countDeps(stmt string) (deps []string, ok bool) {
	tables := countTables()
	seen := map[string]bool{}
	inFrom := []bool{false} // per parenthesis depth: between FROM and the end of its list
	expect := false         // the next item is a FROM item
	subquery := false       // the next word must be SELECT (a parenthesis opened a FROM item)
	for i := 0; i < len(stmt); {
		c := stmt[i]
		switch {
		case c == '\'':
			j := i + 1
			for {
				k := strings.IndexByte(stmt[j:], '\'')
				if k < 0 {
					return nil, false
				}
				j += k + 1
				if j < len(stmt) && stmt[j] == '\'' { // '' is a quote inside the literal
					j++
					continue
				}
				break
			}
			if expect || subquery {
				return nil, false
			}
			i = j
		case c == '"' || c == '`' || c == '[' || c == ';':
			return nil, false
		case (c == '-' || c == '/') && i+1 < len(stmt) && (stmt[i+1] == '-' || stmt[i+1] == '*'):
			return nil, false
		case c == '(':
			if subquery {
				return nil, false
			}
			if expect {
				expect, subquery = false, true
			}
			inFrom = append(inFrom, false)
			i++
		case c == ')':
			if len(inFrom) == 1 || expect || subquery {
				return nil, false
			}
			inFrom = inFrom[:len(inFrom)-1]
			i++
		case c == ',':
			if expect || subquery {
				return nil, false
			}
			if inFrom[len(inFrom)-1] {
				expect = true
			}
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(stmt) && (stmt[j] == '_' || stmt[j] == '.' || stmt[j] == '$' || stmt[j] >= 'a' && stmt[j] <= 'z' || stmt[j] >= 'A' && stmt[j] <= 'Z' || stmt[j] >= '0' && stmt[j] <= '9') {
				j++
			}
			word := strings.ToLower(stmt[i:j])
			i = j
			call := strings.HasPrefix(strings.TrimLeft(stmt[i:], " \t\r\n"), "(")
			if volatile[word] && (call || strings.HasPrefix(word, "current_") || strings.HasPrefix(word, "local")) {
				return nil, false
			}
			switch {
			case subquery:
				if word != "select" {
					return nil, false
				}
				subquery = false
			case expect:
				expect = false
				if call {
					if word != "json_each" { // a table-valued function of a column
						return nil, false
					}
					continue
				}
				ent, known := tables[word]
				if !known {
					return nil, false
				}
				seen[ent] = true
				continue
			case word == "from" || word == "join":
				expect = true
				inFrom[len(inFrom)-1] = true
				continue
			case fromEnds[word]:
				inFrom[len(inFrom)-1] = false
			}
			for part := range strings.SplitSeq(word, ".") {
				if ent, known := tables[part]; known {
					seen[ent] = true
				}
			}
		default:
			i++
		}
	}
	if expect || subquery || len(inFrom) != 1 {
		return nil, false
	}
	for e := range seen {
		deps = append(deps, e)
	}
	slices.Sort(deps)
	return deps, true
}
