// Package resilience guards calls to upstream services, with failsafe-go's
// policies: a circuit breaker per instance (plugged into the discovery
// transport as its Guard), a bulkhead per service, and retries of
// idempotent requests with jittered backoff within a retry budget. It
// holds no state machine of its own.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/souk-shop/souk/platform/discovery"
)

// Config tunes the policies.
type Config struct {
	// Retries is how many times an idempotent request without a body
	// (GET, HEAD, OPTIONS, PUT, DELETE) is sent again after a connection
	// error or a 502, 503 or 504.
	Retries int `yaml:"retries"`
	// RetryBudget caps retries at this fraction of the requests in
	// flight to a service, so that retries never multiply an overload.
	RetryBudget float64 `yaml:"retry_budget"`
	// BackoffMin and BackoffMax bound the jittered wait between tries.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// MaxInFlight is the bulkhead: requests in flight to one service.
	MaxInFlight int `yaml:"max_in_flight"`
	// Breaker opens an instance's circuit when, of at least MinRequests
	// in Window, FailureRate or more failed (a 5xx or no answer); it stays
	// open for OpenFor, then lets Probes requests through (half-open) and
	// closes if they all succeed.
	Breaker BreakerConfig `yaml:"breaker"`
}

// BreakerConfig configures the circuit breakers.
type BreakerConfig struct {
	FailureRate float64       `yaml:"failure_rate"`
	MinRequests int           `yaml:"min_requests"`
	Window      time.Duration `yaml:"window"`
	OpenFor     time.Duration `yaml:"open_for"`
	Probes      int           `yaml:"probes"`
}

// Upstream returns the transport by which every call to a service leaves,
// the gateway's and one service's to another, addressed by service name
// (http://catalog/…): a bulkhead and budgeted retries per service
// (Transport), then the P2C picker over w's live instances whose circuits
// admit the request, with a breaker per instance (discovery.Transport
// guarded by Breakers), then HTTP/1.1 to the instance. The policies'
// metrics and the breakers' states are registered with reg.
func Upstream(w *discovery.Watcher, cfg Config, reg prometheus.Registerer) *Transport {
	m := NewMetrics(reg)
	picked := discovery.NewTransport(discovery.NewP2C(w))
	breakers := NewBreakers(cfg.Breaker, m, w)
	reg.MustRegister(breakers)
	picked.Guard = breakers
	picked.Panicked = func(service string) { m.rejected.WithLabelValues(service, "every_circuit_open").Inc() }
	t := NewTransport(picked, cfg, m)
	t.breakers = breakers
	return t
}

// DefaultConfig suits services that answer in milliseconds.
func DefaultConfig() Config {
	return Config{
		Retries: 2, RetryBudget: 0.2, BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		MaxInFlight: 512,
		Breaker:     BreakerConfig{FailureRate: 0.5, MinRequests: 20, Window: 10 * time.Second, OpenFor: 5 * time.Second, Probes: 3},
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Retries < 0 || c.Retries > 10:
		return errors.New("retries: must be from 0 to 10")
	case c.RetryBudget < 0 || c.RetryBudget > 1:
		return errors.New("retry_budget: must be from 0 to 1")
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return errors.New("backoff_min, backoff_max: want 0 < backoff_min <= backoff_max")
	case c.MaxInFlight < 1:
		return errors.New("max_in_flight: must be at least 1")
	case c.Breaker.FailureRate <= 0 || c.Breaker.FailureRate > 1:
		return errors.New("breaker.failure_rate: must be in (0, 1]")
	case c.Breaker.MinRequests < 1 || c.Breaker.Window <= 0 || c.Breaker.OpenFor <= 0 || c.Breaker.Probes < 1:
		return errors.New("breaker: min_requests, window, open_for and probes must be positive")
	}
	return nil
}

// Metrics count what the policies do.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	transitions *prometheus.CounterVec
}

// NewMetrics registers the resilience metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_upstream_requests_total", Help: "Calls to upstream services, by upstream and status code (error: no answer).",
		}, []string{"upstream", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "souk_upstream_request_duration_seconds",
			Help:    "Time from a call to an upstream service to its answer's headers, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"upstream"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_upstream_retries_total", Help: "Requests sent again to an upstream service.",
		}, []string{"upstream"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_upstream_rejected_total", Help: "Requests not sent as asked: refused (bulkhead full, retry budget spent) or, with every circuit open, sent to an instance all the same (panic routing).",
		}, []string{"upstream", "reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_upstream_breaker_transitions_total", Help: "Circuit breaker state changes, by the state entered.",
		}, []string{"upstream", "state"}),
	}
	reg.MustRegister(m.requests, m.duration, m.retries, m.rejected, m.transitions)
	return m
}

// Breakers keeps a circuit breaker per instance, on the instance's
// discovery.Endpoint; it is the discovery transport's Guard. As a
// prometheus.Collector it reports souk_upstream_breakers{upstream,state}:
// how many instances of each upstream have their circuit closed, half-open
// or open.
type Breakers struct {
	cfg     BreakerConfig
	metrics *Metrics
	w       *discovery.Watcher
	desc    *prometheus.Desc

	mu   sync.Mutex
	made map[*discovery.Endpoint]circuitbreaker.CircuitBreaker[any] // for the gauge
}

var (
	_ discovery.Guard      = (*Breakers)(nil)
	_ prometheus.Collector = (*Breakers)(nil)
)

// NewBreakers returns breakers configured by cfg for the instances w
// follows.
func NewBreakers(cfg BreakerConfig, m *Metrics, w *discovery.Watcher) *Breakers {
	return &Breakers{cfg: cfg, metrics: m, w: w, made: map[*discovery.Endpoint]circuitbreaker.CircuitBreaker[any]{},
		desc: prometheus.NewDesc("souk_upstream_breakers",
			"Instances of an upstream service by the state of this process's circuit breaker to them.",
			[]string{"upstream", "state"}, nil)}
}

func (b *Breakers) breaker(ep *discovery.Endpoint) circuitbreaker.CircuitBreaker[any] {
	return ep.GuardState(func() any {
		service := ep.Service
		cb := circuitbreaker.NewBuilder[any]().
			WithFailureRateThreshold(b.cfg.FailureRate, uint(b.cfg.MinRequests), b.cfg.Window).
			WithDelay(b.cfg.OpenFor).
			WithSuccessThreshold(uint(b.cfg.Probes)).
			OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
				b.metrics.transitions.WithLabelValues(service, stateName(e.NewState)).Inc()
			}).
			Build()
		b.mu.Lock()
		b.forgetGone() // a new instance is the moment old ones may have left
		b.made[ep] = cb
		b.mu.Unlock()
		return cb
	}).(circuitbreaker.CircuitBreaker[any])
}

// forgetGone drops the breakers of instances the registry no longer lists;
// b.mu is held.
func (b *Breakers) forgetGone() {
	for ep := range b.made {
		if !b.w.Knows(ep) {
			delete(b.made, ep)
		}
	}
}

// Describe implements prometheus.Collector.
func (b *Breakers) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

// Collect implements prometheus.Collector.
func (b *Breakers) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]*[3]int{} // by upstream: closed, half-open, open
	b.mu.Lock()
	b.forgetGone()
	for ep, cb := range b.made {
		c := counts[ep.Service]
		if c == nil {
			c = new([3]int)
			counts[ep.Service] = c
		}
		switch cb.State() {
		case circuitbreaker.HalfOpenState:
			c[1]++
		case circuitbreaker.OpenState:
			c[2]++
		default:
			c[0]++
		}
	}
	b.mu.Unlock()
	for upstream, c := range counts {
		for i, state := range []string{"closed", "half_open", "open"} {
			ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, float64(c[i]), upstream, state)
		}
	}
}

func stateName(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.OpenState:
		return "open"
	case circuitbreaker.HalfOpenState:
		return "half_open"
	}
	return "closed"
}

// Ready implements discovery.Guard: a closed or half-open circuit may take
// requests, and so may an open one whose delay has passed. Its next
// request is a trial, which turns it half-open: time heals a breaker, not
// being picked, so one that every picker skipped still gets its trial.
func (b *Breakers) Ready(ep *discovery.Endpoint) bool {
	cb := b.breaker(ep)
	return !cb.IsOpen() || cb.RemainingDelay() == 0
}

// Acquire implements discovery.Guard.
func (b *Breakers) Acquire(ep *discovery.Endpoint) bool { return b.breaker(ep).TryAcquirePermit() }

// Record implements discovery.Guard. A breaker judges the instance, not
// what stands behind it: no answer (a broken or refused connection, no
// answer in time) and a 500 or other 5xx of the instance's own are its
// failures; a 502, 503 or 504 is the instance saying that something it
// depends on failed, or that it sheds load, which another instance would
// meet as well, so it counts as an answer. Orders answering 503 because
// the catalog is down thus never opens the breakers on orders. A request
// whose caller gave up says nothing of the instance, but a half-open
// circuit's trial must end or its permit is gone for good: it ends as a
// failure, and the circuit tries again after its delay.
func (b *Breakers) Record(ep *discovery.Endpoint, status int, err error) {
	cb := b.breaker(ep)
	switch {
	case errors.Is(err, context.Canceled):
		if cb.IsHalfOpen() {
			cb.RecordFailure()
		}
	case err != nil || status >= 500 && !dependencyStatus(status):
		cb.RecordFailure()
	default:
		cb.RecordSuccess()
	}
}

// dependencyStatus reports whether a service's 5xx answer speaks of what
// stands behind it rather than of the instance itself.
func dependencyStatus(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// States returns the state of every breaker made so far ("closed",
// "half_open" or "open"), by instance id, for the instances the registry
// still lists. An instance this process never called has none yet.
func (b *Breakers) States() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgetGone()
	out := make(map[string]string, len(b.made))
	for ep, cb := range b.made {
		out[ep.ID] = stateName(cb.State())
	}
	return out
}

// State is the breaker state of ep, for tests and diagnostics.
func (b *Breakers) State(ep *discovery.Endpoint) circuitbreaker.State { return b.breaker(ep).State() }

// Errors the transport returns.
var (
	ErrBulkheadFull = errors.New("too many requests in flight to this service")
)

// Transport applies the bulkhead and the retries to requests for
// http://<service>/…, then sends them through next (the discovery
// transport, with the breakers as its Guard).
type Transport struct {
	next    http.RoundTripper
	cfg     Config
	metrics *Metrics

	breakers *Breakers // nil unless made by Upstream

	mu       sync.Mutex
	services map[string]*upstream
}

// Breakers are the circuit breakers of a transport made by Upstream (nil
// for one made by NewTransport), for those who show their states.
func (t *Transport) Breakers() *Breakers { return t.breakers }

// upstream is one service's bulkhead, retry budget and retry executor.
type upstream struct {
	bulkhead bulkhead.Bulkhead[*http.Response]
	retry    failsafe.Executor[*http.Response]
	retries  prometheus.Counter
}

// NewTransport wraps next.
func NewTransport(next http.RoundTripper, cfg Config, m *Metrics) *Transport {
	return &Transport{next: next, cfg: cfg, metrics: m, services: map[string]*upstream{}}
}

func (t *Transport) upstream(service string) *upstream {
	t.mu.Lock()
	defer t.mu.Unlock()
	u, ok := t.services[service]
	if ok {
		return u
	}
	u = &upstream{
		bulkhead: bulkhead.New[*http.Response](uint(t.cfg.MaxInFlight)),
		retries:  t.metrics.retries.WithLabelValues(service),
	}
	for _, reason := range []string{"bulkhead", "retry_budget", "every_circuit_open"} {
		t.metrics.rejected.WithLabelValues(service, reason) // at zero until it happens
	}
	b := budget.NewBuilder().WithMaxRate(t.cfg.RetryBudget).
		OnBudgetExceeded(func(budget.ExceededEvent) { t.metrics.rejected.WithLabelValues(service, "retry_budget").Inc() }).
		Build()
	policy := retrypolicy.NewBuilder[*http.Response]().
		HandleIf(func(resp *http.Response, err error) bool {
			if err != nil {
				return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
			}
			return resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
				resp.StatusCode == http.StatusGatewayTimeout
		}).
		WithMaxRetries(t.cfg.Retries).
		WithBackoff(t.cfg.BackoffMin, t.cfg.BackoffMax).
		WithJitterFactor(0.5).
		WithBudget(b).
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*http.Response]) {
			if r := e.LastResult(); r != nil { // the answer we will not use
				_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
				_ = r.Body.Close()
			}
			u.retries.Inc()
		}).
		ReturnLastFailure().
		Build()
	u.retry = failsafe.With[*http.Response](policy)
	t.services[service] = u
	return u
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	service := req.URL.Host
	u := t.upstream(service)
	if !u.bulkhead.TryAcquirePermit() {
		t.metrics.rejected.WithLabelValues(service, "bulkhead").Inc()
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%s: %w", service, ErrBulkheadFull)
	}
	start := time.Now()
	var resp *http.Response
	var err error
	defer func() {
		code := "error"
		if resp != nil {
			code = strconv.Itoa(resp.StatusCode)
		}
		t.metrics.requests.WithLabelValues(service, code).Inc()
		t.metrics.duration.WithLabelValues(service).Observe(time.Since(start).Seconds())
	}()
	if retryable(req) {
		// The attempts go to different instances while there are others,
		// each with its own copy of the body.
		req = req.WithContext(discovery.WithAttempts(req.Context(), &discovery.Attempts{}))
		first := true
		resp, err = u.retry.WithContext(req.Context()).Get(func() (*http.Response, error) {
			attempt := req
			if !first && req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				attempt = req.Clone(req.Context())
				attempt.Body = body
			}
			first = false
			return t.next.RoundTrip(attempt)
		})
	} else {
		resp, err = t.next.RoundTrip(req)
	}
	if err != nil {
		u.bulkhead.ReleasePermit()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: u.bulkhead.ReleasePermit}
	return resp, nil
}

// retryable reports whether req may be sent more than once: its method is
// idempotent and it has no body to send again, or it carries an
// Idempotency-Key (the service answers a repeat as it answered the first)
// and its body can be had again (GetBody).
func retryable(req *http.Request) bool {
	noBody := req.Body == nil || req.Body == http.NoBody
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return noBody
	}
	return req.Header.Get("Idempotency-Key") != "" && (noBody || req.GetBody != nil)
}

// releasingBody gives the bulkhead permit back when the response is closed.
type releasingBody struct {
	io.ReadCloser
	release func()
	done    atomic.Bool
}

func (b *releasingBody) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.release()
	}
	return b.ReadCloser.Close()
}
