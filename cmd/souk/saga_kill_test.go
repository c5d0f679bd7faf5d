package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
)

var long = flag.Bool("long", false, "run the long variants: the saga under SIGKILL of separate processes")

// TestSagaUnderSIGKILL runs every service as its own process, places
// orders while payments, inventory and orders are killed with SIGKILL and
// started again, three times each, and then checks that every order the
// databases hold has settled and that souk check finds no violation.
func TestSagaUnderSIGKILL(t *testing.T) {
	if !*long {
		t.Skip("the long variant: go test ./cmd/souk -run TestSagaUnderSIGKILL -long")
	}
	dir := t.TempDir()
	natsURL := testenv.NATSServer(t)
	config := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(config, []byte(`
defaults: {timeout: 5s, max_body_bytes: 1048576, strip_prefix: /api}
routes:
  - {path: /api/auth/register, methods: [POST], service: users, policy: public}
  - {path: /api/auth/login, methods: [POST], service: users, policy: public}
  - {path: /.well-known/jwks.json, methods: [GET], service: users, policy: public, strip_prefix: ""}
  - {path: /api/products, methods: [POST], service: catalog, policy: admin}
  - {path: "/api/inventory/{productId}", methods: [PUT], service: inventory, policy: admin}
  - {path: /api/payment-methods, methods: [POST], service: payments, policy: authenticated}
  - {path: /api/orders, methods: [POST], service: orders, policy: authenticated}
  - {path: "/api/orders/{id}", methods: [GET], service: orders, policy: authenticated}
`), 0o644)
	common := []string{"--nats", natsURL, "--data", dir, "--addr", "127.0.0.1:0", "--registry-ttl", "1s", "--log-level", "warn",
		"--order-deadline", "20s", "--payment-failure-rate", "0.1"}
	db := func(name string) string { return "sqlite:" + filepath.Join(dir, name+".db") }
	var mu sync.Mutex
	procs := map[string]*process{}
	start := func(name string) {
		args := append([]string{"serve", name}, common...)
		switch name {
		case "gateway":
			args = append(args, "--config", config)
		case "users":
			args = append(args, "--db", db(name), "--admin-email", "admin@example.com", "--admin-password", "admin password 123")
		default:
			args = append(args, "--db", db(name))
		}
		p := startProcess(t, args...)
		mu.Lock()
		procs[name] = p
		mu.Unlock()
	}
	for _, name := range []string{"users", "catalog", "inventory", "payments", "orders", "gateway"} {
		start(name)
	}
	gw := procs["gateway"].url

	do := func(method, path, token, body string, headers ...string) (int, map[string]any) {
		if token != "" {
			headers = append(headers, "Authorization", "Bearer "+token)
		}
		code, _, b := send(t, method, gw+path, body, headers...)
		var m map[string]any
		json.Unmarshal(b, &m)
		return code, m
	}
	token := func(email, pw string) string {
		var tok string
		deadline := time.Now().Add(10 * time.Second)
		for tok == "" && time.Now().Before(deadline) {
			_, m := do("POST", "/api/auth/login", "", fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw))
			tok, _ = m["access_token"].(string)
			time.Sleep(50 * time.Millisecond)
		}
		if tok == "" {
			t.Fatalf("cannot log in as %s", email)
		}
		return tok
	}
	admin := token("admin@example.com", "admin password 123")
	code, p := do("POST", "/api/products", admin, `{"name":"Lamp","price":{"amount":1000,"currency":"EUR"}}`)
	if code != 201 {
		t.Fatalf("product: %d %v", code, p)
	}
	product := p["id"].(string)
	if code, m := do("PUT", "/api/inventory/"+product, admin, `{"available":100000}`); code != 200 {
		t.Fatalf("stock: %d %v", code, m)
	}
	var customers []string
	type methods struct{ pay, decline string } // payment methods' tokens
	var cards []methods
	for i := range 4 {
		email := fmt.Sprintf("c%d@example.com", i)
		do("POST", "/api/auth/register", "", fmt.Sprintf(`{"name":"C","email":%q,"password":"correct horse battery"}`, email))
		tok := token(email, "correct horse battery")
		customers = append(customers, tok)
		_, pay := do("POST", "/api/payment-methods", tok, `{"card":"4242424242424242"}`)
		_, decline := do("POST", "/api/payment-methods", tok, `{"card":"4000000000000002"}`)
		cards = append(cards, methods{pay["token"].(string), decline["token"].(string)})
	}

	var lastRestart time.Time
	chaos := make(chan struct{})
	go func() {
		defer close(chaos)
		for round := range 3 {
			for _, name := range []string{"payments", "inventory", "orders"} {
				time.Sleep(500 * time.Millisecond)
				mu.Lock()
				victim := procs[name]
				mu.Unlock()
				victim.cmd.Process.Signal(syscall.SIGKILL)
				victim.cmd.Wait()
				time.Sleep(300 * time.Millisecond)
				start(name)
				lastRestart = time.Now()
				t.Logf("round %d: killed and restarted %s", round+1, name)
			}
		}
	}()
	type placed struct{ id, token string }
	var orders []placed
	var omu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := customers[w]
				pm := cards[w].pay
				if rand.IntN(10) == 0 {
					pm = cards[w].decline
				}
				code, m := do("POST", "/api/orders", tok, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"payment_method":%q}`, product, pm),
					"Idempotency-Key", fmt.Sprintf("w%d-%d", w, i))
				if code == 201 {
					omu.Lock()
					orders = append(orders, placed{m["id"].(string), tok})
					omu.Unlock()
				}
				time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
			}
		})
	}
	<-chaos
	close(stop)
	wg.Wait()
	t.Logf("%d orders accepted under SIGKILLs", len(orders))
	if len(orders) < 20 {
		t.Fatalf("only %d orders accepted", len(orders))
	}
	deadline := lastRestart.Add(30 * time.Second)
	for _, o := range orders {
		for {
			_, m := do("GET", "/api/orders/"+o.id, o.token, "")
			if s := m["status"]; s == "confirmed" || s == "cancelled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s is %v 30s after the last restart", o.id, m["status"])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("every accepted order settled %s after the last restart", time.Since(lastRestart).Round(time.Millisecond))
	var out strings.Builder
	args := []string{"check", "--orders-db", db("orders"), "--inventory-db", db("inventory"), "--payments-db", db("payments")}
	ok := false
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		out.Reset()
		if run(context.Background(), args, noEnv, &out, &out) == 0 {
			ok = true
			break
		}
	}
	t.Log(out.String())
	if !ok {
		t.Fatal("souk check found violations")
	}
}
