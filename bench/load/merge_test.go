package load

import (
	"testing"
	"time"
)

// TestMergeCountsEveryTurn: a merged result is the turns' samples over their summed
// durations, its percentiles taken over all of them, not averaged per turn.
func TestMergeCountsEveryTurn(t *testing.T) {
	turn := func(d time.Duration, lat ...time.Duration) Result {
		col := &collector{}
		for _, l := range lat {
			col.add(Sample{Latency: l, OK: l < time.Second, Name: "r"})
		}
		return summarise(col, d, true)
	}
	ms := time.Millisecond
	a := turn(2*time.Second, 1*ms, 2*ms, 3*ms)
	b := turn(time.Second, 100*ms, 2*time.Second)
	m := Merge(a, b)
	if m.Requests != 5 || m.Errors != 1 || m.Duration != 3*time.Second {
		t.Fatalf("merged %d requests, %d errors over %s; want 5, 1 over 3s", m.Requests, m.Errors, m.Duration)
	}
	if m.Throughput != 5.0/3 {
		t.Errorf("throughput %v, want %v", m.Throughput, 5.0/3)
	}
	if m.P50 != 3*ms || m.Max != 2*time.Second {
		t.Errorf("p50 %s max %s, want 3ms and 2s (over all five samples)", m.P50, m.Max)
	}
	if nr := m.ByName["r"]; nr == nil || nr.Requests != 5 || nr.Errors != 1 {
		t.Errorf("by name: %+v", m.ByName["r"])
	}
	if m.Samples != nil {
		t.Error("a merged result keeps no samples")
	}
}

// A turn run without Options.Keep has no samples to merge: Merge refuses it instead
// of counting it as a turn without requests.
func TestMergeRefusesARunWithoutSamples(t *testing.T) {
	col := &collector{}
	col.add(Sample{Latency: time.Millisecond, OK: true, Name: "r"})
	unkept := summarise(col, time.Second, false)
	defer func() {
		if recover() == nil {
			t.Error("Merge took a run that kept no samples")
		}
	}()
	Merge(unkept)
}
