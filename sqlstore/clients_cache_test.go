package sqlstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"registrar/records"
	"registrar/sqlstore"
)

// TestRecentClientSeesRevocations: a revocation committed by this store reaches
// RecentClient at once; one committed by another process on the same database
// reaches it once the copy is a second old; Client always reads the row.
func TestRecentClientSeesRevocations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := eng.fresh(t)
		o.Vault = newVault(t)
		var clock atomic.Int64
		clock.Store(time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC).UnixNano())
		o.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
		a := open(t, withChain(o, "a"))
		other := open(t, withChain(o, "cli"))
		for _, id := range []string{"c1", "c2"} {
			write(t, a, func(ctx context.Context, tx *sqlstore.Tx) error {
				return tx.PutClient(ctx, records.Client{ID: id, Name: id, SecretHash: []byte("x"), Scopes: []string{}, Orgs: []string{"*"}, LegalBasis: "school-official"})
			})
		}
		recent := func(id string) bool { // revoked?
			t.Helper()
			c, err := a.RecentClient(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return c.RevokedAt != nil
		}
		if recent("c1") || recent("c2") {
			t.Fatal("a new client is revoked")
		}
		write(t, a, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, "c1") })
		if !recent("c1") {
			t.Fatal("a revocation by this store did not reach RecentClient at once")
		}
		write(t, other, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, "c2") })
		if c, err := a.Client(ctx, "c2"); err != nil || c.RevokedAt == nil {
			t.Fatalf("Client after another process revoked: %+v, %v", c, err)
		}
		clock.Add(int64(time.Second))
		if !recent("c2") {
			t.Fatal("a revocation by another process did not reach RecentClient after a second")
		}
	})
}
