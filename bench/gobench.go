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
	quickTime, fullTime       string // -benchtime
}

// goBenches are the cost ratios the issues ask for, measured in the packages that own them.
var goBenches = []goBench{
	{title: "Authorization cost", pkg: "./httpapi", pattern: "BenchmarkAuthz", note: "A teacher listing their students and a district administrator paging through all students, with the authorization scope in the SQL beside the same query without it. Target: ratio >= 0.7.", quickTime: "2s", fullTime: "10s"},
	{title: "Encryption cost", pkg: "./sqlstore", pattern: "BenchmarkEncryption", note: "Reads and imports with field encryption beside the same with a no-op cipher. Target: encryption costs under 20% (ratio >= 0.8).", quickTime: "2s", fullTime: "10s"},
	{title: "Audit cost", pkg: "./httpapi", pattern: "BenchmarkAudit", note: "Read throughput with durable audit beside audit off. Target: ratio >= 0.7.", quickTime: "2s", fullTime: "10s"},
	{title: "Audit verify rate", pkg: "./sqlstore", pattern: "BenchmarkAuditVerify", note: "`audit verify` over a trail of generated events, in events/s.", quickTime: "1x", fullTime: "1x"},
	{title: "Import", pkg: "./importer", pattern: "BenchmarkImport", note: "Rows/s of the import beside a raw baseline (the same rows with prepared statements in one transaction, no validation, encryption or audit). Target: ratio >= 0.5.", quickTime: "1x", fullTime: "3x"},
}

func goBenchmarks(ctx context.Context, o options, rep *report) error {
	for _, g := range goBenches {
		bt := g.fullTime
		if o.quick {
			bt = g.quickTime
		}
		args := []string{"test", "-run", "^$", "-bench", g.pattern, "-benchtime", bt, "-count", "1", g.pkg}
		fmt.Println("go", strings.Join(args, " "))
		c := exec.CommandContext(ctx, "go", args...)
		c.Stderr = os.Stderr
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
