package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"

	"registrar/authz"
	"registrar/internal/testdistrict"
)

// TestPooledResponseBuffersDoNotMix: responses are encoded in pooled buffers; under
// concurrent requests for different objects and pages, every body is byte for byte
// the body the same request gets alone.
func TestPooledResponseBuffersDoNotMix(t *testing.T) {
	h := newHarness(t)
	tok := h.client([]string{authz.RosterReadonly})
	const rost = "/ims/oneroster/rostering/v1p2"
	paths := []string{
		rost + "/students/" + testdistrict.Minor,
		rost + "/students/" + testdistrict.Eligible,
		rost + "/classes/" + testdistrict.ClassMathA + "/students",
		rost + "/students/" + testdistrict.Student3,
		rost + "/users?limit=3",
	}
	want := map[string][]byte{}
	for _, p := range paths {
		r := h.do("GET", p, tok, "")
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", p, r.status, r.body)
		}
		want[p] = r.body
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 40 {
				p := paths[(g+i)%len(paths)]
				req, _ := http.NewRequest("GET", h.srv.URL+p, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want[p]) {
					t.Errorf("GET %s under load: status %d, %v, body %.200s; want %.200s", p, resp.StatusCode, err, body, want[p])
					return
				}
			}
		})
	}
	wg.Wait()
}
