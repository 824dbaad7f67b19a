package gen

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// discardSink throws the package away; it measures the generator alone
// (writing to files adds page cache, not process memory).
type discardSink struct{}

func (discardSink) create(string) (io.Writer, error) { return io.Discard, nil }
func (discardSink) done() error                      { return nil }

const memChildEnv = "GEN_MEM_CHILD"

// TestPeakMemory100k generates a 100,000-student district and logs the peak
// memory. It is a measurement, not an assertion. The work runs in a child
// process (this test binary re-executed) so that the peak resident set
// (VmHWM) is not inflated by the other tests of the package.
func TestPeakMemory100k(t *testing.T) {
	if os.Getenv(memChildEnv) == "1" {
		memChild(t)
		return
	}
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if raceEnabled {
		t.Skip("skipped under the race detector")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakMemory100k$", "-test.v")
	cmd.Env = append(os.Environ(), memChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "peak") || strings.Contains(line, "rows") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

func memChild(t *testing.T) {
	cfg := Defaults(100_000)
	cfg.Seed = 1
	var (
		mu                sync.Mutex
		peakHeap, peakSys uint64
		stop              = make(chan struct{})
		wg                sync.WaitGroup
	)
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peakHeap, peakSys = max(peakHeap, ms.HeapInuse), max(peakSys, ms.Sys)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	start := time.Now()
	sum, err := generate(context.Background(), cfg, discardSink{})
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	sample()
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, n := range sum.Counts {
		rows += n
	}
	t.Logf("100k students: %d rows in %v (%.0f rows/s)", rows, elapsed.Round(time.Millisecond), float64(rows)/elapsed.Seconds())
	t.Logf("peak heap in use %.1f MiB, peak Go runtime Sys %.1f MiB, peak RSS (VmHWM) %s",
		float64(peakHeap)/(1<<20), float64(peakSys)/(1<<20), vmHWM())
}

// vmHWM reads the peak resident set size of this process (Linux only).
func vmHWM() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fields := strings.Fields(rest)
			if kb, err := strconv.Atoi(fields[0]); err == nil {
				return strconv.FormatFloat(float64(kb)/1024, 'f', 1, 64) + " MiB"
			}
		}
	}
	return "n/a"
}

// BenchmarkWriteCSV writes a 10,000-student district to disk and reports
// rows per second over all files.
func BenchmarkWriteCSV(b *testing.B) {
	cfg := Defaults(10_000)
	cfg.Seed = 1
	dir := b.TempDir()
	rows := 0
	for b.Loop() {
		sum, err := WriteCSV(context.Background(), dir, cfg)
		if err != nil {
			b.Fatal(err)
		}
		rows = 0
		for _, n := range sum.Counts {
			rows += n
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(rows), "rows/op")
}
