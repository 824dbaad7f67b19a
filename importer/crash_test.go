package importer_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"registrar/gen"
	"registrar/internal/pgtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain stops the PostgreSQL server the tests started, if any, and removes the
// binary registrarBinary built.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// registrarBinary builds cmd/registrar once per test run.
func registrarBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "registrar-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "registrar")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/registrar").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build registrar: %v", buildErr)
	}
	return binPath
}

func run(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(os.Environ(), "USER=crash-test")
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestKillDuringImportLeavesTheStoreAsItWas starts `registrar import` of a generated
// package in a subprocess, kills it with SIGKILL at random moments (while it checks
// the package and while its transaction writes), and checks each time that the store
// holds exactly what it held before; then an import runs to the end, and a rerun
// changes nothing.
func TestKillDuringImportLeavesTheStoreAsItWas(t *testing.T) {
	forEachEngine(t, testKillDuringImportLeavesTheStoreAsItWas)
}

func testKillDuringImportLeavesTheStoreAsItWas(t *testing.T) {
	t.Parallel()
	bin := registrarBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>7))

	pkg := filepath.Join(t.TempDir(), "district")
	cfg := gen.Defaults(900)
	cfg.LineItemsPerClass = 3
	if _, err := gen.WriteCSV(context.Background(), pkg, cfg); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	db := dbRef{path: filepath.Join(data, "registrar.db")}
	if pgtest.EngineOf(t) == "postgres" {
		db = dbRef{url: pgtest.Shared(t).NewDatabase(t)}
	}
	// store gives the subcommands the data folder (keys) and, on PostgreSQL, the database.
	store := func(args ...string) []string {
		args = append(args, "--data", data)
		if db.url != "" {
			args = append(args, "--database-url", db.url)
		}
		return args
	}
	if _, stderr, code := run(t, bin, append(store("import"), "--progress", "none", golden("bulk"))...); code != 0 {
		t.Fatalf("first import: exit %d: %s", code, stderr)
	}
	before := digest(t, db)

	const trials = 5
	wrote, inTx := 0, 0
	for i := range trials {
		cmd := exec.Command(bin, append(store("import"), "--progress", "lines", pkg)...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The first trial is killed while the package is being checked; the others
		// at a random moment of the write transaction.
		writing := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stderr)
			closed := false
			for sc.Scan() {
				if !closed && strings.HasPrefix(sc.Text(), "import: writing") {
					close(writing)
					closed = true
				}
			}
		}()
		var delay time.Duration
		if i == 0 {
			delay = time.Duration(rng.IntN(200)) * time.Millisecond
		} else {
			select {
			case <-writing:
				wrote++
			case <-time.After(60 * time.Second):
				t.Fatal("the import never started writing")
			}
			delay = time.Duration(rng.IntN(1000)) * time.Millisecond
		}
		time.Sleep(delay)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if err == nil {
			t.Logf("trial %d: the import finished before the kill (%s after writing began); the store changed", i, delay)
			// The import was faster than the random moment: its effect is complete, so
			// start again from the state it left.
			before = digest(t, db)
			continue
		}
		if after := digest(t, db); after != before {
			// The kill came after the commit, before the process exited: then the import
			// must be whole. A rerun proves it: it finds every row already there.
			stdout, stderr, code := run(t, bin, append(store("import"), "--progress", "none", pkg)...)
			if code != 0 || !strings.Contains(stdout, " 0 created, 0 updated") {
				t.Fatalf("trial %d: killed %s in: the store changed, but not by a whole import: the rerun says\n%s%s", i, delay, stdout, stderr)
			}
			t.Logf("trial %d: killed %s in, after the commit: the import is whole", i, delay)
			before = digest(t, db)
			continue
		}
		if i > 0 {
			inTx++
		}
		t.Logf("trial %d: killed %s in: store unchanged", i, delay)
	}
	if wrote == 0 || inTx == 0 {
		t.Errorf("no kill landed in the write transaction (%d after writing began, %d with the store unchanged)", wrote, inTx)
	}

	stdout, stderr, code := run(t, bin, append(store("import"), "--progress", "none", pkg)...)
	if code != 0 {
		t.Fatalf("import after the kills: exit %d: %s", code, stderr)
	}
	done := digest(t, db)
	if done == before {
		t.Fatal("the import after the kills changed nothing")
	}
	stdout, stderr, code = run(t, bin, append(store("import"), "--progress", "none", pkg)...)
	if code != 0 || !strings.Contains(stdout, " 0 created, 0 updated") {
		t.Fatalf("rerun: exit %d: %s %s", code, stdout, stderr)
	}
	if digest(t, db) != done {
		t.Error("a rerun of the same package changed the store")
	}
	if out, stderr, code := run(t, bin, store("audit", "verify")...); code != 0 {
		t.Errorf("audit verify after the kills: exit %d: %s %s", code, out, stderr)
	}
}

func TestCLIReportsEveryProblemWithFileLineAndColumn(t *testing.T) {
	t.Parallel()
	bin := registrarBinary(t)
	data := t.TempDir()
	stdout, stderr, code := run(t, bin, "import", "--data", data, golden("errors/references"))
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, stderr)
	}
	want, _ := os.ReadFile(filepath.Join(golden("errors/references"), "expected.txt"))
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		if !strings.Contains(stderr, line+"\n") {
			t.Errorf("stderr lacks %q:\n%s", line, stderr)
		}
	}
	if !strings.Contains(stderr, "6 problems; nothing was written") || stdout != "" {
		t.Errorf("stdout %q, stderr:\n%s", stdout, stderr)
	}
	_, stderr, code = run(t, bin, "import", "--data", data, "--max-errors", "2", golden("errors/references"))
	if code != 1 || strings.Count(stderr, "enrollments.csv:2: ") != 1 || !strings.Contains(stderr, "... and 4 more problems (6 in all)") {
		t.Errorf("--max-errors 2: exit %d:\n%s", code, stderr)
	}

	stdout, stderr, code = run(t, bin, "import", golden("bulk"), "--data", data, "--progress", "none")
	if code != 0 || !strings.Contains(stdout, "users.csv") || !strings.Contains(stdout, "31 created") {
		t.Fatalf("import (flags after the path): exit %d:\n%s%s", code, stdout, stderr)
	}
	out := filepath.Join(t.TempDir(), "export.zip")
	if stdout, stderr, code := run(t, bin, "export", "--data", data, "--mode", "delta", out); code != 0 || !strings.Contains(stdout, "exported 46 rows") {
		t.Fatalf("export: exit %d: %s %s", code, stdout, stderr)
	}
	data2 := t.TempDir()
	if stdout, stderr, code := run(t, bin, "import", "--data", data2, "--progress", "none", out); code != 0 || !strings.Contains(stdout, "31 created") {
		t.Fatalf("import of the export: exit %d: %s %s", code, stdout, stderr)
	}
}
