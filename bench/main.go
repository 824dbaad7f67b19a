// Command bench reproduces every performance figure of BENCHMARKS.md on this machine:
//
//	go run ./bench            full run (1,000, 10,000 and 100,000 students; tens of minutes)
//	go run ./bench --quick    routine run (10,000 students; under five minutes)
//
// It builds the registrar binary, generates synthetic districts with the generator,
// imports them, starts the real server on loopback and measures it over real HTTP with
// the load generator (bench/load), each figure beside its baseline from the same run:
// per-endpoint throughput beside a bare net/http handler running the same SQL on the
// same database file, and the costs of authorization, encryption and audit from the
// packages' own `go test -bench` pairs. It then rewrites BENCHMARKS.md.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite"

	"registrar/bench/load"
)

type options struct {
	parts    map[string]bool
	quick    bool
	out      string
	dur      time.Duration
	workers  int
	sizes    []int
	keepTemp bool
	bareBin  string // the baseline's server (bench/bare/cmd/bare), built by run
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "routine run: one size (10,000 students), short measurements")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "file to rewrite with the figures")
	flag.BoolVar(&o.keepTemp, "keep", false, "keep the temporary data directories")
	sizes := flag.String("sizes", "", "comma-separated district sizes in students (default: 1000,10000,100000; --quick: 10000)")
	flag.DurationVar(&o.dur, "duration", 0, "length of each measurement (default 20s; --quick 8s)")
	flag.IntVar(&o.workers, "workers", 64, "concurrent clients of the closed-loop figures (the mixed workload uses twice as many)")
	parts := flag.String("parts", "http,go,resilience", "which parts to run: http (endpoints, mixed workload, sizes), go (package benchmark pairs), resilience")
	flag.Parse()
	o.parts = map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		o.parts[strings.TrimSpace(p)] = true
	}
	o.sizes = []int{1000, 10000, 100000}
	if o.dur == 0 {
		o.dur = 20 * time.Second
		if o.quick {
			o.dur = 8 * time.Second
		}
	}
	if o.quick {
		o.sizes = []int{10000}
	}
	if *sizes != "" {
		o.sizes = nil
		for _, f := range strings.Split(*sizes, ",") {
			var n int
			if _, err := fmt.Sscan(f, &n); err != nil || n < 100 {
				fmt.Fprintln(os.Stderr, "bench: --sizes wants numbers of at least 100")
				os.Exit(2)
			}
			o.sizes = append(o.sizes, n)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// report accumulates the figures and writes them as markdown.
type report struct {
	command  string
	sections []string
}

func (r *report) add(title, body string) {
	r.sections = append(r.sections, "## "+title+"\n\n"+body)
	fmt.Println("\n## " + title + "\n\n" + body)
}

func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "registrar-bench-")
	if err != nil {
		return err
	}
	if !o.keepTemp {
		defer os.RemoveAll(tmp)
	}
	bin, bareBin := filepath.Join(tmp, "registrar"), filepath.Join(tmp, "bare")
	for _, b := range [][2]string{{bin, "./cmd/registrar"}, {bareBin, "./bench/bare/cmd/bare"}} {
		fmt.Println("building", b[0])
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	o.bareBin = bareBin
	cmd := "go run ./bench"
	if o.quick {
		cmd += " --quick"
	}
	rep := &report{command: cmd}
	var scaling []string
	var primary *district
	for _, n := range o.sizes {
		d, err := prepare(ctx, bin, tmp, n)
		if err != nil {
			return err
		}
		detail := n == 10000 || len(o.sizes) == 1
		if detail {
			primary = d
		}
		if !o.parts["http"] {
			continue
		}
		row, err := measureSize(ctx, o, bin, d, rep, detail)
		if err != nil {
			return err
		}
		scaling = append(scaling, row)
	}
	if o.parts["http"] {
		rep.add("How cost grows with size", "Import and per-endpoint throughput at each size, from the same run (a figure that falls faster than the size grows would show something worse than linear).\n\n"+
			"| students | rows imported | import rows/s | import peak RSS | GET /students/{id} req/s | GET /classes/{id}/students req/s |\n|---:|---:|---:|---:|---:|---:|\n"+strings.Join(scaling, "\n")+"\n")
	}
	if o.parts["go"] {
		if err := goBenchmarks(ctx, o, rep); err != nil {
			return err
		}
	}
	var rerr error
	if o.parts["resilience"] {
		rerr = resilience(ctx, o, bin, primary, rep)
	}
	if err := rep.write(o.out); err != nil {
		return err
	}
	return rerr
}

// district is one generated, imported data dir.
type district struct {
	n         int
	dir       string
	rows      int
	importDur time.Duration
	importRSS int64 // peak RSS of the import process, bytes
	env       []string
}

func runCmd(ctx context.Context, env []string, bin string, args ...string) (string, error) {
	out, _, err := runCmdRSS(ctx, env, bin, args...)
	return out, err
}

// runCmdRSS runs the command and returns its output and its peak resident set size
// in bytes (the kernel's ru_maxrss of the child).
func runCmdRSS(ctx context.Context, env []string, bin string, args ...string) (string, int64, error) {
	c := exec.CommandContext(ctx, bin, args...)
	c.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return string(out), 0, fmt.Errorf("registrar %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var rss int64
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10 // KiB on Linux
	}
	return string(out), rss, nil
}

var rowsRe = regexp.MustCompile(`(?:imported|checked) (\d+) rows`)

func prepare(ctx context.Context, bin, tmp string, n int) (*district, error) {
	d := &district{n: n, dir: filepath.Join(tmp, fmt.Sprintf("data-%d", n))}
	d.env = []string{"REGISTRAR_DATA=" + d.dir, "REGISTRAR_LOG_LEVEL=error"}
	pkg := filepath.Join(tmp, fmt.Sprintf("pkg-%d", n))
	fmt.Printf("generating %d students\n", n)
	if _, err := runCmd(ctx, d.env, bin, "generate", "--out", pkg, "--students", fmt.Sprint(n), "--seed", "1"); err != nil {
		return nil, err
	}
	fmt.Printf("importing %d students\n", n)
	start := time.Now()
	out, rss, err := runCmdRSS(ctx, d.env, bin, "import", pkg)
	if err != nil {
		return nil, err
	}
	d.importDur, d.importRSS = time.Since(start), rss
	if m := rowsRe.FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &d.rows)
	}
	os.RemoveAll(pkg)
	return d, nil
}

// server is a running registrar serve subprocess.
type server struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

func startServer(ctx context.Context, bin string, env []string) (*server, error) {
	return startProcess(ctx, bin, []string{"serve", "--addr", "127.0.0.1:0"}, env)
}

// startProcess starts a server (registrar serve, or the baseline's bare) and waits for
// the address it prints.
func startProcess(ctx context.Context, bin string, args, env []string) (*server, error) {
	c := exec.CommandContext(ctx, bin, args...)
	c.Env = append(os.Environ(), env...)
	// Stderr (registrar's JSON log: a line per request and per audit event) goes to
	// the null device, written by the server's own process: a pipe would be drained by
	// a goroutine of the bench process, on the load generator's cores.
	c.Stderr = nil
	stdout, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: c, done: make(chan error, 1)}
	sc := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`listening on (http://\S+)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			s.base = m[1]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout); s.done <- c.Wait() }()
	if s.base == "" {
		c.Process.Kill()
		return nil, fmt.Errorf("%s %s printed no address", filepath.Base(bin), strings.Join(args, " "))
	}
	return s, nil
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
	}
}

func token(ctx context.Context, base, id, secret string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`"access_token":"([^"]+)"`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("token: %s", b)
	}
	return string(m[1]), nil
}

// sample holds ids drawn from the database for building requests.
type sample struct {
	students, classes []string
	teachers          []teacher
	parents           []parent
}

// parent is a guardian and one young child of theirs.
type parent struct{ id, child string }

type teacher struct {
	id, class, lineItem string
	students            []string
}

func drawSample(ctx context.Context, dbPath string) (*sample, error) {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	s := &sample{}
	col := func(q string, args ...any) ([]string, error) {
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, rows.Err()
	}
	if s.students, err = col("SELECT user_id FROM user_roles WHERE role = 'student' ORDER BY user_id LIMIT 500"); err != nil {
		return nil, err
	}
	if s.classes, err = col("SELECT class_id FROM enrollments WHERE role = 'student' GROUP BY class_id ORDER BY class_id LIMIT 500"); err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT e.user_id, e.class_id, MIN(l.sourced_id) FROM enrollments e JOIN line_items l ON l.class_id = e.class_id
		WHERE e.role = 'teacher' AND e.status = 'active' GROUP BY e.user_id ORDER BY e.user_id LIMIT 20`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var t teacher
		if err := rows.Scan(&t.id, &t.class, &t.lineItem); err != nil {
			rows.Close()
			return nil, err
		}
		s.teachers = append(s.teachers, t)
	}
	rows.Close()
	for i := range s.teachers {
		if s.teachers[i].students, err = col("SELECT user_id FROM enrollments WHERE class_id = ? AND role = 'student' ORDER BY user_id", s.teachers[i].class); err != nil {
			return nil, err
		}
	}
	// Guardians of young children (grade 05 or below: far from eligibility).
	prow, err := db.QueryContext(ctx, `SELECT a.owner_id, a.ref_id FROM user_agents a JOIN users c ON c.sourced_id = a.ref_id
		JOIN user_roles g ON g.user_id = a.owner_id AND g.role IN ('parent', 'guardian')
		WHERE c.grades IN ('["KG"]', '["01"]', '["02"]', '["03"]', '["04"]', '["05"]') GROUP BY a.owner_id ORDER BY a.owner_id LIMIT 20`)
	if err != nil {
		return nil, err
	}
	for prow.Next() {
		var p parent
		if err := prow.Scan(&p.id, &p.child); err != nil {
			prow.Close()
			return nil, err
		}
		s.parents = append(s.parents, p)
	}
	prow.Close()
	if len(s.students) == 0 || len(s.classes) == 0 || len(s.teachers) == 0 {
		return nil, fmt.Errorf("the generated district has no students, classes or teachers with line items")
	}
	return s, nil
}

const (
	rost = "/ims/oneroster/rostering/v1p2"
	grad = "/ims/oneroster/gradebook/v1p2"
)

func measureSize(ctx context.Context, o options, bin string, d *district, rep *report, detail bool) (string, error) {
	newClient := func(name, scope string) (id, secret string, err error) {
		out, err := runCmd(ctx, d.env, bin, "clients", "create", "--name", name, "--scope", scope, "--json")
		if err != nil {
			return "", "", err
		}
		i := regexp.MustCompile(`"client_id":"([^"]+)"`).FindStringSubmatch(out)
		s := regexp.MustCompile(`"client_secret":"([^"]+)"`).FindStringSubmatch(out)
		if i == nil || s == nil {
			return "", "", fmt.Errorf("clients create printed %q", out)
		}
		return i[1], s[1], nil
	}
	id, sec, err := newClient("bench", "roster.readonly roster-demographics.readonly gradebook.readonly gradebook.createput")
	if err != nil {
		return "", err
	}
	adminID, adminSec, err := newClient("bench admin", "admin")
	if err != nil {
		return "", err
	}
	smp, err := drawSample(ctx, filepath.Join(d.dir, "registrar.db"))
	if err != nil {
		return "", err
	}
	var teacherTokens []string
	for _, t := range smp.teachers {
		tok, err := runCmd(ctx, d.env, bin, "tokens", "issue", "--user", t.id, "--ttl", "2h")
		if err != nil {
			return "", err
		}
		teacherTokens = append(teacherTokens, strings.TrimSpace(tok))
	}
	var parentTokens []string
	for _, p := range smp.parents {
		tok, err := runCmd(ctx, d.env, bin, "tokens", "issue", "--user", p.id, "--ttl", "2h")
		if err != nil {
			return "", err
		}
		parentTokens = append(parentTokens, strings.TrimSpace(tok))
	}
	srv, err := startServer(ctx, bin, d.env)
	if err != nil {
		return "", err
	}
	defer srv.stop()
	tok, err := token(ctx, srv.base, id, sec)
	if err != nil {
		return "", err
	}
	adminTok, err := token(ctx, srv.base, adminID, adminSec)
	if err != nil {
		return "", err
	}
	// The baseline is a process of its own, as registrar is: in the bench process it
	// would share the load generator's runtime, where registrar's requests cross into
	// another process (in-process it answered 18% more requests: BenchmarkBaselineTopology
	// in bench/bare, docs/architecture.md, session 9).
	base, err := startProcess(ctx, o.bareBin, []string{filepath.Join(d.dir, "registrar.db")}, nil)
	if err != nil {
		return "", err
	}
	defer base.stop()

	pick := func(ids []string, prefix, suffix string) func(*rand.Rand) (*http.Request, error) {
		return func(r *rand.Rand) (*http.Request, error) { return authGet(prefix+ids[r.IntN(len(ids))]+suffix, tok) }
	}
	// Each side keeps its connections from turn to turn, as a client of either would.
	bareClient, regClient := load.NewClient(max(o.workers, 256)), load.NewClient(max(o.workers, 256))
	turn := func(name string, client *http.Client, mk func(*rand.Rand) (*http.Request, error), seed uint64) load.Result {
		return load.Run(ctx, load.Options{Mix: load.Mix{{Name: name, Weight: 1, Make: mk}}, Duration: o.dur / endpointTurns, Workers: o.workers, Seed: seed, Keep: true, Client: client})
	}
	// flushIndex runs the server's indexer up to the trail's head (GET /v1/audit
	// filtered by a student waits for it), so that the student index of a turn's reads
	// is written, and timed, in that turn and not in the baseline's after it.
	flushIndex := func() error {
		req, err := authGet(srv.base+"/v1/audit?limit=1&student="+url.QueryEscape(smp.students[0]), adminTok)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("flush the student index: GET /v1/audit answered %s", resp.Status)
		}
		return nil
	}
	fmt.Printf("measuring %d students\n", d.n)
	type pair struct {
		name      string
		reg, bare load.Result
	}
	var pairs []pair
	for _, ep := range []struct{ name, regPrefix, barePrefix, suffix string }{
		{"GET /students/{id}", srv.base + rost + "/students/", base.base + "/students/", ""},
		{"GET /classes/{id}/students", srv.base + rost + "/classes/", base.base + "/classes/", "/students"},
	} {
		ids := smp.students
		if strings.Contains(ep.name, "classes") {
			ids = smp.classes
		}
		// The two take turns, so that the machine's drift in speed falls on both alike
		// (as in BenchmarkEndpoints); each registrar turn ends once the student index of
		// its reads is written, and that time is counted in the turn.
		var bareTurns, regTurns []load.Result
		for t := range endpointTurns {
			bareTurns = append(bareTurns, turn("baseline "+ep.name, bareClient, pick(ids, ep.barePrefix, ep.suffix), uint64(t)+1))
			start := time.Now()
			r := turn("registrar "+ep.name, regClient, pick(ids, ep.regPrefix, ep.suffix), uint64(t)+1)
			if err := flushIndex(); err != nil {
				return "", err
			}
			r.Duration = time.Since(start)
			regTurns = append(regTurns, r)
		}
		bare, reg := load.Merge(bareTurns...), load.Merge(regTurns...)
		fmt.Printf("  %-42s %s\n  %-42s %s\n", "baseline "+ep.name, bare, "registrar "+ep.name, reg)
		pairs = append(pairs, pair{ep.name, reg, bare})
	}
	if detail {
		var b strings.Builder
		fmt.Fprintf(&b, "District of %d students (%d rows). Closed loop, %d workers, %s per figure in %d alternated turns of each side, over HTTP on loopback; each registrar turn ends once the student index of its reads is written (and is timed to then). "+
			"The baseline is a bare `net/http` handler (bench/bare) running the same SQL on the same SQLite file, with no authentication, authorization, decryption or audit, in a process of its own as registrar is (`bench/bare/cmd/bare`; before session 9 it ran in the bench process, beside the load generator).\n\n", d.n, d.rows, o.workers, o.dur, endpointTurns)
		b.WriteString("| endpoint | registrar req/s | p99 | baseline req/s | p99 | ratio |\n|---|---:|---:|---:|---:|---:|\n")
		for _, p := range pairs {
			fmt.Fprintf(&b, "| %s | %.0f | %s | %.0f | %s | %.2f |\n", p.name, p.reg.Throughput, msf(p.reg.P99), p.bare.Throughput, msf(p.bare.P99), p.reg.Throughput/p.bare.Throughput)
		}
		b.WriteString("\nTarget (issue 2): at least half the baseline's throughput (ratio >= 0.50).\n")
		rep.add("Per-endpoint throughput beside a bare handler", b.String())

		mixed, sustained, err := mixedWorkload(ctx, o, srv.base, tok, smp, teacherTokens, parentTokens)
		if err != nil {
			return "", err
		}
		rep.add("Mixed workload", mixed+sustained)
	}
	row := fmt.Sprintf("| %d | %d | %.0f | %d MiB | %.0f | %.0f |", d.n, d.rows, float64(d.rows)/d.importDur.Seconds(), d.importRSS>>20, pairs[0].reg.Throughput, pairs[1].reg.Throughput)
	return row, nil
}

// endpointTurns is how many turns registrar and the baseline take in one figure.
const endpointTurns = 10

func msf(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// mixedWorkload: LMS roster syncs paging through classes and enrollments, teachers
// reading rosters and posting results, parents reading their child's record. Closed loop for the maximum, then open loop at
// rising rates for the highest one whose p99 stays under 50 ms.
func mixedWorkload(ctx context.Context, o options, base, lmsTok string, smp *sample, teacherTokens, parentTokens []string) (string, string, error) {
	mix := load.Mix{
		{Name: "lms: page classes", Weight: 15, Make: func(r *rand.Rand) (*http.Request, error) {
			return authGet(fmt.Sprintf("%s%s/classes?limit=100&offset=%d", base, rost, r.IntN(len(smp.classes))), lmsTok)
		}},
		{Name: "lms: page enrollments", Weight: 15, Make: func(r *rand.Rand) (*http.Request, error) {
			return authGet(fmt.Sprintf("%s%s/enrollments?limit=100&offset=%d", base, rost, r.IntN(5000)), lmsTok)
		}},
		{Name: "lms: students of a class", Weight: 10, Make: func(r *rand.Rand) (*http.Request, error) {
			return authGet(base+rost+"/classes/"+smp.classes[r.IntN(len(smp.classes))]+"/students", lmsTok)
		}},
		{Name: "teacher: my classes", Weight: 15, Make: func(r *rand.Rand) (*http.Request, error) {
			i := r.IntN(len(smp.teachers))
			return authGet(base+rost+"/teachers/"+smp.teachers[i].id+"/classes", teacherTokens[i])
		}},
		{Name: "teacher: class roster", Weight: 20, Make: func(r *rand.Rand) (*http.Request, error) {
			i := r.IntN(len(smp.teachers))
			return authGet(base+rost+"/classes/"+smp.teachers[i].class+"/students", teacherTokens[i])
		}},
		{Name: "teacher: class results", Weight: 15, Make: func(r *rand.Rand) (*http.Request, error) {
			i := r.IntN(len(smp.teachers))
			return authGet(base+grad+"/classes/"+smp.teachers[i].class+"/results", teacherTokens[i])
		}},
		{Name: "parent: my child's record", Weight: 5, Make: func(r *rand.Rand) (*http.Request, error) {
			if len(smp.parents) == 0 {
				return authGet(base+rost+"/classes/"+smp.classes[0], lmsTok)
			}
			i := r.IntN(len(smp.parents))
			return authGet(base+rost+"/students/"+smp.parents[i].child, parentTokens[i])
		}},
		{Name: "parent: my child's results", Weight: 5, Make: func(r *rand.Rand) (*http.Request, error) {
			if len(smp.parents) == 0 {
				return authGet(base+rost+"/classes/"+smp.classes[0], lmsTok)
			}
			i := r.IntN(len(smp.parents))
			return authGet(base+grad+"/results?filter="+url.QueryEscape("student.sourcedId='"+smp.parents[i].child+"'"), parentTokens[i])
		}},
		{Name: "teacher: post a result", Weight: 10, Make: func(r *rand.Rand) (*http.Request, error) {
			i := r.IntN(len(smp.teachers))
			t := smp.teachers[i]
			if len(t.students) == 0 {
				return authGet(base+rost+"/classes/"+t.class, teacherTokens[i])
			}
			id := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), r.Uint32())
			body := fmt.Sprintf(`{"result":{"lineItem":{"sourcedId":%q},"student":{"sourcedId":%q},"scoreStatus":"fully graded","score":%d,"scoreDate":"2026-10-01"}}`,
				t.lineItem, t.students[r.IntN(len(t.students))], r.IntN(100))
			return load.JSON("PUT", base+grad+"/results/"+id, teacherTokens[i], body)
		}},
	}
	closed := load.Run(ctx, load.Options{Mix: mix, Duration: o.dur, Workers: o.workers * 2, Seed: 2})
	fmt.Println("  mixed closed loop:", closed)
	var b strings.Builder
	fmt.Fprintf(&b, "Closed loop, %d workers, %s: **%.0f requests/s**, p50 %s, p99 %s, %d errors.\n\n", o.workers*2, o.dur, closed.Throughput, msf(closed.P50), msf(closed.P99), closed.Errors)
	b.WriteString("| request | share | p50 | p99 | errors |\n|---|---:|---:|---:|---:|\n")
	totalWeight := 0
	for _, m := range mix {
		totalWeight += m.Weight
	}
	for _, m := range mix {
		nr := closed.ByName[m.Name]
		if nr == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d%% | %s | %s | %d |\n", m.Name, m.Weight*100/totalWeight, msf(nr.P50), msf(nr.P99), nr.Errors)
	}
	// Open loop: step the rate up from a tenth of the closed-loop maximum.
	var sb strings.Builder
	sb.WriteString("\nOpen loop (latency from each request's scheduled time, so queueing counts):\n\n| offered req/s | achieved | p50 | p99 | p99.9 | errors |\n|---:|---:|---:|---:|---:|---:|\n")
	best, bestRes := 0.0, load.Result{}
	steps := []float64{0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0}
	if o.quick {
		steps = []float64{0.1, 0.3, 0.5, 1.0}
	}
	for _, f := range steps {
		rate := closed.Throughput * f
		res := load.Run(ctx, load.Options{Mix: mix, Duration: o.dur, Rate: rate, Seed: 3})
		fmt.Printf("  mixed open loop at %.0f/s: %s\n", rate, res)
		fmt.Fprintf(&sb, "| %.0f | %.0f | %s | %s | %s | %d |\n", rate, res.Throughput, msf(res.P50), msf(res.P99), msf(res.P999), res.Errors)
		if res.P99 < 50*time.Millisecond && res.Errors == 0 {
			best, bestRes = res.Throughput, res
		}
	}
	fmt.Fprintf(&sb, "\n**Maximum sustainable mixed throughput with p99 under 50 ms: %.0f requests/s** on %d cores.\n", best, runtime.NumCPU())
	if best > 0 {
		// Which requests make the tail at that rate.
		fmt.Fprintf(&sb, "\nAt %.0f requests/s, by request:\n\n| request | p50 | p99 | errors |\n|---|---:|---:|---:|\n", best)
		for _, m := range mix {
			if nr := bestRes.ByName[m.Name]; nr != nil {
				fmt.Fprintf(&sb, "| %s | %s | %s | %d |\n", m.Name, msf(nr.P50), msf(nr.P99), nr.Errors)
			}
		}
	}
	return b.String(), sb.String(), nil
}

func authGet(url, tok string) (*http.Request, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err == nil {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req, err
}

func (r *report) write(path string) error {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Every table below comes from one run of the command below on the machine described, each figure beside its baseline from the same run. ")
	b.WriteString("The machines are shared and noisy: compare ratios, not absolute numbers, across runs.\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n- date: %s\n- machine: %d cores, %s memory, %s/%s\n- Go: %s\n\n", r.command, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), memTotal(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	b.WriteString(strings.Join(r.sections, "\n"))
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	var kb int
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), &kb)
		}
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/1024/1024)
}
