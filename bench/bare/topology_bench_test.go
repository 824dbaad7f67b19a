package bare_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"registrar/bench/bare"
	"registrar/bench/load"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
)

// BenchmarkBaselineTopology measures what the HTTP harness's topology does to the
// baseline alone: the same bare handler on the same generated district (2,000
// students), served in the load generator's process (bare.Start) and as a process of
// its own (bench/bare/cmd/bare, as `go run ./bench` starts it since session 9),
// alternated in five turns of 2 s each, 64 closed-loop clients over loopback HTTP.
// inprocess/ownprocess is the throughput of the first over the second: above 1, the
// in-process baseline had an advantage registrar, always a process of its own, did
// not (docs/architecture.md, session 9).
//
//	go test -run '^$' -bench BaselineTopology -benchtime 1x ./bench/bare
func BenchmarkBaselineTopology(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "registrar.db")
	st, _ := testdistrict.Generated(b, 2000, sqlstore.Options{Path: path})
	ids := studentIDs(b, path)
	st.Close()

	bin := filepath.Join(b.TempDir(), "bare")
	if out, err := exec.Command("go", "build", "-o", bin, "registrar/bench/bare/cmd/bare").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	own := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			own = m[1]
			break
		}
	}
	if own == "" {
		b.Fatal("bare printed no address")
	}
	in, err := bare.Start(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()

	urls := func(base string) ([]string, []string) {
		var u, t []string
		for _, id := range ids {
			u, t = append(u, base+"/students/"+id), append(t, "")
		}
		return u, t
	}
	inURLs, toks := urls(in.URL)
	ownURLs, _ := urls(own)
	inClient, ownClient := load.NewClient(256), load.NewClient(256)
	var inN, ownN int
	var inD, ownD time.Duration
	for i := range b.N * 5 {
		ro := load.Run(ctx, load.Options{Mix: load.Mix{{Name: "own", Weight: 1, Make: load.GetOneOf(ownURLs, toks)}}, Duration: 2 * time.Second, Workers: 64, Seed: uint64(i), Client: ownClient})
		ri := load.Run(ctx, load.Options{Mix: load.Mix{{Name: "in", Weight: 1, Make: load.GetOneOf(inURLs, toks)}}, Duration: 2 * time.Second, Workers: 64, Seed: uint64(i), Client: inClient})
		if ro.Errors+ri.Errors > 0 {
			b.Fatalf("turn %d: %d errors in its own process, %d in-process", i, ro.Errors, ri.Errors)
		}
		ownN, ownD, inN, inD = ownN+ro.Requests, ownD+ro.Duration, inN+ri.Requests, inD+ri.Duration
	}
	if inN == 0 || ownN == 0 {
		b.Fatal("no requests answered")
	}
	in1, own1 := float64(inN)/inD.Seconds(), float64(ownN)/ownD.Seconds()
	b.ReportMetric(in1, "inprocess-req/s")
	b.ReportMetric(own1, "ownprocess-req/s")
	b.ReportMetric(in1/own1, "inprocess/ownprocess")
}

func studentIDs(b *testing.B, path string) []string {
	b.Helper()
	db, err := sqlstore.OpenSQLite(path, "mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT user_id FROM user_roles WHERE role = 'student' ORDER BY user_id")
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		b.Fatal("no students")
	}
	return ids
}
