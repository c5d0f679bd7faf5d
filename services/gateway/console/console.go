// Package console is the operators' console API, which the gateway hosts
// (gateway.Host) under /api/admin for the console page (web/, /console/):
// a backend for that one frontend, over what the gateway process already
// holds. Its routes are admin-only in the gateway's configuration, and
// each handler checks the caller's role again, as services do.
//
//   - topology: every service's live instances from the registry, each
//     with its health (its /readyz, asked at most once a second) and the
//     state of the gateway's circuit breaker to it; also as a stream;
//   - traffic: per service, requests a second, the share of 5xx and the
//     p99 latency over the last minutes, from the services' own /metrics,
//     sampled by the gateway (no Prometheus needed), or from the
//     Prometheus that scrapes them when one is configured; and per service
//     its outbox backlog and its consumers' lag and dead letters;
//   - an order's trace, found among the traces kept in memory by the
//     order.id its placing request carries, or in Jaeger when one is
//     configured and the traces are exported;
//   - the dead letters, and their replay, which the gateway asks of the
//     service whose stream the event came from: that service may publish
//     it, and the gateway may not publish any service's events.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/resilience"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
)

// Name is the service name the gateway's routes give the console.
const Name = "console"

// Deps are what the console reads.
type Deps struct {
	// Services are the shop's services, listed even while none runs.
	Services []string
	// Instances are the live instances (the gateway's registry watcher);
	// Breakers are the gateway's circuit breakers.
	Instances Instances
	Breakers  Breakers
	// Gateway gathers the gateway's own metrics.
	Gateway prometheus.Gatherer
	// Ring holds the kept traces; nil when they are exported instead.
	Ring *telemetry.Ring
	// JS reads the dead-letter stream.
	JS jetstream.JetStream
	// Upstream reaches services by name (http://orders/…), as the
	// gateway's forwarding does; Prover signs the proofs of its requests.
	Upstream http.RoundTripper
	Prover   *auth.Prover
	// Every is how often traffic is sampled (5 s if zero); Keep how long
	// samples are kept (10 minutes if zero).
	Every, Keep time.Duration
	// Prometheus, if set, is the base URL of a Prometheus that scrapes the
	// services: the traffic charts come from it (a point every Every over
	// Keep, each a rate() over RateWindow, DefaultRateWindow if zero), and
	// from the gateway's own samples while it does not answer.
	Prometheus string
	RateWindow time.Duration
	// Jaeger, if set, is the base URL of a Jaeger query service (its HTTP
	// API, e.g. http://127.0.0.1:16686) that holds the exported traces: an
	// order's trace not among those kept in memory is looked for there.
	Jaeger string
	Log    *slog.Logger
}

// Instances lists a service's live instances: a *discovery.Watcher.
type Instances interface {
	Instances(service string) []discovery.Instance
}

// Breakers tells the state of the gateway's breaker to each instance it
// has called, by instance id: a *resilience.Breakers.
type Breakers interface {
	States() map[string]string
}

var (
	_ Instances = (*discovery.Watcher)(nil)
	_ Breakers  = (*resilience.Breakers)(nil)
)

// Console serves the console API.
type Console struct {
	d      Deps
	mux    *http.ServeMux
	direct *http.Client // to instances' open endpoints: /readyz, /metrics

	healthMu sync.Mutex
	health   map[string]probe // by instance id

	traffic *sampler
	prom    *promSource   // nil without Deps.Prometheus
	jaeger  *jaegerSource // nil without Deps.Jaeger
}

// New returns the console over d. Run samples the traffic.
func New(d Deps) *Console {
	if d.Every == 0 {
		d.Every = 5 * time.Second
	}
	if d.Keep == 0 {
		d.Keep = 10 * time.Minute
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{d: d, mux: http.NewServeMux(), health: map[string]probe{},
		direct: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}}
	c.traffic = newSampler(d, c.direct)
	if d.Prometheus != "" {
		if d.RateWindow == 0 {
			d.RateWindow = DefaultRateWindow
		}
		c.prom = newPromSource(d.Prometheus, d.Keep, d.Every, d.RateWindow)
	}
	if d.Jaeger != "" {
		c.jaeger = newJaegerSource(d.Jaeger)
	}
	for pattern, h := range c.routes() {
		c.mux.Handle(pattern, c.handler(h))
	}
	return c
}

// Patterns are the console's routes, as the gateway forwards them (the
// /api prefix stripped).
func Patterns() []string {
	ps := slices.Collect(func(yield func(string) bool) {
		for p := range (&Console{}).routes() {
			if !yield(p) {
				return
			}
		}
	})
	slices.Sort(ps)
	return ps
}

func (c *Console) routes() map[string]func(http.ResponseWriter, *http.Request) error {
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"GET /admin/topology":                   c.topology,
		"GET /admin/topology/stream":            c.topologyStream,
		"GET /admin/traffic":                    c.trafficPage,
		"GET /admin/orders/{id}/trace":          c.orderTrace,
		"GET /admin/dead-letters":               c.deadLetters,
		"POST /admin/dead-letters/{seq}/replay": c.replay,
	}
}

// ServeHTTP serves the console API; the caller must be an admin.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// Run samples the traffic every Every until ctx ends.
func (c *Console) Run(ctx context.Context) { c.traffic.run(ctx) }

// handler checks the caller's role and writes a handler's error as
// problem+json; the cause of a 5xx, which the answer does not tell, is
// logged.
func (c *Console) handler(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := auth.FromRequest(r).RequireAdmin()
		if err == nil {
			err = h(w, r)
		}
		if err == nil {
			return
		}
		if e, ok := errors.AsType[*problem.Error](err); !ok || e.Code.Status() >= 500 {
			c.d.Log.ErrorContext(r.Context(), "console: request failed", "route", r.Pattern, "err", err)
		}
		problem.Write(w, err)
	})
}

// orderTrace returns the spans of the trace of the request that placed
// an order: the order's saga, step by step, across every service.
func (c *Console) orderTrace(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "id")
	if err != nil {
		return err
	}
	traceID, spans, ok := c.keptTrace(id)
	if !ok && c.jaeger != nil {
		traceID, spans, ok, err = c.jaeger.orderTrace(r.Context(), id, 7*24*time.Hour) // its client allows 5 s
		if err != nil {
			return problem.Wrap(problem.Unavailable, err, "the trace of order "+id+" cannot be read from Jaeger right now")
		}
		if !ok {
			return problem.New(problem.NotFound, "Jaeger at %s has no trace of order %s: only sampled requests are traced", c.d.Jaeger, id)
		}
	}
	switch {
	case ok:
		server.WriteJSON(w, http.StatusOK, map[string]any{"trace_id": traceID, "spans": spans})
		return nil
	case c.d.Ring == nil:
		return problem.New(problem.NotFound, "traces are exported to a collector, not kept here: look for order.id=%s there (or give the gateway --jaeger-url)", id)
	default:
		return problem.New(problem.NotFound, "no trace of order %s among the traces kept in memory: only the most recent are kept, and only sampled requests are traced", id)
	}
}

// keptTrace finds, among the traces kept in memory, the one in which a
// span carries the order's order.id.
func (c *Console) keptTrace(id string) (traceID string, spans []telemetry.Span, ok bool) {
	if c.d.Ring == nil {
		return "", nil, false
	}
	for _, sum := range c.d.Ring.Traces() {
		spans, ok := c.d.Ring.Trace(sum.TraceID)
		if !ok {
			continue
		}
		for _, sp := range spans {
			if sp.Attributes["order.id"] == id {
				return sum.TraceID, spans, true
			}
		}
	}
	return "", nil, false
}

// deadLetters lists the dead letters, oldest first.
func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) error {
	dls, err := events.ReadDeadLetters(r.Context(), c.d.JS, 500)
	if err != nil {
		return problem.Wrap(problem.Unavailable, err, "the dead letters cannot be read right now")
	}
	if dls == nil {
		dls = []events.DeadLetter{}
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"items": dls})
	return nil
}

// replay asks the service whose stream a dead letter came from to publish
// it again, and answers what the service answered.
func (c *Console) replay(w http.ResponseWriter, r *http.Request) error {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		return problem.Field("seq", "must be a dead letter's sequence number")
	}
	dl, err := events.GetDeadLetter(r.Context(), c.d.JS, seq)
	if errors.Is(err, events.ErrNoDeadLetter) {
		return problem.New(problem.NotFound, "no dead letter %d: it may have been replayed already", seq)
	}
	if err != nil {
		return problem.Wrap(problem.Unavailable, err, "the dead letters cannot be read right now")
	}
	owner := events.StreamOwner(dl.Stream)
	if dl.Stream == "" || !slices.Contains(c.d.Services, owner) {
		return problem.New(problem.Unprocessable, "dead letter %d came from %q, which no service of the shop publishes: replay it with souk events dlq replay", seq, dl.Stream)
	}
	caller := auth.CallerOf(r)
	proof, err := c.d.Prover.Prove(owner, caller.Identity, caller.Addr)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, fmt.Sprintf("http://%s/dead-letters/%d/replay", owner, seq), nil)
	if err != nil {
		return err
	}
	req.Header.Set(auth.HeaderProof, proof)
	req.Header.Set(server.HeaderRequestID, telemetry.RequestID(r.Context()))
	resp, err := c.d.Upstream.RoundTrip(req)
	if err != nil {
		return problem.Wrap(problem.Unavailable, err, fmt.Sprintf("%s, which replays its own events, cannot be reached", owner))
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body) // a small JSON answer; the status is out
	return nil
}

// ReplayHandler is the route every service serves for the console:
// POST /dead-letters/{seq}/replay publishes again a dead letter of the
// service's own stream (the only events it may publish), for an admin.
func ReplayHandler(service string, js jetstream.JetStream) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := auth.FromRequest(r).RequireAdmin(); err != nil {
			return err
		}
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil || seq == 0 {
			return problem.Field("seq", "must be a dead letter's sequence number")
		}
		dl, err := events.ReplayDeadLetterFrom(r.Context(), js, seq, events.StreamName(service))
		switch {
		case errors.Is(err, events.ErrNoDeadLetter):
			return problem.New(problem.NotFound, "no dead letter %d: it may have been replayed already", seq)
		case errors.Is(err, events.ErrNotOurs):
			return problem.New(problem.Conflict, "dead letter %d is not an event of %s, which replays only its own", seq, service)
		case err != nil:
			return problem.Wrap(problem.Unavailable, err, fmt.Sprintf("dead letter %d could not be replayed", seq))
		}
		server.WriteJSON(w, http.StatusOK, dl)
		return nil
	}
}
