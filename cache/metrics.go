package cache

import "github.com/prometheus/client_golang/prometheus"

var (
	descHits     = prometheus.NewDesc("registrar_cache_hits_total", "Cache reads answered from the cache.", []string{"backend"}, nil)
	descMisses   = prometheus.NewDesc("registrar_cache_misses_total", "Cache reads that went to the source (absent, expired, or the cache failing).", []string{"backend"}, nil)
	descErrors   = prometheus.NewDesc("registrar_cache_errors_total", "Cache backend calls that failed (timeouts, refused connections, protocol errors).", []string{"backend"}, nil)
	descSkipped  = prometheus.NewDesc("registrar_cache_skipped_total", "Cache calls not made because the circuit breaker was open.", []string{"backend"}, nil)
	descRejected = prometheus.NewDesc("registrar_cache_rejected_total", "Cached values that did not open under their key (tampered, moved, or another keyset).", []string{"backend"}, nil)
	descEntries  = prometheus.NewDesc("registrar_cache_entries", "Entries held in process (the memory cache, or the near level in front of Redis).", []string{"backend"}, nil)
	descDegraded = prometheus.NewDesc("registrar_cache_degraded", "1 while the cache backend is failing and requests are served from the database.", []string{"backend"}, nil)
)

// Collector exports a cache's Stats as Prometheus metrics (labelled by backend only).
type Collector struct{ c Cache }

// NewCollector returns a collector over c.
func NewCollector(c Cache) *Collector { return &Collector{c: c} }

// Describe implements prometheus.Collector.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descErrors, descSkipped, descRejected, descEntries, descDegraded} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	st := m.c.Stats()
	b := st.Backend
	ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(st.Hits), b)
	ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(st.Misses), b)
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(st.Errors), b)
	ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(st.Skipped), b)
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.Rejected), b)
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(st.Entries), b)
	degraded := 0.0
	if st.Degraded {
		degraded = 1
	}
	ch <- prometheus.MustNewConstMetric(descDegraded, prometheus.GaugeValue, degraded, b)
}
