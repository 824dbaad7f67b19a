package sqlstore_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"registrar/audit"
	"registrar/sqlstore"
	"registrar/vault"
)

// TestWritesRacingCloseAllReturn fires writes while the store closes: every one must
// return (committed or ErrClosed), none may hang.
func TestWritesRacingCloseAllReturn(t *testing.T) {
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: dir + "/r.db", Chain: "c", Vault: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if err := st.Audit(context.Background(), audit.Event{PrincipalKind: "system", PrincipalID: "t", Action: "x", Outcome: "ok"}); err == sqlstore.ErrClosed {
					return
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	st.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("writes racing Close did not all return within 20s")
	}
}
