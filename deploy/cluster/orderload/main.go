// Command orderload places orders through Souk's gateway at a fixed rate,
// for a bounded time, and reports how many requests failed and how long
// they took; then it waits for every order to end (confirmed or cancelled).
// .ci/k8s runs it while it restarts every Deployment of a cluster, to show
// that a rollout loses no request. It stands in for `souk load` until that
// exists.
//
//	go run ./deploy/cluster/orderload -url http://127.0.0.1:30080 -admin-password … -rate 5 -duration 5m
//
// It stops at -duration, after -max-orders, or on SIGINT/SIGTERM, whichever
// comes first, and exits 1 when more than -max-failed requests failed or an
// order did not end within -settle.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orderload:", err)
		os.Exit(1)
	}
}

type config struct {
	url           string
	adminEmail    string
	adminPassword string
	rate          float64
	duration      time.Duration
	maxOrders     int
	maxInFlight   int
	settle        time.Duration
	maxFailed     int
	summary       string
}

func run() error {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:30080", "the gateway's base URL")
	flag.StringVar(&c.adminEmail, "admin-email", "admin@souk.local", "an admin, to create and stock the product ordered")
	flag.StringVar(&c.adminPassword, "admin-password", "", "the admin's password (required)")
	flag.Float64Var(&c.rate, "rate", 5, "orders per second, each followed by one read of an earlier order")
	flag.DurationVar(&c.duration, "duration", 5*time.Minute, "the longest the load runs")
	flag.IntVar(&c.maxOrders, "max-orders", 5000, "the most orders placed")
	flag.IntVar(&c.maxInFlight, "max-in-flight", 64, "requests in flight at most; a tick beyond it counts as failed")
	flag.DurationVar(&c.settle, "settle", 2*time.Minute, "how long every order has to end once the load stops")
	flag.IntVar(&c.maxFailed, "max-failed", 0, "failed requests tolerated before exiting 1; -1 tolerates any")
	flag.StringVar(&c.summary, "summary", "", "also write the summary as JSON to this file")
	flag.Parse()
	if c.adminPassword == "" {
		return errors.New("-admin-password is required")
	}
	if c.rate <= 0 || c.rate > 100 {
		return errors.New("-rate must be above 0 and at most 100")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()

	cl := &client{base: c.url, http: &http.Client{Timeout: 10 * time.Second}}
	setup, err := cl.setup(c.adminEmail, c.adminPassword)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	fmt.Printf("orderload: product %s, customer %s paying with %s; %.1f orders/s for at most %s (SIGTERM stops it)\n",
		setup.product, setup.email, setup.method, c.rate, c.duration)

	res := load(ctx, cl, setup, c)
	res.print(os.Stdout)

	// A fresh token: the load may have outlived the first one. The system
	// may still be recovering: try for as long as orders may settle.
	for end := time.Now().Add(c.settle); ; time.Sleep(time.Second) {
		if setup.token, err = cl.login(setup.email, password); err == nil {
			break
		} else if time.Now().After(end) {
			return fmt.Errorf("log in again: %w", err)
		}
	}
	st := settle(cl, setup.token, orderBody(setup.product, setup.method), res, c.settle)
	fmt.Printf("orderload: orders %d: confirmed %d, cancelled %d, not ended after %s: %d; of %d failed POSTs, %d had placed their order, %d had not\n",
		st.Orders, st.Confirmed, st.Cancelled, c.settle, st.NotEnded, len(res.failedKeys), st.FailedButPlaced, st.FailedNotPlaced)
	if c.summary != "" {
		b, _ := json.MarshalIndent(map[string]any{"load": res.summary(), "orders": st}, "", "  ")
		if err := os.WriteFile(c.summary, b, 0o644); err != nil {
			return err
		}
	}
	switch {
	case c.maxFailed >= 0 && res.failed > c.maxFailed:
		return fmt.Errorf("%d requests failed (at most %d allowed)", res.failed, c.maxFailed)
	case st.NotEnded > 0:
		return fmt.Errorf("%d orders did not end within %s", st.NotEnded, c.settle)
	}
	return nil
}

// password is the load's customer's; the customer is new for every run.
const password = "orderload password 1"

type setup struct {
	email, token, product string
	method                string // the customer's payment method: a token for a card payments keeps
}

// orderBody is every order of the run: one of the product, paid with the
// customer's payment method (a card that the simulated provider accepts).
func orderBody(product, method string) map[string]any {
	return map[string]any{"items": []map[string]any{{"product_id": product, "quantity": 1}}, "payment_method": method}
}

type client struct {
	base string
	http *http.Client
}

// do sends one request and decodes a 2xx answer's JSON into out; any other
// answer is an error naming the status and the start of the body.
func (c *client) do(method, path, token string, hdr map[string]string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		// bytes.Reader lets net/http resend the body on a fresh connection
		// when a kept-alive one turns out closed (with Idempotency-Key).
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %.200s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (c *client) login(email, pw string) (string, error) {
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_, err := c.do("POST", "/api/auth/login", "", nil, map[string]string{"email": email, "password": pw}, &tok)
	return tok.AccessToken, err
}

// setup signs a new customer up and gives payments the customer's card for
// a payment method, and as the admin creates a product with stock for every
// order the run may place.
func (c *client) setup(adminEmail, adminPassword string) (setup, error) {
	s := setup{email: fmt.Sprintf("orderload-%d@example.com", time.Now().UnixNano())}
	if _, err := c.do("POST", "/api/auth/register", "", nil,
		map[string]string{"name": "Order Load", "email": s.email, "password": password}, nil); err != nil {
		return s, err
	}
	var err error
	if s.token, err = c.login(s.email, password); err != nil {
		return s, err
	}
	// Orders carry no card: payments alone keeps it, sealed, and answers a token.
	var pm struct {
		Token string `json:"token"`
	}
	if _, err := c.do("POST", "/api/payment-methods", s.token, nil, map[string]string{"card": "4242424242424242"}, &pm); err != nil {
		return s, fmt.Errorf("payment method: %w", err)
	}
	if pm.Token == "" {
		return s, errors.New("payment method: the answer has no token")
	}
	s.method = pm.Token
	admin, err := c.login(adminEmail, adminPassword)
	if err != nil {
		return s, fmt.Errorf("admin: %w", err)
	}
	var p struct {
		ID string `json:"id"`
	}
	if _, err := c.do("POST", "/api/products", admin, nil, map[string]any{
		"name": "Load Lamp", "description": "ordered by orderload",
		"price": map[string]any{"amount": 1999, "currency": "EUR"},
	}, &p); err != nil {
		return s, err
	}
	s.product = p.ID
	_, err = c.do("PUT", "/api/inventory/"+s.product, admin, nil, map[string]any{"available": 1000000}, nil)
	return s, err
}

type result struct {
	mu         sync.Mutex
	started    time.Time
	elapsed    time.Duration
	requests   int
	failed     int
	latencies  []time.Duration
	orders     []string // ids of placed orders
	failedKeys []string // Idempotency-Keys of POSTs that failed
	shown      int
	// when the first and the last failure happened, since the start
	firstFailure, lastFailure time.Duration
}

func (r *result) record(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.latencies = append(r.latencies, d)
	if err != nil {
		r.failed++
		at := time.Since(r.started)
		if r.failed == 1 {
			r.firstFailure = at
		}
		r.lastFailure = at
		if r.shown < 30 {
			r.shown++
			fmt.Printf("orderload: %s +%.1fs failed: %v\n", time.Now().Format("15:04:05.000"), time.Since(r.started).Seconds(), err)
		}
	}
}

func (r *result) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (r *result) summary() map[string]any {
	return map[string]any{
		"seconds": r.elapsed.Seconds(), "requests": r.requests, "failed": r.failed, "orders": len(r.orders),
		"p50_ms": ms(r.quantile(0.50)), "p99_ms": ms(r.quantile(0.99)), "max_ms": ms(r.quantile(1)),
		"first_failure_s": r.firstFailure.Seconds(), "last_failure_s": r.lastFailure.Seconds(),
	}
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "orderload: %.0fs: %d requests (%d orders placed), %d failed; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		r.elapsed.Seconds(), r.requests, len(r.orders), r.failed, ms(r.quantile(0.5)), ms(r.quantile(0.99)), ms(r.quantile(1)))
	if r.failed > 0 {
		fmt.Fprintf(w, "orderload: failures from +%.1fs to +%.1fs\n", r.firstFailure.Seconds(), r.lastFailure.Seconds())
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// load places an order at every tick and reads an earlier one, until ctx
// ends or max orders were tried; it waits for the requests in flight.
func load(ctx context.Context, c *client, s setup, cfg config) *result {
	res := &result{started: time.Now()}
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
	defer tick.Stop()
	report := time.NewTicker(15 * time.Second)
	defer report.Stop()
	sem := make(chan struct{}, cfg.maxInFlight)
	var wg sync.WaitGroup
	body := orderBody(s.product, s.method)
	for n := 0; n < cfg.maxOrders; {
		select {
		case <-ctx.Done():
			wg.Wait()
			res.elapsed = time.Since(res.started)
			return res
		case <-report.C:
			res.mu.Lock()
			fmt.Printf("orderload: +%.0fs %d requests, %d failed\n", time.Since(res.started).Seconds(), res.requests, res.failed)
			res.mu.Unlock()
			continue
		case <-tick.C:
		}
		n++
		select {
		case sem <- struct{}{}:
		default:
			res.record(0, fmt.Errorf("more than %d requests in flight", cfg.maxInFlight))
			continue
		}
		wg.Add(1)
		go func(key string) {
			defer func() { <-sem; wg.Done() }()
			var o struct {
				ID string `json:"id"`
			}
			t := time.Now()
			_, err := c.do("POST", "/api/orders", s.token, map[string]string{"Idempotency-Key": key}, body, &o)
			res.record(time.Since(t), err)
			res.mu.Lock()
			if err != nil {
				res.failedKeys = append(res.failedKeys, key)
			} else {
				res.orders = append(res.orders, o.ID)
			}
			var earlier string
			if len(res.orders) > 0 {
				earlier = res.orders[len(res.orders)/2]
			}
			res.mu.Unlock()
			if earlier != "" {
				t = time.Now()
				_, err = c.do("GET", "/api/orders/"+earlier, s.token, nil, nil, nil)
				res.record(time.Since(t), err)
			}
		}(fmt.Sprintf("orderload-%d-%d", res.started.UnixNano(), n))
	}
	wg.Wait()
	res.elapsed = time.Since(res.started)
	return res
}

// settled is what became of the orders.
type settled struct {
	Orders    int `json:"orders"`
	Confirmed int `json:"confirmed"`
	Cancelled int `json:"cancelled"`
	NotEnded  int `json:"not_ended"`
	// Of the POSTs that failed: how many had placed their order all the same
	// (the retry with the same key answers 200) and how many had not (201).
	FailedButPlaced int `json:"failed_but_placed"`
	FailedNotPlaced int `json:"failed_not_placed"`
}

// settle sends every POST that failed once more, with the same key and body
// (which answers the order if the first one placed it), then waits until
// every order is confirmed or cancelled, or the time is up.
func settle(c *client, token string, body any, res *result, within time.Duration) settled {
	var st settled
	ids := slices.Clone(res.orders)
	for _, key := range res.failedKeys {
		var o struct {
			ID string `json:"id"`
		}
		code, err := c.do("POST", "/api/orders", token, map[string]string{"Idempotency-Key": key}, body, &o)
		if err != nil {
			fmt.Printf("orderload: retrying %s: %v\n", key, err)
			continue
		}
		if code == http.StatusOK {
			st.FailedButPlaced++
		} else {
			st.FailedNotPlaced++
		}
		ids = append(ids, o.ID)
	}
	st.Orders = len(ids)
	deadline := time.Now().Add(within)
	pending := ids
	for len(pending) > 0 && time.Now().Before(deadline) {
		var next []string
		for _, id := range pending {
			var o struct {
				Status string `json:"status"`
			}
			if _, err := c.do("GET", "/api/orders/"+id, token, nil, nil, &o); err != nil {
				next = append(next, id)
				continue
			}
			switch o.Status {
			case "confirmed":
				st.Confirmed++
			case "cancelled":
				st.Cancelled++
			default:
				next = append(next, id)
			}
		}
		pending = next
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	st.NotEnded = len(pending)
	return st
}
