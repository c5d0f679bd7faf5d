package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds one service's metrics. Everything registered with it gets
// the label service=<name>, so that series from services sharing a process
// (souk up) or a Prometheus stay apart.
type Registry struct {
	prometheus.Registerer
	reg *prometheus.Registry
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry(service string) *Registry {
	reg := prometheus.NewRegistry()
	r := &Registry{Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"service": service}, reg), reg: reg}
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Handler serves the metrics in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.Registerer})
}

// HTTPMetrics are the RED metrics of an HTTP server, labelled by route
// pattern (never by raw path, so the label set stays bounded).
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

// NewHTTPMetrics registers the HTTP server metrics with reg.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "souk_http_request_duration_seconds",
			Help:    "Time from request to the end of the response, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "souk_http_requests_in_flight",
			Help: "HTTP requests being served, by route pattern.",
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// Start records the start of a request to route and returns the function that
// records its end with the response's status code.
func (m *HTTPMetrics) Start(route, method string) func(code int) {
	start := time.Now()
	g := m.inFlight.WithLabelValues(route)
	g.Inc()
	return func(code int) {
		g.Dec()
		m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}
}
