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

// TestCommitDelayHoldsOnlyUnderLoad: after a batch of one, a request commits at once;
// after a batch of several, a request waits (up to the commit delay) for company, so
// a request arriving meanwhile shares its commit.
func TestCommitDelayHoldsOnlyUnderLoad(t *testing.T) {
	const delay = time.Second
	st := open(t, sqlstore.Options{Path: t.TempDir() + "/r.db", CommitDelay: delay})
	ctx := context.Background()
	ev := audit.Event{PrincipalKind: audit.KindSystem, PrincipalID: "t", Action: "x", Outcome: audit.OK}
	audit1 := func() {
		if err := st.Audit(ctx, ev); err != nil {
			t.Error(err)
		}
	}
	for range 2 {
		start := time.Now()
		audit1()
		if took := time.Since(start); took >= delay {
			t.Fatalf("a lone request after a lone batch took %v: held for the commit delay", took)
		}
	}
	// A batch of several: hold the committer in a write while three requests queue.
	entered, release := make(chan struct{}), make(chan struct{})
	held := make(chan error)
	go func() {
		held <- st.Write(ctx, func(context.Context, *sqlstore.Tx) error { close(entered); <-release; return nil })
	}()
	<-entered
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(audit1)
	}
	time.Sleep(200 * time.Millisecond) // they queue behind the held write
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// Under load now: a request waits for company.
	aDone := make(chan time.Time)
	go func() { audit1(); aDone <- time.Now() }()
	time.Sleep(100 * time.Millisecond)
	bStart := time.Now()
	audit1()
	if aAt := <-aDone; aAt.Before(bStart) {
		t.Fatalf("after a batch of several, a request committed %v before the next arrived: it did not wait for company", bStart.Sub(aAt))
	}
}
