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

// Gatherer gathers the registry's metrics in-process, as a scrape would.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

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

// InFlight is the in-flight gauge of route.
func (m *HTTPMetrics) InFlight(route string) prometheus.Gauge {
	return m.inFlight.WithLabelValues(route)
}

// Observe records a finished request.
func (m *HTTPMetrics) Observe(route, method string, code int, d time.Duration) {
	method = metricMethod(method)
	m.requests.WithLabelValues(route, method, statusText(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// metricMethod bounds the method label: clients may send any token.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusText is strconv.Itoa without an allocation for the usual codes.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 429:
		return "429"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
