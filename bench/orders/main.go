// Command orders measures the order saga end to end: orders placed through
// the gateway and confirmed (stock reserved, payment authorized, stock
// committed, payment captured) on the whole system in one process, as
// souk up runs it. It reports confirmed orders per second with closed-loop
// clients, then the latency from POST to OrderConfirmed, open loop, at a
// fixed rate.
//
//	go run ./bench/orders                                     # SQLite + embedded NATS
//	go run ./bench/orders -postgres postgres://… -nats nats://127.0.0.1:4222
//
// Confirmations are observed on the orders stream (OrderConfirmed), not by
// polling. Traffic stays on loopback.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
	"github.com/souk-shop/souk/services/gateway"
)

var (
	postgres = flag.String("postgres", "", "a PostgreSQL URL: each service gets a fresh database schema in it (default: SQLite files)")
	natsURL  = flag.String("nats", "", "an external NATS (default: embedded)")
	clients  = flag.Int("clients", 32, "closed-loop clients in the throughput run")
	duration = flag.Duration("duration", 10*time.Second, "length of each run")
	rate     = flag.Float64("rate", 0, "orders per second of the latency run (default: half the measured throughput)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "souk-bench-orders")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	suffix := fmt.Sprint(time.Now().UnixNano())

	cfg := system.Config{
		NATS: *natsURL, NATSListen: "127.0.0.1:0", DataDir: tmp, Server: server.DefaultConfig(),
		Registry: discovery.Config{Bucket: "bench_registry_" + suffix},
		Saga:     system.DefaultSagaConfig(),
		Gateway:  &system.GatewayConfig{Addr: "127.0.0.1:0", Config: benchGatewayConfig()},
	}
	for _, name := range system.ServiceNames() {
		db := filepath.Join(tmp, name+".db")
		if *postgres != "" {
			if db, err = schema(ctx, *postgres, "bench_"+name+"_"+suffix); err != nil {
				return err
			}
		}
		sc := system.ServiceConfig{Name: name, Addr: "127.0.0.1:0", DB: db}
		if name == "users" {
			sc.Admin = &system.Admin{Email: "admin@bench.local", Password: "bench admin password"}
		}
		cfg.Services = append(cfg.Services, sc)
	}
	sys, err := system.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sys.Shutdown(context.WithoutCancel(ctx))
	gw := sys.URLs[gateway.Name]

	// Watch confirmations on the orders stream.
	nc, err := connect(sys)
	if err != nil {
		return err
	}
	defer nc.Close()
	confirmed := newWatch()
	if err := confirmed.follow(ctx, nc); err != nil {
		return err
	}

	admin := token(gw, "admin@bench.local", "bench admin password")
	products := []string{product(gw, admin, 1000), product(gw, admin, 2500), product(gw, admin, 750)}
	var customers []string
	for i := range 20 {
		customers = append(customers, customer(gw, fmt.Sprintf("c%d-%s@bench.local", i, suffix)))
	}
	engines := "SQLite + embedded NATS"
	if *postgres != "" {
		engines = "PostgreSQL + " + map[bool]string{true: "embedded NATS", false: "external NATS"}[*natsURL == ""]
	}
	fmt.Printf("%s; all services and the gateway in this process\n", engines)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	var seq atomic.Int64
	place := func() (string, time.Time, error) {
		i := seq.Add(1)
		body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"card":"4242424242424242"}`, products[i%3])
		req, _ := http.NewRequest("POST", gw+"/api/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+customers[i%int64(len(customers))])
		req.Header.Set("Idempotency-Key", fmt.Sprint("bench-", i))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return "", start, err
		}
		defer resp.Body.Close()
		var o struct{ ID string }
		if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&o) != nil {
			b, _ := io.ReadAll(resp.Body)
			return "", start, fmt.Errorf("POST /api/orders: %d %s", resp.StatusCode, b)
		}
		return o.ID, start, nil
	}

	// Throughput: closed loop, then wait for the stragglers.
	var ids []string
	var mu sync.Mutex
	begin := time.Now()
	stop := begin.Add(*duration)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range *clients {
		wg.Go(func() {
			for time.Now().Before(stop) {
				id, _, err := place()
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	last, ok := confirmed.waitAll(ids, time.Minute)
	if !ok {
		return fmt.Errorf("not every order was confirmed within a minute")
	}
	took := last.Sub(begin)
	tput := float64(len(ids)) / took.Seconds()
	fmt.Printf("throughput: %d orders placed by %d clients in %s, all confirmed %s after the first POST: %.0f confirmed orders/s (%d POSTs failed)\n",
		len(ids), *clients, duration, took.Round(time.Millisecond), tput, failed.Load())

	// Latency: open loop at a fixed rate.
	r := *rate
	if r == 0 {
		r = tput / 2
	}
	interval := time.Duration(float64(time.Second) / r)
	n := int(duration.Seconds() * r)
	sent := make([]time.Time, n)
	orderIDs := make([]string, n)
	begin = time.Now()
	var lwg sync.WaitGroup
	for i := range n {
		if w := time.Until(begin.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		lwg.Go(func() {
			id, start, err := place()
			if err != nil {
				failed.Add(1)
				return
			}
			sent[i], orderIDs[i] = start, id
		})
	}
	lwg.Wait()
	var placedIDs []string
	for _, id := range orderIDs {
		if id != "" {
			placedIDs = append(placedIDs, id)
		}
	}
	if _, ok := confirmed.waitAll(placedIDs, time.Minute); !ok {
		return fmt.Errorf("not every order of the latency run was confirmed within a minute")
	}
	var lat []time.Duration
	for i, id := range orderIDs {
		if id != "" {
			lat = append(lat, confirmed.at(id).Sub(sent[i]))
		}
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(100 * time.Microsecond) }
	fmt.Printf("latency at %.0f orders/s (%d orders), POST to OrderConfirmed: p50 %s, p99 %s, max %s\n",
		r, len(lat), q(0.5), q(0.99), lat[len(lat)-1].Round(100*time.Microsecond))
	return nil
}

// watch records when each order was confirmed.
type watch struct {
	mu    sync.Mutex
	times map[string]time.Time
}

func newWatch() *watch { return &watch{times: map[string]time.Time{}} }

func (w *watch) follow(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := js.OrderedConsumer(ctx, "souk_orders", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{saga.OrderConfirmed}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	_, err = c.Consume(func(m jetstream.Msg) {
		var d saga.OrderRef
		if json.Unmarshal(m.Data(), &d) == nil {
			w.mu.Lock()
			w.times[d.OrderID] = time.Now()
			w.mu.Unlock()
		}
	})
	return err
}

func (w *watch) at(id string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.times[id]
}

// waitAll waits until every id is confirmed and returns the last time.
func (w *watch) waitAll(ids []string, within time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		var last time.Time
		missing := 0
		for _, id := range ids {
			t, ok := w.times[id]
			if !ok {
				missing++
			} else if t.After(last) {
				last = t
			}
		}
		w.mu.Unlock()
		if missing == 0 {
			return last, true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, false
}

func connect(sys *system.System) (*nats.Conn, error) {
	u := *natsURL
	if u == "" {
		u = sys.NATSURL
	}
	if u == "" {
		return nil, fmt.Errorf("the embedded NATS must listen")
	}
	return broker.Connect(u, "bench", slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// benchGatewayConfig is the built-in one without rate limits: the
// benchmark is one address and a few users sending hundreds a second.
func benchGatewayConfig() gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Defaults.RateLimit = gateway.RateLimits{}
	for i := range cfg.Routes {
		cfg.Routes[i].RateLimit = nil
	}
	return cfg
}

func schema(ctx context.Context, base, name string) (string, error) {
	db, err := store.Open(ctx, base)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func post(url, auth, body string) map[string]any {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode >= 300 {
		panic(fmt.Sprintf("POST %s: %d %v", url, resp.StatusCode, m))
	}
	return m
}

func token(gw, email, password string) string {
	return post(gw+"/api/auth/login", "", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password))["access_token"].(string)
}

func customer(gw, email string) string {
	post(gw+"/api/auth/register", "", fmt.Sprintf(`{"name":"Bench","email":%q,"password":"bench password 123"}`, email))
	return token(gw, email, "bench password 123")
}

func product(gw, admin string, cents int) string {
	id := post(gw+"/api/products", admin, fmt.Sprintf(`{"name":"Bench thing","price":{"amount":%d,"currency":"EUR"}}`, cents))["id"].(string)
	req, _ := http.NewRequest("PUT", gw+"/api/inventory/"+id, strings.NewReader(`{"available":10000000}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		panic(fmt.Sprintf("stock: %v %v", resp, err))
	}
	resp.Body.Close()
	return id
}
