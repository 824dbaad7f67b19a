// Command importbench measures `registrar import` against a raw baseline on one
// generated district, in one run:
//
//	go run ./bench/importbench                      # 100,000 students, rostering files
//	go run ./bench/importbench -students 10000 -gradebook
//
// It generates the package (registrar/gen), builds cmd/registrar, and then runs two
// child processes, each on a fresh data folder: `registrar import` of the package, and
// the raw baseline (rawload: the same rows, one prepared INSERT each, one transaction,
// no validation, encryption, change log or audit). It prints rows/s of both, their
// ratio, and the peak resident memory (VmHWM) of each child.
//
// With -postgres URL (a server the benchmark may create databases on, e.g.
// postgres://postgres@127.0.0.1:5432/postgres) it runs the same pair on PostgreSQL
// too, the baseline there being one COPY per file in one transaction.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"registrar/bench/importbench/rawload"
	"registrar/gen"
	"registrar/sqlstore"
	"registrar/vault"
)

func main() {
	students := flag.Int("students", 100000, "students in the generated district")
	gradebook := flag.Bool("gradebook", false, "include line items and results (about 4x the rows)")
	work := flag.String("dir", "", "working folder (default: a temporary one, removed at the end)")
	pgURL := flag.String("postgres", "", "also measure on PostgreSQL: a URL of a server where databases may be created")
	runs := flag.Int("runs", 1, "measure each pair this many times, alternating (the machine may be shared), and report the median")
	child := flag.String("child", "", "internal: run the raw baseline in this process")
	pkg := flag.String("pkg", "", "internal: the package folder")
	db := flag.String("db", "", "internal: the database file")
	flag.Parse()
	if *child != "" {
		if err := rawChild(*child, *pkg, *db); err != nil {
			fmt.Fprintln(os.Stderr, "raw baseline:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*students, *gradebook, *work, *pgURL, max(1, *runs)); err != nil {
		fmt.Fprintln(os.Stderr, "importbench:", err)
		os.Exit(1)
	}
}

func run(students int, gradebook bool, work, pgURL string, runs int) error {
	ctx := context.Background()
	if work == "" {
		d, err := os.MkdirTemp("", "importbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	cfg := gen.Defaults(students)
	if !gradebook {
		cfg.LineItemsPerClass = 0
	}
	pkg := filepath.Join(work, "package")
	t0 := time.Now()
	sum, err := gen.WriteCSV(ctx, pkg, cfg)
	if err != nil {
		return err
	}
	rows := 0
	for _, n := range sum.Counts {
		rows += n
	}
	fmt.Printf("package: %d students, %d rows in %d files (generated in %s)\n", students, rows, len(sum.Counts), time.Since(t0).Round(time.Millisecond))

	bin := filepath.Join(work, "registrar")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/registrar").CombinedOutput(); err != nil {
		return fmt.Errorf("build registrar (run from the module root): %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// Both sides start from an empty schema, created outside the timing: the data
	// folder's keys and migrations for the import, the same migrations for the baseline.
	fmt.Println("SQLite (baseline: prepared INSERTs):")
	var ratios []float64
	for i := range runs {
		dir := filepath.Join(work, fmt.Sprintf("sqlite-%d", i))
		if _, err := measure(exec.Command(bin, "migrate", "--data", filepath.Join(dir, "data"), "--log-level", "error")); err != nil {
			return fmt.Errorf("registrar migrate: %w", err)
		}
		imp, err := measure(exec.Command(bin, "import", "--data", filepath.Join(dir, "data"), "--progress", "none", "--log-level", "error", pkg))
		if err != nil {
			return fmt.Errorf("registrar import: %w", err)
		}
		rawDB := filepath.Join(dir, "raw", "registrar.db")
		if err := schema(ctx, sqlstore.Options{Path: rawDB}, filepath.Dir(rawDB)); err != nil {
			return err
		}
		raw, err := measure(exec.Command(self, "-child", "sqlite", "-pkg", pkg, "-db", rawDB))
		if err != nil {
			return fmt.Errorf("raw baseline: %w", err)
		}
		ratios = append(ratios, report(rows, imp, raw))
		os.RemoveAll(dir)
	}
	summary(ratios)
	if pgURL == "" {
		return nil
	}

	fmt.Println("PostgreSQL (baseline: one COPY per file):")
	ratios = nil
	for i := range runs {
		dir := filepath.Join(work, fmt.Sprintf("postgres-%d", i))
		impURL, dropImp, err := createDatabase(ctx, pgURL)
		if err != nil {
			return err
		}
		defer dropImp()
		if _, err := measure(exec.Command(bin, "migrate", "--data", filepath.Join(dir, "data"), "--database-url", impURL, "--log-level", "error")); err != nil {
			return fmt.Errorf("registrar migrate (PostgreSQL): %w", err)
		}
		imp, err := measure(exec.Command(bin, "import", "--data", filepath.Join(dir, "data"), "--database-url", impURL, "--progress", "none", "--log-level", "error", pkg))
		if err != nil {
			return fmt.Errorf("registrar import (PostgreSQL): %w", err)
		}
		rawURL, dropRaw, err := createDatabase(ctx, pgURL)
		if err != nil {
			return err
		}
		defer dropRaw()
		if err := schema(ctx, sqlstore.Options{URL: rawURL}, filepath.Join(dir, "raw")); err != nil {
			return err
		}
		raw, err := measure(exec.Command(self, "-child", "postgres", "-pkg", pkg, "-db", rawURL))
		if err != nil {
			return fmt.Errorf("raw baseline (PostgreSQL): %w", err)
		}
		ratios = append(ratios, report(rows, imp, raw))
		os.RemoveAll(dir)
	}
	summary(ratios)
	return nil
}

func summary(ratios []float64) {
	if len(ratios) < 2 {
		return
	}
	s := append([]float64(nil), ratios...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	fmt.Printf("  median ratio over %d runs: %.2f (min %.2f, max %.2f)\n", len(s), med, s[0], s[len(s)-1])
}

func report(rows int, imp, raw result) float64 {
	ir, rr := float64(rows)/imp.wall.Seconds(), float64(rows)/raw.wall.Seconds()
	fmt.Printf("  registrar import: %8.0f rows/s  (%s; CPU %s; peak RSS %d MiB)\n", ir, imp.wall.Round(time.Millisecond), imp.cpu.Round(time.Millisecond), imp.maxRSS>>10)
	fmt.Printf("  raw baseline:     %8.0f rows/s  (%s; CPU %s; peak RSS %d MiB)\n", rr, raw.wall.Round(time.Millisecond), raw.cpu.Round(time.Millisecond), raw.maxRSS>>10)
	fmt.Printf("  ratio import/raw: %.2f   (target >= 0.50; peak RSS target < 256 MiB)\n", ir/rr)
	return ir / rr
}

// createDatabase makes a fresh database on the server at admin and returns its URL
// and a function that drops it.
func createDatabase(ctx context.Context, admin string) (string, func(), error) {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	name := "importbench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") // best effort: a benchmark database
	}
	return u.String(), drop, nil
}

type result struct {
	wall   time.Duration
	cpu    time.Duration // user + system, both cores
	maxRSS int64         // KiB: the child's VmHWM, as getrusage reports it
}

func measure(cmd *exec.Cmd) (result, error) {
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	if err != nil {
		return result{}, fmt.Errorf("%v\n%s", err, out)
	}
	r := result{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
	}
	// The raw child also reports VmHWM itself; prefer it when present.
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM-KiB "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				r.maxRSS = n
			}
		}
	}
	return r, nil
}

// schema creates registrar's tables in the empty database o names.
func schema(ctx context.Context, o sqlstore.Options, dir string) error {
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		return err
	}
	o.Chain, o.Vault, o.Logger = "raw", v, slog.New(slog.DiscardHandler)
	st, err := sqlstore.Open(ctx, o)
	if err != nil {
		return err
	}
	return st.Close()
}

func rawChild(engine, pkg, db string) error {
	load := rawload.Load
	if engine == "postgres" {
		load = rawload.LoadPostgres
	}
	n, err := load(context.Background(), pkg, db)
	if err != nil {
		return err
	}
	fmt.Printf("rows %d\n", n)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // not Linux: the parent uses getrusage
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Printf("VmHWM-KiB %s\n", strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return nil
}
