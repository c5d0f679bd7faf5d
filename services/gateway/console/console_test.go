package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/telemetry"
)

// instances is a registry's view, fixed.
type instances map[string][]discovery.Instance

func (m instances) Instances(service string) []discovery.Instance { return m[service] }

// breakers are breaker states by instance id, fixed.
type breakers map[string]string

func (b breakers) States() map[string]string { return b }

// as makes r a request of the gateway's on behalf of a user with role
// ("" for nobody).
func as(r *http.Request, role string) *http.Request {
	id := auth.Identity{}
	if role != "" {
		id = auth.Identity{UserID: "u-1", Role: role, Method: "jwt"}
	}
	return r.WithContext(auth.WithCaller(r.Context(), auth.Caller{Sender: auth.GatewayIdentity, Identity: id, Addr: "127.0.0.1"}))
}

// serve asks c for method path as role and returns the recorded answer.
func serve(c *Console, method, path, role string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	c.ServeHTTP(w, as(httptest.NewRequest(method, path, nil), role))
	return w
}

// problemOf decodes a problem+json answer, failing unless it is one.
func problemOf(t *testing.T, call string, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: Content-Type %q, want application/problem+json; body %s", call, ct, w.Body)
	}
	var p map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("%s: %v in %s", call, err, w.Body)
	}
	return p
}

// TestAdminOnly: every route answers 401 to nobody and 403 to a customer,
// in problem+json, whatever the gateway's configuration says.
func TestAdminOnly(t *testing.T) {
	c := New(Deps{Services: []string{"orders"}, Instances: instances{}, Breakers: breakers{}})
	for _, pattern := range Patterns() {
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{id}", order1, "{seq}", "1").Replace(path)
		for _, tc := range []struct {
			role   string
			status int
		}{{"", http.StatusUnauthorized}, {auth.RoleCustomer, http.StatusForbidden}} {
			w := serve(c, method, path, tc.role)
			call := method + " " + path + " as " + tc.role
			if w.Code != tc.status {
				t.Errorf("%s: %d, want %d; body %s", call, w.Code, tc.status, w.Body)
				continue
			}
			problemOf(t, call, w)
		}
	}
}

// TestTopology: each service's instances from the registry, oldest first,
// with what its /readyz said and the gateway's breaker to it; services
// without instances listed empty, and the gateway itself listed.
func TestTopology(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}))
	defer ready.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	gone := closedURL(t)

	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := New(Deps{
		Services: []string{"orders", "inventory", "catalog"},
		Instances: instances{
			"orders": {
				{Service: "orders", ID: "o2", URL: notReady.URL, Started: t0.Add(time.Minute)},
				{Service: "orders", ID: "o1", URL: ready.URL, Started: t0},
			},
			"inventory": {{Service: "inventory", ID: "i1", URL: gone, Started: t0}},
			"gateway":   {{Service: "gateway", ID: "g1", URL: ready.URL, Started: t0}},
		},
		Breakers: breakers{"o1": "closed", "o2": "open", "gone-long-ago": "half_open"},
	})
	w := serve(c, "GET", "/admin/topology", auth.RoleAdmin)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /admin/topology: %d %s", w.Code, w.Body)
	}
	var top Topology
	if err := json.Unmarshal(w.Body.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	var names []string
	for _, s := range top.Services {
		names = append(names, s.Name)
		got[s.Name] = []string{}
		for _, in := range s.Instances {
			got[s.Name] = append(got[s.Name], in.ID+" "+in.Health+" "+in.Breaker)
		}
	}
	want := map[string][]string{
		"orders":    {"o1 ready closed", "o2 not_ready open"},
		"inventory": {"i1 unreachable none"},
		"catalog":   {},
		"gateway":   {"g1 ready none"},
	}
	if strings.Join(names, ",") != "orders,inventory,catalog,gateway" {
		t.Errorf("services listed: %v", names)
	}
	for name, w := range want {
		if strings.Join(got[name], "; ") != strings.Join(w, "; ") {
			t.Errorf("%s: instances %q, want %q", name, got[name], w)
		}
	}
}

// closedURL is the base URL of a port nothing listens on any more.
func closedURL(t *testing.T) string { return "http://" + testenv.FreeAddr(t) }

// TestTopologyStream: the stream says retry, then sends the topology as
// an event "topology".
func TestTopologyStream(t *testing.T) {
	c := New(Deps{Services: []string{"orders"}, Instances: instances{}, Breakers: breakers{}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.ServeHTTP(w, as(r, auth.RoleAdmin))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/admin/topology/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /admin/topology/stream: %d %s", resp.StatusCode, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() && len(lines) < 5 {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
		if strings.HasPrefix(sc.Text(), "data: ") {
			break
		}
	}
	if len(lines) != 3 || lines[0] != "retry: 1000" || lines[1] != "event: topology" {
		t.Fatalf("the stream began %q", lines)
	}
	var top Topology
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[2], "data: ")), &top); err != nil || len(top.Services) != 2 {
		t.Fatalf("the first topology: %v, %+v", err, top)
	}
}

// TestQuantile: the p-quantile of a histogram, interpolated inside its
// bucket as Prometheus does.
func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
		ok      bool
	}{
		{"empty", 0.99, map[float64]float64{}, 0, false},
		{"no samples", 0.99, map[float64]float64{0.1: 0, inf: 0}, 0, false},
		{"all in the first bucket", 0.5, map[float64]float64{0.1: 10, 1: 10, inf: 10}, 0.05, true},
		{"the 99th of 100 in the second", 0.99, map[float64]float64{0.1: 90, 1: 100, inf: 100}, 0.1 + 0.9*9.0/10, true},
		{"beyond the last bound", 0.99, map[float64]float64{0.1: 50, 1: 50, inf: 100}, 1, true},
	} {
		got, ok := quantile(tc.q, tc.buckets)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: quantile(%v, %v) = %v, %v; want %v, %v", tc.name, tc.q, tc.buckets, got, ok, tc.want, tc.ok)
		}
	}
}

// TestTraffic: two rounds of scrapes of two instances' /metrics and the
// gateway's own registry make a point per service: requests a second,
// the share of 5xx and the p99, probes and scrapes left out; and the
// events backlog, the outbox summed and a consumer's lag not.
func TestTraffic(t *testing.T) {
	type instance struct {
		http            *telemetry.HTTPMetrics
		outbox, pending prometheus.Gauge
		url             string
	}
	newInstance := func(outbox float64) instance {
		reg := telemetry.NewRegistry("orders")
		in := instance{http: telemetry.NewHTTPMetrics(reg)}
		in.outbox = prometheus.NewGauge(prometheus.GaugeOpts{Name: "souk_outbox_pending"})
		in.pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "souk_consumer_pending", ConstLabels: prometheus.Labels{"consumer": "orders-StockReserved"}})
		reg.MustRegister(in.outbox, in.pending)
		in.outbox.Set(outbox)
		srv := httptest.NewServer(reg.Handler())
		t.Cleanup(srv.Close)
		in.url = srv.URL
		return in
	}
	a, b := newInstance(3), newInstance(-1) // -1: b's database did not answer
	gwReg := telemetry.NewRegistry("gateway")
	gw := telemetry.NewHTTPMetrics(gwReg)

	c := New(Deps{
		Services:  []string{"orders", "catalog"},
		Instances: instances{"orders": {{ID: "a", URL: a.url}, {ID: "b", URL: b.url}}},
		Breakers:  breakers{},
		Gateway:   gwReg.Gatherer(),
		Every:     time.Minute,
	})
	ctx := context.Background()
	a.http.Observe("GET /orders/{id}", "GET", 200, time.Millisecond) // before the first round: not counted
	start := time.Now()
	c.traffic.sample(ctx)
	time.Sleep(100 * time.Millisecond)
	for range 8 {
		a.http.Observe("GET /orders/{id}", "GET", 200, 10*time.Millisecond)
		b.http.Observe("POST /orders", "POST", 201, 10*time.Millisecond)
	}
	for range 2 {
		a.http.Observe("POST /orders", "POST", 503, 2*time.Second)
		b.http.Observe("POST /orders", "POST", 500, 2*time.Second)
	}
	for range 50 {
		a.http.Observe("GET /readyz", "GET", 200, 3*time.Second) // probes: left out
		b.http.Observe("GET /metrics", "GET", 200, 3*time.Second)
	}
	for range 5 {
		gw.Observe("/api/products", "GET", 200, 20*time.Millisecond)
	}
	a.pending.Set(7)
	b.pending.Set(7)
	c.traffic.sample(ctx)
	elapsed := time.Since(start)

	w := serve(c, "GET", "/admin/traffic", auth.RoleAdmin)
	var got struct {
		Every    float64          `json:"every_seconds"`
		Services []ServiceTraffic `json:"services"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil {
		t.Fatalf("GET /admin/traffic: %d %v %s", w.Code, err, w.Body)
	}
	by := map[string]ServiceTraffic{}
	for _, s := range got.Services {
		by[s.Name] = s
	}
	if got.Every != 60 || len(got.Services) != 3 || len(by["catalog"].Points) != 0 {
		t.Fatalf("traffic: every %v s, services %+v", got.Every, got.Services)
	}
	for _, tc := range []struct {
		service   string
		requests  float64
		errorRate float64
		p99       [2]float64 // the bucket it must fall in, ms
	}{
		{"orders", 20, 0.2, [2]float64{1000, 2500}},
		{"gateway", 5, 0, [2]float64{10, 25}},
	} {
		pts := by[tc.service].Points
		if len(pts) != 1 {
			t.Errorf("%s: %d points after two rounds, want 1", tc.service, len(pts))
			continue
		}
		p := pts[0]
		// The interval is at least the 100 ms slept and at most elapsed.
		if lo, hi := tc.requests/elapsed.Seconds(), tc.requests/0.1; p.RPS < lo || p.RPS > hi {
			t.Errorf("%s: %v requests a second, want within [%v, %v]", tc.service, p.RPS, lo, hi)
		}
		if math.Abs(p.ErrorRate-tc.errorRate) > 1e-9 {
			t.Errorf("%s: error rate %v, want %v", tc.service, p.ErrorRate, tc.errorRate)
		}
		if p.P99MS == nil || *p.P99MS <= tc.p99[0] || *p.P99MS > tc.p99[1] {
			t.Errorf("%s: p99 %v ms, want in (%v, %v]", tc.service, p.P99MS, tc.p99[0], tc.p99[1])
		}
	}
	bl := by["orders"].Backlog
	if bl.OutboxPending != 3 || len(bl.Consumers) != 1 || bl.Consumers[0].Name != "orders-StockReserved" || bl.Consumers[0].Pending != 7 {
		t.Errorf("orders' backlog: %+v", bl)
	}
}

// TestTrafficRestart: an instance whose counters went down restarted; its
// round adds nothing, rather than a negative rate.
func TestTrafficRestart(t *testing.T) {
	s := newSampler(Deps{Keep: time.Hour}, nil)
	t0 := time.Now()
	round := func(at time.Time, requests float64) {
		s.add([]scraped{{service: "orders", id: "a", at: at, families: requestsFamily(requests)}})
	}
	round(t0, 100)
	round(t0.Add(time.Second), 110)
	round(t0.Add(2*time.Second), 4) // restarted
	round(t0.Add(3*time.Second), 14)
	pts := s.snapshot([]string{"orders"})[0].Points
	if len(pts) != 2 || pts[0].RPS != 10 || pts[1].RPS != 10 {
		t.Fatalf("points %+v, want two of 10 requests a second", pts)
	}
}

// requestsFamily is a scrape with n requests of one route.
func requestsFamily(n float64) map[string]*dto.MetricFamily {
	reg := prometheus.NewRegistry()
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "souk_http_requests_total"}, []string{"route", "method", "code"})
	reg.MustRegister(cv)
	cv.WithLabelValues("GET /products", "GET", "200").Add(n)
	fams, _ := reg.Gather()
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// TestDeadLetters: with no dead letter, the list is empty and a replay
// answers 404 in problem+json, by the console and by a service alike; a
// seq that is no number is refused with its field named.
func TestDeadLetters(t *testing.T) {
	js, err := jetstream.New(testenv.EmbeddedNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	c := New(Deps{Services: []string{"orders"}, Instances: instances{}, Breakers: breakers{}, JS: js})
	if w := serve(c, "GET", "/admin/dead-letters", auth.RoleAdmin); w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"items":[]}` {
		t.Errorf("GET /admin/dead-letters: %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct {
		path   string
		status int
		words  string
	}{
		{"/admin/dead-letters/42/replay", 404, "no dead letter 42"},
		{"/admin/dead-letters/x/replay", 400, "seq"},
		{"/admin/dead-letters/0/replay", 400, "seq"},
	} {
		w := serve(c, "POST", tc.path, auth.RoleAdmin)
		call := "POST " + tc.path
		if w.Code != tc.status {
			t.Errorf("%s: %d, want %d; %s", call, w.Code, tc.status, w.Body)
			continue
		}
		if p := problemOf(t, call, w); !strings.Contains(w.Body.String(), tc.words) {
			t.Errorf("%s: the problem %v does not say %q", call, p, tc.words)
		}
	}

	// Three dead letters, the second replayed (deleted): the list skips it.
	ctx := context.Background()
	if err := events.EnsureDeadLetterStream(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	for i, reason := range []string{"first", "second", "third"} {
		m := nats.NewMsg(events.DeadLetterSubject("inventory-OrderPlaced"))
		m.Header.Set(events.HdrDeadReason, reason)
		m.Header.Set(events.HdrDeadConsumer, "inventory-OrderPlaced")
		m.Header.Set(events.HdrDeadStream, "souk_orders")
		m.Header.Set(events.HdrDeadDeliveries, strconv.Itoa(i+1))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := js.Stream(ctx, events.DeadLetterStream); err != nil || st.DeleteMsg(ctx, 2) != nil {
		t.Fatalf("delete the second dead letter: %v", err)
	}
	w := serve(c, "GET", "/admin/dead-letters", auth.RoleAdmin)
	var list struct{ Items []events.DeadLetter }
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
		t.Fatalf("GET /admin/dead-letters: %d %v %s", w.Code, err, w.Body)
	}
	var got []string
	for _, d := range list.Items {
		got = append(got, fmt.Sprintf("%d %s %s %d", d.Seq, d.Consumer, d.Reason, d.Deliveries))
	}
	if want := "1 inventory-OrderPlaced first 1; 3 inventory-OrderPlaced third 3"; strings.Join(got, "; ") != want {
		t.Errorf("GET /admin/dead-letters lists %q, want %q", got, want)
	}

	// The route each service serves for the console.
	mux := http.NewServeMux()
	replay := ReplayHandler("orders", js)
	mux.HandleFunc("POST /dead-letters/{seq}/replay", func(w http.ResponseWriter, r *http.Request) {
		if err := replay(w, r); err != nil {
			problem.Write(w, err)
		}
	})
	for _, tc := range []struct {
		role   string
		status int
	}{{auth.RoleCustomer, 403}, {auth.RoleAdmin, 404}} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, as(httptest.NewRequest("POST", "/dead-letters/42/replay", nil), tc.role))
		if w.Code != tc.status {
			t.Errorf("orders' POST /dead-letters/42/replay as %s: %d, want %d; %s", tc.role, w.Code, tc.status, w.Body)
		}
	}
}

// Orders' ids: UUIDs, as the route wants.
const (
	order1 = "0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c61"
	order2 = "0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c62"
	order3 = "0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c63"
)

// TestOrderTrace: the trace whose spans carry an order's id, from the
// traces kept in memory; 404 in words for an order no kept trace names.
func TestOrderTrace(t *testing.T) {
	ring := telemetry.NewRing(10)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(ring))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("test")
	for _, order := range []string{order1, order2} {
		ctx, root := tr.Start(context.Background(), "POST /orders")
		_, child := tr.Start(ctx, "insert")
		child.SetAttributes(attribute.String("order.id", order))
		child.End()
		root.End()
	}
	c := New(Deps{Services: []string{"orders"}, Instances: instances{}, Breakers: breakers{}, Ring: ring})
	w := serve(c, "GET", "/admin/orders/"+order2+"/trace", auth.RoleAdmin)
	var got struct {
		TraceID string           `json:"trace_id"`
		Spans   []telemetry.Span `json:"spans"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil {
		t.Fatalf("GET the trace of order 2: %d %v %s", w.Code, err, w.Body)
	}
	if len(got.Spans) != 2 || got.Spans[0].TraceID != got.TraceID {
		t.Fatalf("the trace of order 2: %+v", got)
	}
	for _, sp := range got.Spans {
		if a := sp.Attributes["order.id"]; a != "" && a != order2 {
			t.Fatalf("the trace of order 2 has a span of %s", a)
		}
	}
	w = serve(c, "GET", "/admin/orders/"+order3+"/trace", auth.RoleAdmin)
	if w.Code != 404 {
		t.Fatalf("GET the trace of order 3: %d %s", w.Code, w.Body)
	}
	problemOf(t, "GET the trace of order 3", w)
}
