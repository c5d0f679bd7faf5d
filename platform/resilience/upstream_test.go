package resilience

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/discovery"
)

// instance is an upstream instance whose answer the test sets.
type instance struct {
	srv    *httptest.Server
	status atomic.Int64
	hits   atomic.Int64
	hold   chan struct{} // if not nil, requests wait for it
}

func newInstance(t *testing.T) *instance {
	in := &instance{}
	in.status.Store(200)
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.hits.Add(1)
		if h := in.hold; h != nil {
			<-h
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(in.status.Load()))
	}))
	t.Cleanup(in.srv.Close)
	return in
}

// newUpstream registers the instances as service "svc" and returns the
// transport that calls it, with breakers quick enough for a test, and the
// breakers.
func newUpstream(t *testing.T, instances ...*instance) (http.RoundTripper, *Breakers) {
	t.Helper()
	ctx := t.Context()
	reg, err := discovery.Open(ctx, testenv.EmbeddedNATS(t), discovery.Config{Bucket: testenv.Name("registry_"), TTL: time.Second}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range instances {
		if _, err := reg.Register(ctx, discovery.Instance{Service: "svc", ID: discovery.NewInstanceID(), URL: in.srv.URL}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := reg.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Breaker = BreakerConfig{FailureRate: 0.5, MinRequests: 5, Window: 10 * time.Second, OpenFor: 300 * time.Millisecond, Probes: 2}
	cfg.RetryBudget = 1 // these tests count answers, not the budget
	tr := Upstream(w, cfg, prometheus.NewRegistry())
	if tr.Breakers() != tr.next.(*discovery.Transport).Guard.(*Breakers) {
		t.Fatal("Breakers() is not the guard of the transport")
	}
	return tr, tr.Breakers()
}

// state is the breaker state of the instance at url ("" if it has none).
func (b *Breakers) stateOf(url string) circuitbreaker.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ep, cb := range b.made {
		if ep.URL == url {
			return cb.State()
		}
	}
	return -1
}

func get(t *testing.T, tr http.RoundTripper, method string, header ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader(`{"n":1}`)
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://svc/x", body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if body != nil {
		b := `{"n":1}`
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(b)), nil }
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestBreakerHeals: an instance that fails opens its circuit and stops
// getting requests; once it is well, its circuit lets trials through after
// its delay, whether or not anything picks it, and closes.
func TestBreakerHeals(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	tr, breakers := newUpstream(t, a, b)
	a.status.Store(500)
	for range 40 {
		get(t, tr, "POST") // a POST is not retried: each failure counts once
	}
	if s := breakers.stateOf(a.srv.URL); s != circuitbreaker.OpenState {
		t.Fatalf("a answered 500 to every request; its circuit is %v, want open", s)
	}
	if states := breakers.States(); len(states) != 2 || countState(states, "open") != 1 || countState(states, "closed") != 1 {
		t.Fatalf("States() = %v, want a open and b closed", states)
	}
	before := a.hits.Load()
	for range 20 {
		if code := get(t, tr, "GET"); code != 200 {
			t.Fatalf("with a open, a GET got %d", code)
		}
	}
	if got := a.hits.Load() - before; got != 0 {
		t.Fatalf("a got %d requests with its circuit open", got)
	}

	a.status.Store(200)
	time.Sleep(400 * time.Millisecond) // past OpenFor
	for i := 0; breakers.stateOf(a.srv.URL) != circuitbreaker.ClosedState; i++ {
		if i == 50 {
			t.Fatalf("a is well again, its delay passed, and after 50 requests its circuit is %v", breakers.stateOf(a.srv.URL))
		}
		if code := get(t, tr, "GET"); code != 200 {
			t.Fatalf("while a heals: %d", code)
		}
	}
}

func countState(states map[string]string, state string) int {
	n := 0
	for _, s := range states {
		if s == state {
			n++
		}
	}
	return n
}

// TestBreakerJudgesTheInstance: 502, 503 and 504 are an instance speaking
// of what is behind it, and never open its circuit; 500 does.
func TestBreakerJudgesTheInstance(t *testing.T) {
	for _, c := range []struct {
		status int
		opens  bool
	}{{503, false}, {502, false}, {504, false}, {500, true}, {501, true}} {
		a := newInstance(t)
		tr, breakers := newUpstream(t, a)
		a.status.Store(int64(c.status))
		for range 20 {
			get(t, tr, "POST")
		}
		if open := breakers.stateOf(a.srv.URL) == circuitbreaker.OpenState; open != c.opens {
			t.Errorf("20 answers %d: circuit open %v, want %v", c.status, open, c.opens)
		}
	}
}

// TestPanicRouting: with every instance's circuit open, requests still go
// to them rather than fail, so a service whose breakers opened on a
// passing fault serves as soon as it is well.
func TestPanicRouting(t *testing.T) {
	a := newInstance(t)
	tr, breakers := newUpstream(t, a)
	a.status.Store(500)
	for range 20 {
		get(t, tr, "POST")
	}
	if s := breakers.stateOf(a.srv.URL); s != circuitbreaker.OpenState {
		t.Fatalf("circuit %v, want open", s)
	}
	a.status.Store(200)
	if code := get(t, tr, "GET"); code != 200 {
		t.Fatalf("the only instance is open and well: %d, want 200 by panic routing", code)
	}
}

// TestCanceledTrialEnds: a trial request whose caller gives up does not
// leave the half-open circuit without permits for good.
func TestCanceledTrialEnds(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	tr, breakers := newUpstream(t, a, b)
	a.status.Store(500)
	for range 40 {
		get(t, tr, "POST")
	}
	a.status.Store(200)
	time.Sleep(400 * time.Millisecond)
	// The trials hang and their callers leave.
	a.hold = make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://svc/x", strings.NewReader("{}"))
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(a.hold)
	a.hold = nil
	time.Sleep(400 * time.Millisecond)
	for i := 0; breakers.stateOf(a.srv.URL) != circuitbreaker.ClosedState; i++ {
		if i == 50 {
			t.Fatalf("after canceled trials, a's circuit stays %v", breakers.stateOf(a.srv.URL))
		}
		get(t, tr, "GET")
	}
}

// TestFailover: when an instance dies with requests in flight, GETs and
// POSTs with an Idempotency-Key go to its sibling and succeed, and no
// later request is sent on its dead connections.
func TestFailover(t *testing.T) {
	a, b := newInstance(t), newInstance(t)
	tr, _ := newUpstream(t, a, b)
	for range 20 { // connections to both, kept alive
		if code := get(t, tr, "GET"); code != 200 {
			t.Fatalf("warm-up: %d", code)
		}
	}
	// Both hold their requests, so that the picker spreads them.
	a.hold, b.hold = make(chan struct{}), make(chan struct{})
	warm := a.hits.Load()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			method, header := "GET", []string(nil)
			if i%2 == 1 {
				method, header = "POST", []string{"Idempotency-Key", fmt.Sprint("order-", i)}
			}
			if code := get(t, tr, method, header...); code != 200 {
				failed.Add(1)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // all are in flight
	inFlight := a.hits.Load() - warm
	// a dies: its connections break, its port refuses.
	a.srv.Listener.Close()
	a.srv.CloseClientConnections()
	close(b.hold)
	wg.Wait()
	close(a.hold)
	if inFlight < 3 {
		t.Fatalf("only %d requests were in flight at a: nothing tested", inFlight)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of 20 requests failed when one of two instances died under %d of them", failed.Load(), inFlight)
	}
	for range 50 {
		if code := get(t, tr, "POST"); code != 200 {
			t.Fatalf("a POST after a died: %d", code)
		}
	}
	t.Logf("%d requests were in flight at a when it died; all went to b", inFlight)
}
