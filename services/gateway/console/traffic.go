package console

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/souk-shop/souk/platform/server"
)

// Point is one service's traffic over one sampling interval.
type Point struct {
	At        time.Time `json:"at"`
	RPS       float64   `json:"rps"`
	ErrorRate float64   `json:"error_rate"`       // the share of answers that were 5xx, 0 to 1
	P99MS     *float64  `json:"p99_ms,omitempty"` // absent when there was no request
}

// Backlog is what a service has not yet done with events: its outbox
// rows not yet published, and, per consumer, the messages not yet
// delivered (the lag) and those given up on.
type Backlog struct {
	OutboxPending       float64         `json:"outbox_pending"`
	OutboxOldestSeconds float64         `json:"outbox_oldest_seconds"`
	Consumers           []ConsumerState `json:"consumers"`
}

// ConsumerState is one consumer's lag and dead letters.
type ConsumerState struct {
	Name         string  `json:"name"`
	Pending      float64 `json:"pending"`
	DeadLettered float64 `json:"dead_lettered"`
}

// ServiceTraffic is one service's points, oldest first, and backlog now.
type ServiceTraffic struct {
	Name    string  `json:"name"`
	Points  []Point `json:"points"`
	Backlog Backlog `json:"backlog"`
}

// counters are one instance's cumulative counts at a scrape.
type counters struct {
	at       time.Time
	requests float64
	errors   float64
	buckets  map[float64]float64 // cumulative count by upper bound
}

// sampler scrapes every instance's /metrics (the gateway's own in
// process) every Every and keeps, per service, a point per interval.
type sampler struct {
	d      Deps
	client *http.Client

	mu      sync.Mutex
	last    map[string]counters // by instance id
	points  map[string][]Point  // by service
	backlog map[string]Backlog  // by service
}

func newSampler(d Deps, client *http.Client) *sampler {
	return &sampler{d: d, client: client, last: map[string]counters{}, points: map[string][]Point{}, backlog: map[string]Backlog{}}
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.d.Every)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scraped is one instance's metric families.
type scraped struct {
	service, id string
	at          time.Time
	families    map[string]*dto.MetricFamily
}

// sample scrapes every instance at once and adds a point per service.
func (s *sampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.d.Every)
	defer cancel()
	var mu sync.Mutex
	var all []scraped
	var wg sync.WaitGroup
	for _, name := range s.d.Services {
		for _, in := range s.d.Instances.Instances(name) {
			wg.Go(func() {
				fams, err := s.scrape(ctx, in.URL+"/metrics")
				if err != nil {
					return // it left, or is down: the topology says which
				}
				mu.Lock()
				all = append(all, scraped{service: name, id: in.ID, at: time.Now(), families: fams})
				mu.Unlock()
			})
		}
	}
	if s.d.Gateway != nil {
		if fams, err := s.d.Gateway.Gather(); err == nil {
			m := map[string]*dto.MetricFamily{}
			for _, f := range fams {
				m[f.GetName()] = f
			}
			all = append(all, scraped{service: "gateway", id: "gateway", at: time.Now(), families: m})
		}
	}
	wg.Wait()
	s.add(all)
}

func (s *sampler) scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// operational routes are probes and scrapes: not the shop's traffic.
func operational(route string) bool {
	switch route {
	case "GET /metrics", "GET /healthz", "GET /readyz":
		return true
	}
	return false
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// countersOf reads an instance's request counts and latency histogram,
// probes and scrapes left out.
func countersOf(sc scraped) counters {
	c := counters{at: sc.at, buckets: map[float64]float64{}}
	if f := sc.families["souk_http_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			if operational(label(m, "route")) {
				continue
			}
			v := m.GetCounter().GetValue()
			c.requests += v
			if strings.HasPrefix(label(m, "code"), "5") {
				c.errors += v
			}
		}
	}
	if f := sc.families["souk_http_request_duration_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			if operational(label(m, "route")) {
				continue
			}
			// A scrape's text lists the +Inf bucket, a gathering does not:
			// it is the sample count either way.
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) {
					c.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			}
			c.buckets[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	return c
}

// backlogOf reads a service's outbox and consumer gauges, summed over its
// instances (the oldest row: the largest age).
func backlogOf(b *Backlog, sc scraped) {
	if f := sc.families["souk_outbox_pending"]; f != nil {
		for _, m := range f.GetMetric() {
			// -1 says the database did not answer: nothing to add.
			b.OutboxPending += math.Max(0, m.GetGauge().GetValue())
		}
	}
	if f := sc.families["souk_outbox_oldest_pending_age_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			b.OutboxOldestSeconds = math.Max(b.OutboxOldestSeconds, m.GetGauge().GetValue())
		}
	}
	consumer := func(name string) *ConsumerState {
		for i := range b.Consumers {
			if b.Consumers[i].Name == name {
				return &b.Consumers[i]
			}
		}
		b.Consumers = append(b.Consumers, ConsumerState{Name: name})
		return &b.Consumers[len(b.Consumers)-1]
	}
	if f := sc.families["souk_consumer_pending"]; f != nil {
		for _, m := range f.GetMetric() {
			// Every instance reads the same durable consumer: the lag is
			// the stream's, not the sum.
			c := consumer(label(m, "consumer"))
			c.Pending = math.Max(c.Pending, m.GetGauge().GetValue())
		}
	}
	if f := sc.families["souk_consumer_events_total"]; f != nil {
		for _, m := range f.GetMetric() {
			if label(m, "outcome") == "dead_lettered" {
				consumer(label(m, "consumer")).DeadLettered += m.GetCounter().GetValue()
			}
		}
	}
}

// add turns one round of scrapes into a point per service: the counts
// since each instance's previous scrape (an instance seen for the first
// time, or restarted, contributes from its next one).
func (s *sampler) add(all []scraped) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type sums struct {
		requests, errors, seconds float64
		buckets                   map[float64]float64
		n                         int
	}
	by := map[string]*sums{}
	backlog := map[string]*Backlog{}
	seen := map[string]bool{}
	for _, sc := range all {
		seen[sc.id] = true
		c := countersOf(sc)
		b := backlog[sc.service]
		if b == nil {
			b = &Backlog{Consumers: []ConsumerState{}}
			backlog[sc.service] = b
		}
		backlogOf(b, sc)
		prev, ok := s.last[sc.id]
		s.last[sc.id] = c
		if !ok || c.requests < prev.requests {
			continue
		}
		x := by[sc.service]
		if x == nil {
			x = &sums{buckets: map[float64]float64{}}
			by[sc.service] = x
		}
		x.requests += c.requests - prev.requests
		x.errors += c.errors - prev.errors
		x.seconds = math.Max(x.seconds, c.at.Sub(prev.at).Seconds())
		for le, n := range c.buckets {
			x.buckets[le] += n - prev.buckets[le]
		}
		x.n++
	}
	for id := range s.last {
		if !seen[id] {
			delete(s.last, id)
		}
	}
	now := time.Now().UTC()
	for service, x := range by {
		p := Point{At: now}
		if x.seconds > 0 {
			p.RPS = x.requests / x.seconds
		}
		if x.requests > 0 {
			p.ErrorRate = x.errors / x.requests
			if q, ok := quantile(0.99, x.buckets); ok {
				ms := q * 1000
				p.P99MS = &ms
			}
		}
		pts := append(s.points[service], p)
		cut := 0
		for cut < len(pts) && now.Sub(pts[cut].At) > s.d.Keep {
			cut++
		}
		s.points[service] = pts[cut:]
	}
	for service, b := range backlog {
		slices.SortFunc(b.Consumers, func(x, y ConsumerState) int { return strings.Compare(x.Name, y.Name) })
		s.backlog[service] = *b
	}
}

// quantile estimates the q-quantile of a histogram given as cumulative
// counts by upper bound, interpolating linearly inside the bucket it
// falls in, as Prometheus's histogram_quantile does.
func quantile(q float64, buckets map[float64]float64) (float64, bool) {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, false
	}
	total := buckets[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, le := range bounds {
		n := buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return prevBound, true // beyond the last finite bound: say that bound
			}
			if n == prevCount {
				return le, true
			}
			return prevBound + (le-prevBound)*(rank-prevCount)/(n-prevCount), true
		}
		prevBound, prevCount = le, n
	}
	return prevBound, true
}

// snapshot returns every service's points and backlog.
func (s *sampler) snapshot(names []string) []ServiceTraffic {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceTraffic, 0, len(names))
	for _, name := range names {
		// A service none of whose instances answered gets no new point:
		// its old ones leave the window all the same.
		pts := []Point{}
		for _, p := range s.points[name] {
			if time.Since(p.At) <= s.d.Keep {
				pts = append(pts, p)
			}
		}
		b, ok := s.backlog[name]
		if !ok {
			b = Backlog{Consumers: []ConsumerState{}}
		}
		out = append(out, ServiceTraffic{Name: name, Points: pts, Backlog: b})
	}
	return out
}

// trafficPage answers the points from Prometheus when one is configured
// and answers within 3 s; else, saying why, from the gateway's own
// samples. The backlog is always the gateway's.
func (c *Console) trafficPage(w http.ResponseWriter, r *http.Request) error {
	services := c.traffic.snapshot(append([]string{"gateway"}, c.d.Services...))
	out := map[string]any{"every_seconds": c.d.Every.Seconds(), "source": "gateway", "services": services}
	if c.prom != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		pts, err := c.prom.points(ctx, time.Now())
		cancel()
		if err != nil {
			if c.prom.warnNow(time.Now()) { // at most once a minute, whatever the pages' polling
				c.d.Log.Warn("console: the traffic comes from the gateway's samples", "err", err)
			}
			out["source_error"] = err.Error()
		} else {
			out["source"], out["prometheus"] = "prometheus", c.prom.url
			for i := range services {
				services[i].Points = pts[services[i].Name]
				if services[i].Points == nil {
					services[i].Points = []Point{}
				}
			}
		}
	}
	server.WriteJSON(w, http.StatusOK, out)
	return nil
}
