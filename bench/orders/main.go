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
	"errors"
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
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

var (
	postgres = flag.String("postgres", "", "a PostgreSQL URL: each service gets a fresh database schema in it (default: SQLite files)")
	natsURL  = flag.String("nats", "", "an external NATS (default: embedded); its Souk streams are deleted first, so use one you can wipe")
	clients  = flag.Int("clients", 32, "closed-loop clients in the throughput run")
	duration = flag.Duration("duration", 10*time.Second, "length of each run")
	verbose  = flag.Bool("v", false, "log the system's warnings to stderr")
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
	logTo := io.Discard
	if *verbose {
		logTo = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	suffix := fmt.Sprint(time.Now().UnixNano())

	if *natsURL != "" {
		// Streams are named for their services: what earlier runs left
		// there would be consumed again, against fresh databases.
		if err := wipeStreams(ctx, *natsURL); err != nil {
			return err
		}
	}
	gwConfig, err := system.LoadGatewayConfig("", 0, nil)
	if err != nil {
		return err
	}
	keyring, err := secrets.Ensure(filepath.Join(tmp, "keyring"))
	if err != nil {
		return err
	}
	cfg := system.Config{
		NATS: *natsURL, NATSListen: "127.0.0.1:0", DataDir: tmp, Server: server.DefaultConfig(), Keyring: keyring,
		Registry: discovery.Config{Bucket: "bench_registry_" + suffix},
		Gateway:  &system.GatewayConfig{Addr: "127.0.0.1:0", Config: gwConfig.WithoutRateLimits()},
	}
	cfg.Services.Users.AdminEmail, cfg.Services.Users.AdminPassword = "admin@bench.local", "bench admin password"
	for _, name := range system.ServiceNames() {
		db := filepath.Join(tmp, name+".db")
		if *postgres != "" {
			if db, err = schema(ctx, *postgres, "bench_"+name+"_"+suffix); err != nil {
				return err
			}
		}
		cfg.Instances = append(cfg.Instances, system.Instance{Service: name, Addr: "127.0.0.1:0", DB: db})
	}
	sys, err := system.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sys.Shutdown(context.WithoutCancel(ctx))
	gw := sys.URLs[system.GatewayName]

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
	var customers, methods []string // tokens, and their payment methods
	for i := range 20 {
		tok := customer(gw, fmt.Sprintf("c%d-%s@bench.local", i, suffix))
		customers = append(customers, tok)
		methods = append(methods, post(gw+"/api/payment-methods", tok, `{"card":"4242424242424242"}`)["token"].(string))
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
		body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"payment_method":%q}`, products[i%3], methods[i%int64(len(methods))])
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

	// Throughput: each client places an order, waits until it is settled,
	// and places the next, so nothing queues beyond what is in flight.
	var confirmedN, cancelledN atomic.Int64
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
				switch confirmed.wait(id, time.Minute) {
				case saga.OrderConfirmed:
					confirmedN.Add(1)
				case saga.OrderCancelled:
					cancelledN.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(begin)
	tput := float64(confirmedN.Load()) / took.Seconds()
	fmt.Printf("throughput: %d clients, each placing an order and waiting for it to settle: %d confirmed, %d cancelled, %d failed in %s: %.0f confirmed orders/s\n",
		*clients, confirmedN.Load(), cancelledN.Load(), failed.Load(), took.Round(time.Millisecond), tput)

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
	var lat []time.Duration
	notConfirmed := 0
	for i, id := range orderIDs {
		if id == "" {
			continue
		}
		if confirmed.wait(id, time.Minute) != saga.OrderConfirmed {
			notConfirmed++
			continue
		}
		lat = append(lat, confirmed.at(id).Sub(sent[i]))
	}
	if len(lat) == 0 {
		return fmt.Errorf("no order of the latency run was confirmed")
	}
	if notConfirmed > 0 {
		fmt.Printf("latency run: %d orders not confirmed (cancelled or not settled in a minute)\n", notConfirmed)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(100 * time.Microsecond) }
	fmt.Printf("latency at %.0f orders/s (%d orders), POST to OrderConfirmed: p50 %s, p99 %s, max %s\n",
		r, len(lat), q(0.5), q(0.99), lat[len(lat)-1].Round(100*time.Microsecond))
	return nil
}

func wipeStreams(ctx context.Context, u string) error {
	nc, err := broker.Connect(u, "bench", broker.Credentials{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, name := range system.ServiceNames() {
		if err := js.DeleteStream(ctx, events.StreamName(name)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
	}
	return nil
}

// watch records when each order was settled, and how.
type watch struct {
	mu      sync.Mutex
	times   map[string]time.Time
	how     map[string]string
	waiters map[string]chan struct{}
}

func newWatch() *watch {
	return &watch{times: map[string]time.Time{}, how: map[string]string{}, waiters: map[string]chan struct{}{}}
}

func (w *watch) follow(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := js.OrderedConsumer(ctx, "souk_orders", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"souk.orders.v1.*"}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	_, err = c.Consume(func(m jetstream.Msg) {
		if m.Subject() != saga.OrderConfirmed && m.Subject() != saga.OrderCancelled {
			return
		}
		var d saga.OrderRef
		if json.Unmarshal(m.Data(), &d) != nil {
			return
		}
		w.mu.Lock()
		w.times[d.OrderID], w.how[d.OrderID] = time.Now(), m.Subject()
		if ch, ok := w.waiters[d.OrderID]; ok {
			close(ch)
			delete(w.waiters, d.OrderID)
		}
		w.mu.Unlock()
	})
	return err
}

func (w *watch) at(id string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.times[id]
}

// wait returns how the order settled (OrderConfirmed or OrderCancelled),
// or "" if it did not within the time given.
func (w *watch) wait(id string, within time.Duration) string {
	w.mu.Lock()
	if how, ok := w.how[id]; ok {
		w.mu.Unlock()
		return how
	}
	ch, ok := w.waiters[id]
	if !ok {
		ch = make(chan struct{})
		w.waiters[id] = ch
	}
	w.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(within):
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.how[id]
}

func connect(sys *system.System) (*nats.Conn, error) {
	u, creds := *natsURL, broker.Credentials{}
	if u == "" {
		// souk's own NATS lets in its identities only.
		u, creds = sys.NATSURL, sys.Credentials(system.AdminIdentity)
	}
	if u == "" {
		return nil, fmt.Errorf("the embedded NATS must listen")
	}
	return broker.Connect(u, "bench", creds, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
