package serve

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/delegation-program/uptime-coordinator/internal/buildinfo"
)

// metrics are serve's own Prometheus series.
type metrics struct {
	reg      *prometheus.Registry
	batches  prometheus.Counter
	requests *prometheus.CounterVec
	clients  func() int
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := promauto.With(m.reg)
	m.batches = f.NewCounter(prometheus.CounterOpts{Name: "uptime_coordinator_serve_batches_streamed_total",
		Help: "Committed batches announced by NOTIFY and sent to the stream clients."})
	m.requests = f.NewCounterVec(prometheus.CounterOpts{Name: "uptime_coordinator_serve_http_requests_total",
		Help: "HTTP requests by status code class."}, []string{"code"})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "uptime_coordinator_serve_stream_clients", Help: "Connected stream clients."},
		func() float64 {
			if m.clients == nil {
				return 0
			}
			return float64(m.clients())
		})
	b := buildinfo.Get()
	f.NewGaugeVec(prometheus.GaugeOpts{Name: "uptime_coordinator_build_info",
		Help: "Always 1; the labels say which build is running."}, []string{"version", "revision", "goversion"}).
		WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) instrument(next http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(m.requests, next)
}
