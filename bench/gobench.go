package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// goBench is one `go test -bench` pair that a package keeps beside its baseline (the
// benchmark reports both figures and their ratio with b.ReportMetric).
type goBench struct {
	title, pkg, pattern, note string
	quickTime, fullTime       string   // -benchtime
	quickEnv, fullEnv         []string // environment (sizes)
	fullOnly                  bool     // left out of --quick (which must finish in five minutes)
}

// goBenches are the figures the issues ask for that are measured in the packages that
// own them.
var goBenches = []goBench{
	{title: "Per-endpoint throughput beside a bare handler (go test -bench)", pkg: "./httpapi", pattern: "BenchmarkEndpoints$",
		note:      "Issue 2's figure as `go test -bench`: GET /students/{id} and GET /classes/{id}/students over a generated district of 10,000 students, registrar (an LMS client of the whole district: authenticated, scoped, decrypted, audited with its record of disclosures) beside bench/bare (the same SQL on the same SQLite file, nothing else), 64 closed-loop clients over loopback HTTP in the same process. The two take ten turns each (the machine's drift falls on both); the student index and the log-stream copy are written in registrar's turns and charged to them. ratio = registrar/baseline throughput (target >= 0.5); cpu-ratio = the same per CPU-second of the process.",
		quickTime: "10000x", fullTime: "20000x", fullOnly: true}, // --quick has the same pair over HTTP (main.go)
	{title: "Authorization cost", pkg: "./httpapi", pattern: "BenchmarkAuthzScope",
		note:      "A teacher listing their students and a district administrator paging through all 10,000 students, with the authorization scope in the SQL beside the same query without it (issue 4; target: the scope costs at most 30%, scoped/unscoped time <= 1.43). The teacher's scoped query reads ~60 rows where the unscoped one reads a page of the whole district, so only the administrator's pair compares like with like. Both sides count their total once per sweep (the count cache, sqlstore/counts.go: exact, keyed by the statement and its arguments, checked against the change log in the page's snapshot; SQLite only).",
		quickTime: "3s", fullTime: "10s"},
	{title: "Encryption cost", pkg: "./sqlstore", pattern: "BenchmarkEncryptionCost|BenchmarkNewDataKey",
		note:      "Reads (keys cached, and every key unwrapped) and imports with Tink beside the same with a no-op cipher (issue 5; target: encryption costs under 20%).",
		quickTime: "2s", fullTime: "5s"},
	{title: "Audit cost", pkg: "./httpapi", pattern: "BenchmarkAuditedReads",
		note:      "Read throughput with durable audit (group commit, before the reply) beside audit off (issue 6; target: ratio >= 0.7).",
		quickTime: "3s", fullTime: "10s"},
	{title: "Audit verify rate", pkg: "./sqlstore", pattern: "BenchmarkVerifyMillionEvents",
		note:      "`audit verify` over a generated trail (issue 6: a million events in the full run; 100,000 in --quick).",
		quickTime: "1x", fullTime: "1x", quickEnv: []string{"REGISTRAR_BENCH_EVENTS=100000"}},
	{title: "Import", pkg: "./importer", pattern: "BenchmarkImport$",
		note:      "Rows/s of `import` beside the raw baseline: the same rows as plain prepared INSERTs in one transaction, with no validation, encryption or audit (issue 3; target: ratio >= 0.5). Peak RSS of the import process at each size: the size table above; the 100,000-student ratio: `go run ./bench/importbench` (docs/import.md).",
		quickTime: "1x", fullTime: "1x", quickEnv: []string{"REGISTRAR_BENCH_STUDENTS=2000"}, fullEnv: []string{"REGISTRAR_BENCH_STUDENTS=10000"}},
	{title: "Import on PostgreSQL", pkg: "./importer", pattern: "BenchmarkImportPostgres",
		note:      "Rows/s of `import` on PostgreSQL (started on loopback by internal/pgtest) beside COPY of the same rows into the same tables, in the same run on the same server (issue 7). The 100,000-student figures: `go run ./bench/importbench -students 100000 -postgres URL` (docs/import.md).",
		quickTime: "1x", fullTime: "1x", quickEnv: []string{"REGISTRAR_BENCH_STUDENTS=2000"}, fullEnv: []string{"REGISTRAR_BENCH_STUDENTS=10000"}, fullOnly: true},
	{title: "Stream", pkg: "./stream", pattern: "BenchmarkWorkerVsStore",
		note:      "Events/s applied by one worker from the Kinesis emulator beside the same events applied straight through the store API, and put-to-applied lag (issue 7).",
		quickTime: "1x", fullTime: "1x"},
	{title: "PostgreSQL beside SQLite", pkg: "./sqlstore", pattern: "BenchmarkReads",
		note:      "Get one user and list one class's students on PostgreSQL (started on loopback by the test helper) beside SQLite (issue 7).",
		quickTime: "2s", fullTime: "5s"},
	{title: "Endpoints on PostgreSQL", pkg: "./httpapi", pattern: "BenchmarkEndpointsPostgres",
		note:      "GET /students/{id} and GET /classes/{id}/students on PostgreSQL (started on loopback by internal/pgtest, or REGISTRAR_TEST_POSTGRES_URL) beside the bare handler on the same database (bench/bare.StartPostgres: net/http and database/sql through pgx, the same SQL, no authentication, authorization, decryption or audit), over the imported generated district (issue 7: the core read benchmarks on PostgreSQL).",
		quickTime: "2s", fullTime: "5s", quickEnv: []string{"REGISTRAR_BENCH_STUDENTS=2000"}, fullEnv: []string{"REGISTRAR_BENCH_STUDENTS=10000"}, fullOnly: true},
	{title: "Cache", pkg: "./cache", pattern: "BenchmarkGetStudent",
		note:      "GET /students/{id} with the in-process and the Redis cache beside no cache (issue 7).",
		quickTime: "2s", fullTime: "5s"},
}

func goBenchmarks(ctx context.Context, o options, rep *report) error {
	for _, g := range goBenches {
		if o.quick && g.fullOnly {
			continue
		}
		bt := g.fullTime
		if o.quick {
			bt = g.quickTime
		}
		args := []string{"test", "-run", "^$", "-bench", g.pattern, "-benchtime", bt, "-count", "1", g.pkg}
		fmt.Println("go", strings.Join(args, " "))
		c := exec.CommandContext(ctx, "go", args...)
		c.Stderr = os.Stderr
		c.Env = os.Environ()
		if o.quick {
			c.Env = append(c.Env, g.quickEnv...)
		} else {
			c.Env = append(c.Env, g.fullEnv...)
		}
		out, err := c.Output()
		if err != nil {
			rep.add(g.title, fmt.Sprintf("`go %s` failed: %v\n\n```\n%s\n```\n", strings.Join(args, " "), err, tail(string(out), 20)))
			continue
		}
		rows := parseBench(string(out))
		if len(rows) == 0 {
			rep.add(g.title, fmt.Sprintf("No benchmark matched `%s` in %s.\n", g.pattern, g.pkg))
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s\n\nCommand: `go %s`\n\n| benchmark | figures |\n|---|---|\n", g.note, strings.Join(args, " "))
		for _, r := range rows {
			fmt.Fprintf(&b, "| %s | %s |\n", r.name, strings.Join(r.metrics, ", "))
		}
		rep.add(g.title, b.String())
	}
	return nil
}

type benchRow struct {
	name    string
	metrics []string
}

// parseBench reads `go test -bench` output lines: name, iterations, then value-unit pairs.
func parseBench(out string) []benchRow {
	var rows []benchRow
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		r := benchRow{name: f[0]}
		for i := 2; i+1 < len(f); i += 2 {
			r.metrics = append(r.metrics, f[i]+" "+f[i+1])
		}
		rows = append(rows, r)
	}
	return rows
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
