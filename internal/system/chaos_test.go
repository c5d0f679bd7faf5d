package system

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/payments"
)

// cluster runs each service as its own System on one NATS server, as
// separate processes would, so that the test can stop and restart one.
type cluster struct {
	t    *testing.T
	dir  string
	nats string
	svcs Services
	mu   sync.Mutex
	sys  map[string]*System
}

func (c *cluster) start(name string) {
	c.t.Helper()
	log, _ := telemetry.NewLogger(io.Discard, "json", "warn")
	cfg := Config{NATS: c.nats, Services: c.svcs, Server: server.DefaultConfig(), Keyring: testKeyring(c.t, c.dir)}
	if name == gateway.Name {
		cfg.Gateway = &GatewayConfig{Addr: "127.0.0.1:0", Config: testGatewayConfig()}
	} else {
		cfg.Instances = []Instance{{Service: name, Addr: "127.0.0.1:0", DB: filepath.Join(c.dir, name+".db")}}
	}
	sys, err := Start(context.Background(), cfg, log)
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.mu.Lock()
	c.sys[name] = sys
	c.mu.Unlock()
}

func (c *cluster) stop(name string) {
	c.mu.Lock()
	sys := c.sys[name]
	delete(c.sys, name)
	c.mu.Unlock()
	if sys != nil {
		if err := sys.Shutdown(context.Background()); err != nil {
			c.t.Logf("stop %s: %v", name, err)
		}
	}
}

// TestSagaChaos places a few hundred orders while inventory, payments and
// orders are stopped and restarted, with a payment provider that fails one
// call in ten, then checks that every order settled within 30 s of the last
// restart and that souk check finds no violation.
func TestSagaChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("a few hundred orders under restarts")
	}
	dir := t.TempDir()
	natsURL := testenv.NATSServer(t)
	svcs := testServices()
	svcs.Orders.OrderDeadline, svcs.Payments.PaymentFailureRate = 20*time.Second, 0.1
	c := &cluster{t: t, dir: dir, nats: natsURL, sys: map[string]*System{}, svcs: svcs}
	for _, name := range append(ServiceNames(), gateway.Name) {
		c.start(name)
	}
	t.Cleanup(func() {
		for name := range c.sys {
			c.stop(name)
		}
	})
	gw := c.sys[gateway.Name].URLs[gateway.Name]
	s := &shop{t: t, dir: dir, gw: gw, admin: bearer(login(t, gw, adminEmail, adminPassword))}
	products := []string{s.product(1000, 400), s.product(2500, 400)}
	var customers [][]string
	for i := range 5 {
		customers = append(customers, s.customer(fmt.Sprintf("c%d", i)))
		// Their payment methods, before anything is killed.
		s.paymentMethod(customers[i], "4242424242424242")
		s.paymentMethod(customers[i], payments.DeclineCard)
	}

	// Orders are placed all through the restarts and after them, until at
	// least minAccepted were accepted: how many are refused while a service
	// is down depends on how fast this machine restarts one, not on Souk.
	const minAccepted, maxAttempts = 150, 3000
	type placed struct {
		id  string
		who []string
	}
	var (
		mu       sync.Mutex
		accepted []placed
		refused  atomic.Int64
		calm     atomic.Bool // the restarts are over
	)
	chaosDone := make(chan time.Time, 1)
	go func() {
		var last time.Time
		for round := range 3 {
			for _, name := range []string{"payments", "inventory", "orders"} {
				time.Sleep(400 * time.Millisecond)
				c.stop(name)
				time.Sleep(600 * time.Millisecond)
				c.start(name)
				last = time.Now()
				t.Logf("round %d: restarted %s", round+1, name)
			}
		}
		calm.Store(true)
		chaosDone <- last
	}()
	enough := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calm.Load() && len(accepted) >= minAccepted
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 6 {
		wg.Go(func() {
			for !enough() {
				i := next.Add(1)
				if i > maxAttempts {
					return
				}
				who := customers[rand.IntN(len(customers))]
				card := "4242424242424242"
				if rand.IntN(10) == 0 {
					card = payments.DeclineCard
				}
				r := s.order(who, fmt.Sprint("chaos-", i), products[rand.IntN(2)], 1+rand.IntN(3), card)
				if r.status != 201 {
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				accepted = append(accepted, placed{id: r.json(t)["id"].(string), who: who})
				mu.Unlock()
				// About 35 orders a second in all: the load spans the restarts.
				time.Sleep(time.Duration(100+rand.IntN(140)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	lastRestart := <-chaosDone
	t.Logf("%d orders accepted, %d refused while a service was down", len(accepted), refused.Load())
	if len(accepted) < minAccepted {
		t.Fatalf("only %d orders accepted in %d attempts", len(accepted), maxAttempts)
	}

	statuses := map[string]int{}
	for _, p := range accepted {
		left := time.Until(lastRestart.Add(30 * time.Second))
		o := s.settled(p.who, p.id, max(left, time.Second))
		statuses[fmt.Sprint(o["status"], " ", o["reason"])]++
	}
	t.Logf("all settled %s after the last restart: %v", time.Since(lastRestart).Round(time.Millisecond), statuses)
	rep := s.audit()
	t.Logf("souk check: %+v", rep)
	if rep.Confirmed == 0 {
		t.Fatal("no order was confirmed")
	}
}
