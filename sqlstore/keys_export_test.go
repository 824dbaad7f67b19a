package sqlstore

import "testing"

// AddPurgeGuard holds back purges with reason while query returns a row, for the
// duration of a (serial) test: the legal-hold and inspection tables are not built yet.
func AddPurgeGuard(t testing.TB, reason, query string) {
	old := purgeGuards
	purgeGuards = append(append([]purgeGuard{}, old...), purgeGuard{reason: reason, query: query})
	t.Cleanup(func() { purgeGuards = old })
}
