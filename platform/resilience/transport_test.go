package resilience

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// answers is an upstream that answers each request with the next status
// of a script (0: no answer), and counts what it was sent.
type answers struct {
	mu     sync.Mutex
	script []int
	sent   atomic.Int64
	hold   chan struct{} // if set, answers wait for it
}

func (a *answers) RoundTrip(req *http.Request) (*http.Response, error) {
	a.sent.Add(1)
	if a.hold != nil {
		<-a.hold
	}
	a.mu.Lock()
	status := 200
	if len(a.script) > 0 {
		status, a.script = a.script[0], a.script[1:]
	}
	a.mu.Unlock()
	if status == 0 {
		return nil, errors.New("connection reset by peer")
	}
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader("x")), Request: req}, nil
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 2*time.Millisecond
	return cfg
}

func send(t *testing.T, tr http.RoundTripper, method string) (int, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, _ := http.NewRequest(method, "http://catalog/products", body)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestRetries: an idempotent request without a body is sent again after a
// 502, 503, 504 or no answer, up to Retries times; a POST, a 500 and a 4xx
// are not.
func TestRetries(t *testing.T) {
	for _, c := range []struct {
		name   string
		method string
		script []int
		status int // 0: an error
		sent   int64
	}{
		{"GET after a 503", "GET", []int{503, 200}, 200, 2},
		{"GET after no answer and a 502", "GET", []int{0, 502, 200}, 200, 3},
		{"GET gives up after two retries", "GET", []int{504, 504, 504, 200}, 504, 3},
		{"GET after a 500 is not retried", "GET", []int{500, 200}, 500, 1},
		{"GET after a 404 is not retried", "GET", []int{404, 200}, 404, 1},
		{"DELETE after a 503", "DELETE", []int{503, 200}, 200, 2},
		{"POST is never retried", "POST", []int{503, 200}, 503, 1},
		{"POST after no answer is not retried", "POST", []int{0, 200}, 0, 1},
	} {
		up := &answers{script: c.script}
		tr := NewTransport(up, testConfig(), NewMetrics(prometheus.NewRegistry()))
		status, err := send(t, tr, c.method)
		if status != c.status || (c.status == 0) != (err != nil) || up.sent.Load() != c.sent {
			t.Errorf("%s: status %d (%v) after %d sends; want %d after %d", c.name, status, err, up.sent.Load(), c.status, c.sent)
		}
	}
}

// TestRetryBudget: when everything fails, the retries in flight to a
// service stay within the budget's share of the requests in flight (at
// least three), instead of multiplying the load.
func TestRetryBudget(t *testing.T) {
	cfg := testConfig()
	cfg.RetryBudget = 0.2
	const requests = 50
	first := make(chan struct{}) // holds the first tries until all are in flight
	retried := make(chan struct{})
	var tries atomic.Int64
	up := roundTripper(func(req *http.Request) (*http.Response, error) {
		if tries.Add(1) <= requests {
			<-first
		} else {
			<-retried // retries wait, so that they are in flight together
		}
		return &http.Response{StatusCode: 503, Body: http.NoBody, Request: req}, nil
	})
	tr := NewTransport(up, cfg, NewMetrics(prometheus.NewRegistry()))
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() { _, _ = send(t, tr, "GET") })
	}
	for tries.Load() < requests {
		time.Sleep(time.Millisecond)
	}
	close(first) // every first try fails at once; their retries may start
	time.Sleep(100 * time.Millisecond)
	inFlight := tries.Load() - requests
	close(retried)
	wg.Wait()
	// The budget counts retries against every attempt in flight, retries
	// included: r <= rate × (requests + r), and one more for the moment
	// between its check and its count.
	allowed := max(3, int64(cfg.RetryBudget*requests/(1-cfg.RetryBudget))+1)
	t.Logf("%d requests failing at once: %d retries in flight together (budget %d); %d retries in all", requests, inFlight, allowed, tries.Load()-requests)
	if inFlight > allowed || inFlight == 0 {
		t.Fatalf("%d retries in flight together, want 1 to %d (a budget of %.0f%% with %d requests failing)", inFlight, allowed, cfg.RetryBudget*100, requests)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestBulkhead: past MaxInFlight requests to one service, the next is
// refused at once, and a finished request gives its place back.
func TestBulkhead(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInFlight = 3
	up := &answers{hold: make(chan struct{})}
	tr := NewTransport(up, cfg, NewMetrics(prometheus.NewRegistry()))
	var wg sync.WaitGroup
	for range cfg.MaxInFlight {
		wg.Go(func() { _, _ = send(t, tr, "POST") })
	}
	for up.sent.Load() < int64(cfg.MaxInFlight) {
		time.Sleep(time.Millisecond)
	}
	if _, err := send(t, tr, "POST"); !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("request %d with %d in flight: %v, want ErrBulkheadFull", cfg.MaxInFlight+1, cfg.MaxInFlight, err)
	}
	close(up.hold)
	wg.Wait()
	if status, err := send(t, tr, "POST"); status != 200 || err != nil {
		t.Fatalf("after the others finished: %d %v", status, err)
	}
}
