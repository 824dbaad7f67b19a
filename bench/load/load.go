// Package load is registrar's load generator: it replays a weighted mix of HTTP
// requests against a running server over real HTTP, either open-loop at a target
// rate (latency measured from each request's scheduled start, so overload shows up
// as latency instead of being hidden by coordinated omission) or closed-loop with a
// fixed number of workers (maximum throughput).
//
// Every run is bounded in time and in requests in flight, and sends traffic only to
// the URLs it is given (the benchmarks give it loopback addresses).
package load

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one kind of request in a mix.
type Request struct {
	Name   string
	Weight int
	// Make builds the request; r is the worker's random source (deterministic per seed).
	Make func(r *rand.Rand) (*http.Request, error)
	// OK reports whether a status is a success for this request (default: 2xx).
	OK func(status int) bool
}

// Mix is a weighted set of requests.
type Mix []Request

func (m Mix) pick(r *rand.Rand) *Request {
	total := 0
	for i := range m {
		total += m[i].Weight
	}
	n := r.IntN(total)
	for i := range m {
		if n < m[i].Weight {
			return &m[i]
		}
		n -= m[i].Weight
	}
	return &m[len(m)-1]
}

// Result summarises a run.
type Result struct {
	Duration   time.Duration
	Requests   int
	Errors     int // transport errors and unexpected statuses
	Throughput float64
	P50, P95   time.Duration
	P99, P999  time.Duration
	Max        time.Duration
	ByName     map[string]*NameResult
	// Samples holds (offset from start, latency, ok) of every request when Keep is set.
	Samples []Sample
}

// NameResult is one request kind's share of a run.
type NameResult struct {
	Requests, Errors int
	P50, P99         time.Duration
}

// Sample is one request's timing.
type Sample struct {
	At      time.Duration
	Latency time.Duration
	OK      bool
	Status  int
	Name    string
}

// Options configure a run.
type Options struct {
	Mix      Mix
	Duration time.Duration
	// Rate > 0 runs open-loop at Rate requests per second; otherwise closed-loop with Workers.
	Rate    float64
	Workers int
	// MaxInFlight bounds concurrent requests in open-loop mode (default 2048); requests
	// that would exceed it count as errors.
	MaxInFlight int
	Seed        uint64
	Keep        bool // keep every sample in Result.Samples
	Client      *http.Client
}

// NewClient returns an HTTP client with enough idle connections for a load run.
func NewClient(conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

type collector struct {
	mu      sync.Mutex
	samples []Sample
	start   time.Time
}

func (c *collector) add(s Sample) {
	c.mu.Lock()
	c.samples = append(c.samples, s)
	c.mu.Unlock()
}

func do(client *http.Client, req *Request, r *rand.Rand) (int, bool) {
	hr, err := req.Make(r)
	if err != nil {
		return 0, false
	}
	resp, err := client.Do(hr)
	if err != nil {
		return 0, false
	}
	_, _ = io.Copy(io.Discard, resp.Body) // drain so the connection is reused
	resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if req.OK != nil {
		ok = req.OK(resp.StatusCode)
	}
	return resp.StatusCode, ok
}

// Run runs one load test until the duration ends or ctx is cancelled.
func Run(ctx context.Context, o Options) Result {
	if o.Client == nil {
		o.Client = NewClient(max(o.Workers, 256))
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 2048
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	col := &collector{start: time.Now()}
	var wg sync.WaitGroup
	if o.Rate > 0 {
		var inflight atomic.Int64
		interval := time.Duration(float64(time.Second) / o.Rate)
		r := rand.New(rand.NewPCG(o.Seed, 1))
		next := col.start
		for i := 0; ; i++ {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
			if ctx.Err() != nil {
				break
			}
			req := o.Mix.pick(r)
			scheduled := next
			next = next.Add(interval)
			if inflight.Load() >= int64(o.MaxInFlight) {
				col.add(Sample{At: scheduled.Sub(col.start), OK: false, Name: req.Name})
				continue
			}
			inflight.Add(1)
			wg.Add(1)
			rr := rand.New(rand.NewPCG(o.Seed, uint64(i)+2))
			go func() {
				defer wg.Done()
				defer inflight.Add(-1)
				status, ok := do(o.Client, req, rr)
				col.add(Sample{At: scheduled.Sub(col.start), Latency: time.Since(scheduled), OK: ok, Status: status, Name: req.Name})
			}()
		}
	} else {
		for w := 0; w < max(o.Workers, 1); w++ {
			wg.Add(1)
			r := rand.New(rand.NewPCG(o.Seed, uint64(w)+1000))
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					req := o.Mix.pick(r)
					t := time.Now()
					status, ok := do(o.Client, req, r)
					if ctx.Err() != nil && !ok {
						return // cut off by the end of the run, not a failure
					}
					col.add(Sample{At: t.Sub(col.start), Latency: time.Since(t), OK: ok, Status: status, Name: req.Name})
				}
			}()
		}
	}
	wg.Wait()
	return summarise(col, time.Since(col.start), o.Keep)
}

// Merge is runs taken as one: every sample of each (the runs must have kept them:
// Options.Keep) over the sum of their durations. The benchmarks alternate two
// servers in turns, so that a shared machine's drift in speed falls on both alike,
// and report each server's turns merged. A run that made requests but kept no
// samples is a caller's mistake, and panics rather than count as an empty turn.
func Merge(runs ...Result) Result {
	col := &collector{}
	var d time.Duration
	for _, r := range runs {
		if r.Requests > 0 && len(r.Samples) == 0 {
			panic("load.Merge: a run kept no samples (set Options.Keep)")
		}
		col.samples = append(col.samples, r.Samples...)
		d += r.Duration
	}
	return summarise(col, d, false)
}

func summarise(col *collector, d time.Duration, keep bool) Result {
	res := Result{Duration: d, ByName: map[string]*NameResult{}}
	lat := make([]time.Duration, 0, len(col.samples))
	byName := map[string][]time.Duration{}
	for _, s := range col.samples {
		res.Requests++
		nr := res.ByName[s.Name]
		if nr == nil {
			nr = &NameResult{}
			res.ByName[s.Name] = nr
		}
		nr.Requests++
		if !s.OK {
			res.Errors++
			nr.Errors++
		}
		lat = append(lat, s.Latency)
		byName[s.Name] = append(byName[s.Name], s.Latency)
	}
	slices.Sort(lat)
	res.Throughput = float64(res.Requests) / d.Seconds()
	res.P50, res.P95, res.P99, res.P999 = pct(lat, .50), pct(lat, .95), pct(lat, .99), pct(lat, .999)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	for name, l := range byName {
		slices.Sort(l)
		res.ByName[name].P50, res.ByName[name].P99 = pct(l, .5), pct(l, .99)
	}
	if keep {
		res.Samples = col.samples
	}
	return res
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// String is a one-line summary.
func (r Result) String() string {
	return fmt.Sprintf("%d requests in %.1fs: %.0f/s, errors %d, p50 %s p95 %s p99 %s p99.9 %s max %s",
		r.Requests, r.Duration.Seconds(), r.Throughput, r.Errors, ms(r.P50), ms(r.P95), ms(r.P99), ms(r.P999), ms(r.Max))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// Get builds a GET request maker for a URL and bearer token.
func Get(url, token string) func(*rand.Rand) (*http.Request, error) {
	return func(*rand.Rand) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err == nil && token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req, err
	}
}

// GetOneOf builds a GET request for one of several (url, token) pairs chosen at random.
func GetOneOf(urls, tokens []string) func(*rand.Rand) (*http.Request, error) {
	return func(r *rand.Rand) (*http.Request, error) {
		i := r.IntN(len(urls))
		req, err := http.NewRequest(http.MethodGet, urls[i], nil)
		if err == nil && tokens[i] != "" {
			req.Header.Set("Authorization", "Bearer "+tokens[i])
		}
		return req, err
	}
}

// JSON builds a request with a JSON body.
func JSON(method, url, token, body string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}
