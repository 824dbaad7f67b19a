package sqlstore_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWALIsCheckpointedBesideTheWriter: the writer never checkpoints (its commits do
// not carry the copy), so the database file grows only because the checkpointer
// copies the log back in the background.
func TestWALIsCheckpointedBesideTheWriter(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "registrar.db")
	o := engines[0].fresh(t)
	o.Path = path
	st := open(t, withChain(o, "a"))
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for i := 0; i < 300; i++ {
		if err := st.Audit(ctx, event(fmt.Sprint("read-", i), fmt.Sprintf("student-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.FlushAuditIndex(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("the database file stayed at %d bytes: nothing checkpointed the WAL", before)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
