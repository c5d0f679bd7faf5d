package system

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
)

// TestPaymentMethods exchanges cards for tokens and pays with them: what
// comes back never holds the number, a wrong number is refused before
// anything is kept, and a token pays only for its own customer's orders.
func TestPaymentMethods(t *testing.T) {
	s := newShop(t, nil)
	lamp := s.product(1000, 100)
	ada, bob := s.customer("ada"), s.customer("bob")
	pm := s.gw + "/api/payment-methods"

	r := call(t, "POST", pm, `{"card":"4242 4242 4242 4242"}`, ada...)
	if r.status != 201 {
		t.Fatalf("add a card: %d %s", r.status, r.body)
	}
	m := r.json(t)
	token := m["token"].(string)
	if m["brand"] != "visa" || m["last4"] != "4242" || !strings.HasPrefix(token, "pm_") || strings.Contains(string(r.body), "42424242") {
		t.Errorf("payment method %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
	}

	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"a wrong check digit", `{"card":"4242424242424241"}`, 400},
		{"letters", `{"card":"4242abcd42424242"}`, 400},
		{"too short", `{"card":"42424242"}`, 400},
		{"a number, not a string", `{"card":4242424242424242}`, 400},
		{"no card", `{}`, 400},
		{"another field", `{"card":"4242424242424242","customer_id":"0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d"}`, 400},
	} {
		if r := call(t, "POST", pm, c.body, bob...); r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		} else {
			r.problem(t)
		}
	}
	if r := call(t, "POST", pm, `{"card":"4242424242424242"}`); r.status != 401 {
		t.Errorf("anonymous: %d, want 401", r.status)
	}
	if r := call(t, "GET", pm, "", bob...); r.status != 200 || strings.Contains(string(r.body), token) {
		t.Errorf("bob's list: %d %s; it must not hold ada's method", r.status, r.body)
	}
	if r := call(t, "GET", pm, "", ada...); r.status != 200 || !strings.Contains(string(r.body), token) {
		t.Errorf("ada's list: %d %s", r.status, r.body)
	}

	// Bob pays with Ada's token: payments does not know it as his.
	body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"payment_method":%q}`, lamp, token)
	r = call(t, "POST", s.gw+"/api/orders", body, append(bob, "Idempotency-Key", "stolen")...)
	if r.status != 201 {
		t.Fatalf("bob's order: %d %s", r.status, r.body)
	}
	if o := s.settled(bob, r.json(t)["id"].(string), 15*time.Second); o["status"] != "cancelled" || o["reason"] != "payment_method_unknown" {
		t.Errorf("an order paid with another's payment method: %v %v, want cancelled for payment_method_unknown", o["status"], o["reason"])
	}
	// Ada pays with it.
	r = call(t, "POST", s.gw+"/api/orders", body, append(ada, "Idempotency-Key", "mine")...)
	if r.status != 201 || r.json(t)["payment_method"] != token {
		t.Fatalf("ada's order: %d %s", r.status, r.body)
	}
	if o := s.settled(ada, r.json(t)["id"].(string), 15*time.Second); o["status"] != "confirmed" {
		t.Errorf("ada's order: %v %v", o["status"], o["reason"])
	}

	if r := call(t, "DELETE", pm+"/"+token, "", bob...); r.status != 404 {
		t.Errorf("bob deleting ada's method: %d, want 404", r.status)
	}
	if r := call(t, "DELETE", pm+"/"+token, "", ada...); r.status != 204 {
		t.Errorf("ada deleting her method: %d %s", r.status, r.body)
	}
	if r := call(t, "DELETE", pm+"/"+token, "", ada...); r.status != 404 {
		t.Errorf("deleting it again: %d, want 404", r.status)
	}
}

// TestNoCardAtRest runs the shop through orders paid by card, and then
// looks for the card's number in every file the run wrote (the services'
// databases and their write-ahead logs, NATS's streams), in every log
// line and in every trace: it must be nowhere.
func TestNoCardAtRest(t *testing.T) {
	const card = "4000056655665556" // a Luhn-valid Visa number no other test uses
	dir := t.TempDir()
	logs := &syncBuffer{}
	sys := startSystem(t, dir, logs, nil, func(c *Config) {
		c.Tracing = telemetry.TracingConfig{SampleRatio: 1}
	})
	gw := sys.URLs[gateway.Name]
	s := &shop{t: t, dir: dir, sys: sys, gw: gw, admin: bearer(login(t, gw, adminEmail, adminPassword))}
	lamp := s.product(1000, 100)
	ada := s.customer("ada")
	for i := range 3 {
		id := s.order(ada, fmt.Sprint("k", i), lamp, 1, card).json(t)["id"].(string)
		if o := s.settled(ada, id, 15*time.Second); o["status"] != "confirmed" {
			t.Fatalf("order %s: %v %v", id, o["status"], o["reason"])
		}
		if r := call(t, "GET", gw+"/api/orders/"+id+"/events", "", ada...); strings.Contains(string(r.body), card) {
			t.Errorf("the order's events hold the card: %s", r.body)
		}
	}
	traces := string(call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces", "").body)
	if err := sys.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	if strings.Contains(logs.String(), card) {
		t.Error("a log line holds the card number")
	}
	if strings.Contains(traces, card) {
		t.Error("a trace holds the card number")
	}
	var files int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(card)) {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s holds the card number", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The search covered what it must: each service's database and the
	// streams' files.
	for _, want := range []string{"payments.db", "orders.db", "nats"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("no %s under the data directory: the search missed where it should look", want)
		}
	}
	t.Logf("%d files searched", files)
}

// TestMoneyBounds tries totals that int64 arithmetic would wrap: prices
// past money.MaxAmount are refused, and so is an order whose total would
// pass it, before anything is written.
func TestMoneyBounds(t *testing.T) {
	s := newShop(t, nil)
	ada := s.customer("ada")
	for _, amount := range []string{"4611686018427387904", "1000000000001", "9223372036854775807"} {
		if r := call(t, "POST", s.gw+"/api/products", `{"name":"Gold","price":{"amount":`+amount+`,"currency":"EUR"}}`, s.admin...); r.status != 400 {
			t.Errorf("a price of %s: %d %s, want 400", amount, r.status, r.body)
		}
	}
	dear := s.product(1_000_000_000_000, 10) // money.MaxAmount: the dearest price there may be
	cheap := s.product(100, 10)
	if r := call(t, "PATCH", s.gw+"/api/products/"+cheap, `{"price":{"amount":4611686018427387904,"currency":"EUR"}}`, s.admin...); r.status != 400 {
		t.Errorf("PATCH to a price of 2^62: %d %s, want 400", r.status, r.body)
	}
	pm := s.paymentMethod(ada, "4242424242424242")
	for _, c := range []struct {
		name, items string
	}{
		{"two of the dearest", fmt.Sprintf(`[{"product_id":%q,"quantity":2}]`, dear)},
		{"the dearest and one more", fmt.Sprintf(`[{"product_id":%q,"quantity":1},{"product_id":%q,"quantity":1}]`, dear, cheap)},
	} {
		r := call(t, "POST", s.gw+"/api/orders", `{"items":`+c.items+`,"payment_method":"`+pm+`"}`, append(ada, "Idempotency-Key", c.name)...)
		if r.status != 422 {
			t.Errorf("%s: %d %s, want 422", c.name, r.status, r.body)
		}
	}
	r := call(t, "POST", s.gw+"/api/orders", fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"payment_method":%q}`, dear, pm), append(ada, "Idempotency-Key", "one")...)
	if r.status != 201 {
		t.Fatalf("one of the dearest: %d %s", r.status, r.body)
	}
	if o := s.settled(ada, r.json(t)["id"].(string), 15*time.Second); o["status"] != "confirmed" {
		t.Errorf("one of the dearest: %v %v", o["status"], o["reason"])
	}
}
