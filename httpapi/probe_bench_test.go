package httpapi_test

import (
	"testing"

	"registrar/authz"
	"registrar/internal/testdistrict"
)

// BenchmarkHarnessGetStudent is a quick probe of the request path on the tiny test
// district (the benchmarks over 10,000 students live in bench/).
func BenchmarkHarnessGetStudent(b *testing.B) {
	h := newHarness(b)
	tok := h.client([]string{authz.RosterReadonly})
	path := "/ims/oneroster/rostering/v1p2/students/" + testdistrict.Minor
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := h.do("GET", path, tok, ""); r.status != 200 {
				b.Errorf("status %d", r.status)
				return
			}
		}
	})
}
