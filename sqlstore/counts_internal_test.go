package sqlstore

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// CountCacheStats reports the count cache's hits, misses and entries (all 0 on
// PostgreSQL, where it is off), for the tests of package sqlstore_test.
func (s *Store) CountCacheStats() (hits, misses int64, entries int) {
	if s.counts == nil {
		return 0, 0, 0
	}
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return s.counts.hits.Load(), s.counts.misses.Load(), len(s.counts.m)
}

func TestCountDeps(t *testing.T) {
	t.Parallel()
	const users = "SELECT COUNT(*) FROM users t WHERE "
	cases := []struct {
		name string
		stmt string
		want []string // nil: not cacheable
	}{
		{"an entity's table is that entity", "SELECT COUNT(*) FROM users t", []string{"user"}},
		{"user_roles is the user's", users + "t.sourced_id IN (SELECT r.user_id FROM user_roles r WHERE r.org_id IN (?, ?))", []string{"user"}},
		{"a subquery's tables count", "SELECT COUNT(*) FROM enrollments t WHERE t.class_id IN (SELECT c.sourced_id FROM classes c WHERE c.school_id IN (?))", []string{"class", "enrollment"}},
		{"a JOIN's tables count", users + "EXISTS (SELECT 1 FROM line_items l JOIN enrollments e ON e.class_id = l.class_id WHERE e.user_id = t.sourced_id)", []string{"enrollment", "lineItem", "user"}},
		{"a comma join's tables count", "SELECT COUNT(*) FROM enrollments e, classes c WHERE c.sourced_id = e.class_id", []string{"class", "enrollment"}},
		{"a link table is its owner's", "SELECT COUNT(*) FROM classes t WHERE t.sourced_id IN (SELECT l.owner_id FROM class_terms l WHERE l.ref_id = ?)", []string{"class"}},
		{"caseloads and dependents are logged under their own names", users + "t.sourced_id IN (SELECT c.student_id FROM caseloads c) OR t.sourced_id IN (SELECT d.student_id FROM dependents d)", []string{"caseload", "dependent", "user"}},
		{"json_each is a function of a column, not a table", users + "EXISTS (SELECT 1 FROM json_each(t.agents) WHERE json_each.value = ?)", []string{"user"}},
		{"a subquery in FROM is read through", "SELECT COUNT(*) FROM (SELECT u.sourced_id FROM users u) x", []string{"user"}},
		{"words in string literals are not tables", users + "t.status = 'x FROM subject_keys, it''s (' AND t.role <> ')'", []string{"user"}},
		{"a column named like a table adds that table's entity", "SELECT COUNT(*) FROM courses t WHERE t.resources IS NOT NULL", []string{"course", "resource"}},
		{"PostgreSQL's casts and containment read no table", "SELECT COUNT(*) FROM users t WHERE COALESCE((t.agents)::jsonb @> jsonb_build_array($1::text), false)", []string{"user"}},

		{"a table no entity owns is not cached", "SELECT COUNT(*) FROM users t JOIN subject_keys k ON k.subject_id = t.sourced_id", nil},
		{"the change log itself is not cached", "SELECT COUNT(*) FROM changes", nil},
		{"a comma-joined unknown table is not cached", "SELECT COUNT(*) FROM users t, clients c", nil},
		{"a comma after a JOIN's ON is still the FROM list", "SELECT COUNT(*) FROM users t JOIN user_roles r ON r.user_id = t.sourced_id, subject_keys k", nil},
		{"a parenthesized join is not cached", "SELECT COUNT(*) FROM (users t JOIN subject_keys k ON 1)", nil},
		{"a common table expression is not cached", "WITH v AS (SELECT sourced_id FROM users) SELECT COUNT(*) FROM v", nil},
		{"a schema-qualified table is not cached", "SELECT COUNT(*) FROM main.users t", nil},
		{"a table-valued function other than json_each is not cached", "SELECT COUNT(*) FROM users t WHERE EXISTS (SELECT 1 FROM pragma_table_info('users'))", nil},
		{"today from the clock is not cached", users + "t.date_last_modified < date('now')", nil},
		{"CURRENT_DATE is not cached", users + "t.date_last_modified < CURRENT_DATE", nil},
		{"random() is not cached", users + "random() > 0", nil},
		{"a comment is not cached", users + "1 = 1 -- FROM subject_keys", nil},
		{"a quoted identifier is not cached", `SELECT COUNT(*) FROM "users" t`, nil},
		{"an unterminated literal is not cached", users + "t.status = 'active", nil},
		{"unbalanced parentheses are not cached", users + "(1 = 1", nil},
		{"two statements are not cached", "SELECT COUNT(*) FROM users; SELECT 1 FROM subject_keys", nil},
		{"FROM with nothing after it is not cached", "SELECT COUNT(*) FROM", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := countDeps(c.stmt)
			switch {
			case c.want == nil && ok:
				t.Errorf("countDeps(%q) = %v, true; want it refused", c.stmt, got)
			case c.want != nil && !ok:
				t.Errorf("countDeps(%q) refused; want %v", c.stmt, c.want)
			case !slices.Equal(got, c.want):
				t.Errorf("countDeps(%q) = %v, want %v", c.stmt, got, c.want)
			}
		})
	}
}

func TestCountKeysNeverCollide(t *testing.T) {
	t.Parallel()
	pairs := []struct {
		stmt string
		args []any
	}{
		{"q", []any{"ab"}},
		{"q", []any{"a", "b"}},
		{"q", []any{"a", "b", nil}},
		{"q", []any{"1"}},
		{"q", []any{1}},
		{"q", []any{int64(1)}},
		{"q", []any{1.0}},
		{"q", []any{[]byte("1")}},
		{"q", []any{true}},
		{"q", []any{"true"}},
		{"qs1:a", nil},
		{"q", []any{"s1:a"}},
		{"q s", []any{"a"}},
		{"q", nil},
	}
	seen := map[string]string{}
	for _, p := range pairs {
		k, ok := countKey(p.stmt, p.args)
		if !ok {
			t.Fatalf("countKey(%q, %v) refused", p.stmt, p.args)
		}
		desc := fmt.Sprintf("%q %#v", p.stmt, p.args)
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share the key %q", desc, other, k)
		}
		seen[k] = desc
	}
	if _, ok := countKey("q", []any{struct{}{}}); ok {
		t.Error("an argument of an unknown type was given a key")
	}
}

func TestCountCacheIsBounded(t *testing.T) {
	t.Parallel()
	t.Run("by entries, least recently used out first", func(t *testing.T) {
		c := newCountCache(3, 1<<20)
		for i := range 3 {
			c.store(fmt.Sprint("k", i), []string{"user"}, []int64{1}, i)
		}
		c.lookup("k0") // k1 is now the least recently used
		c.store("k3", []string{"user"}, []int64{1}, 3)
		if len(c.m) != 3 || c.lru.Len() != 3 {
			t.Fatalf("%d entries (%d in the list), want 3", len(c.m), c.lru.Len())
		}
		if _, ok := c.lookup("k1"); ok {
			t.Error("k1, the least recently used, was kept")
		}
		for _, k := range []string{"k0", "k2", "k3"} {
			if _, ok := c.lookup(k); !ok {
				t.Errorf("%s was evicted", k)
			}
		}
	})
	t.Run("by bytes", func(t *testing.T) {
		c := newCountCache(1000, 4000)
		for i := range 20 {
			c.store(fmt.Sprintf("%04d%s", i, strings.Repeat("x", 1000)), []string{"user"}, []int64{1}, i)
			if c.bytes > 4000 {
				t.Fatalf("after %d stores: %d bytes, bound 4000", i+1, c.bytes)
			}
		}
		if len(c.m) == 0 || len(c.m) > 3 {
			t.Errorf("%d entries of about 1.1 KB under 4000 bytes", len(c.m))
		}
	})
	t.Run("a key too large is not kept", func(t *testing.T) {
		c := newCountCache(10, 1<<30)
		c.store(strings.Repeat("x", countKeyBytes+1), []string{"user"}, []int64{1}, 1)
		if len(c.m) != 0 {
			t.Error("an oversized key was kept")
		}
	})
	t.Run("a second store of a key replaces its count", func(t *testing.T) {
		c := newCountCache(10, 1<<20)
		c.store("k", []string{"user"}, []int64{1}, 1)
		c.store("k", []string{"user"}, []int64{2}, 5)
		e, ok := c.lookup("k")
		if !ok || e.n != 5 || e.gens[0] != 2 || len(c.m) != 1 || c.lru.Len() != 1 {
			t.Errorf("got %+v (%v), %d entries; want n 5 at generation 2, one entry", e, ok, len(c.m))
		}
	})
}
