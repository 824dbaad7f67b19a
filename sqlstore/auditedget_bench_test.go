package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"registrar/internal/testdistrict"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"
)

// BenchmarkAuditedGet is the store's part of GET /students/{id} under load, without
// HTTP: 64 callers each read one student of a generated 10,000-student district and
// make the read's audit event durable, with the indexer and the log-stream copy
// running as in `registrar serve`. Its reads pay what the commits cost them (SQLite
// drops a reader's page cache whenever another connection has committed), so it
// compares builds of the read and audit paths together, without the HTTP layer and
// the load generator (go test ./sqlstore -run '^$' -bench AuditedGet -benchtime
// 100000x; scripts/ab to alternate two builds); it is not a target.
func BenchmarkAuditedGet(b *testing.B) {
	ctx := context.Background()
	st, _ := testdistrict.Generated(b, 10000, sqlstore.Options{Path: filepath.Join(b.TempDir(), "r.db")})
	res, err := st.List(ctx, sqlstore.Query{Entity: records.User, Where: []records.Predicate{isStudent}, Page: query.Page{Limit: 1000}})
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for _, o := range res.Objects {
		ids = append(ids, o.ID())
	}
	fields := userFields()
	read := func(k int) error {
		id := ids[k%len(ids)]
		q := sqlstore.Query{Entity: records.User, Where: []records.Predicate{isStudent}}
		if _, err := st.Get(ctx, q, id); err != nil {
			return err
		}
		return st.Audit(ctx, lmsRead(id, fields, k))
	}
	for k := range len(ids) { // warm the readers and the statements
		if err := read(k); err != nil {
			b.Fatal(err)
		}
	}
	measureCallers(b, st, read, "cpu-µs/read", "reads/s")
}
