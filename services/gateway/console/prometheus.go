package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// shopRoutes leaves probes and scrapes out, as the gateway's own sampling
// does (operational).
const shopRoutes = `route!~"GET /(metrics|healthz|readyz)"`

// The traffic queries, per service over a rate window (%[1]s): requests
// a second, the share of 5xx, and the p99 latency in seconds.
const (
	rpsQuery = `sum by (service) (rate(souk_http_requests_total{` + shopRoutes + `}[%[1]s]))`
	errQuery = `sum by (service) (rate(souk_http_requests_total{code=~"5..",` + shopRoutes + `}[%[1]s]))
  / sum by (service) (rate(souk_http_requests_total{` + shopRoutes + `}[%[1]s]))`
	p99Query = `histogram_quantile(0.99, sum by (service, le) (rate(souk_http_request_duration_seconds_bucket{` + shopRoutes + `}[%[1]s])))`
)

// DefaultRateWindow is the window of the traffic queries' rate(): four
// scrapes or more at the usual intervals up to 15 s.
const DefaultRateWindow = time.Minute

// promSource reads the services' traffic from a Prometheus that scrapes
// them: the same three figures the gateway samples itself, over the same
// window, at the same step.
type promSource struct {
	api    promv1.API
	url    string
	keep   time.Duration
	step   time.Duration
	window string // of rate(), as PromQL writes a duration

	mu     sync.Mutex
	warned time.Time // when a failure was last logged
}

// warnNow says whether a failure at now should be logged: the first, and
// then one a minute.
func (p *promSource) warnNow(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.warned) < time.Minute {
		return false
	}
	p.warned = now
	return true
}

// CheckURL says whether u can be Deps.Prometheus or Deps.Jaeger: an http
// or https URL with a host.
func CheckURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("%q is not a base URL such as http://127.0.0.1:9090", u)
	}
	return nil
}

// newPromSource reads from the Prometheus at base, checked with CheckURL.
func newPromSource(base string, keep, step, window time.Duration) *promSource {
	c, err := api.NewClient(api.Config{Address: base, Client: &http.Client{Timeout: 5 * time.Second}})
	if err != nil { // only for a URL that does not parse, which was checked
		panic(fmt.Sprintf("console: Prometheus at %q: %v", base, err))
	}
	return &promSource{api: promv1.NewAPI(c), url: base, keep: keep, step: step, window: model.Duration(window).String()}
}

// points returns each service's points over the window, oldest first, by
// service name.
func (p *promSource) points(ctx context.Context, now time.Time) (map[string][]Point, error) {
	r := promv1.Range{Start: now.Add(-p.keep), End: now, Step: p.step}
	var rps model.Matrix
	var errs, p99 map[string]map[model.Time]float64 // by service, by time
	for _, q := range []struct {
		query string
		into  func(model.Matrix)
	}{
		{rpsQuery, func(m model.Matrix) { rps = m }},
		{errQuery, func(m model.Matrix) { errs = byTime(m) }},
		{p99Query, func(m model.Matrix) { p99 = byTime(m) }},
	} {
		v, _, _, err := p.api.QueryRange(ctx, fmt.Sprintf(q.query, p.window), r)
		if err != nil {
			return nil, fmt.Errorf("Prometheus at %s: %w", p.url, err)
		}
		m, ok := v.(model.Matrix)
		if !ok {
			return nil, fmt.Errorf("Prometheus at %s answered a %s, not a matrix", p.url, v.Type())
		}
		q.into(m)
	}
	// The three queries are evaluated at the same steps: the request
	// rate's lead, and the others are read at its times.
	out := map[string][]Point{}
	for _, s := range rps {
		name := string(s.Metric["service"])
		for _, v := range s.Values {
			pt := Point{At: v.Timestamp.Time().UTC(), RPS: float64(v.Value)}
			if e, ok := errs[name][v.Timestamp]; ok && !math.IsNaN(e) {
				pt.ErrorRate = e
			}
			if q, ok := p99[name][v.Timestamp]; ok && !math.IsNaN(q) && !math.IsInf(q, 0) && pt.RPS > 0 {
				ms := q * 1000
				pt.P99MS = &ms
			}
			out[name] = append(out[name], pt)
		}
	}
	return out, nil
}

// byTime indexes a matrix's values by service and time.
func byTime(m model.Matrix) map[string]map[model.Time]float64 {
	out := map[string]map[model.Time]float64{}
	for _, s := range m {
		at := map[model.Time]float64{}
		for _, v := range s.Values {
			at[v.Timestamp] = float64(v.Value)
		}
		out[string(s.Metric["service"])] = at
	}
	return out
}
