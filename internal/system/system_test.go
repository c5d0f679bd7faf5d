package system

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testRoutes adds, to the public routes, routes to services that only
// tests register: echo (tells what it received) and ghost (never runs).
var testRoutes = append(append([]gateway.Route(nil), gateway.DefaultRoutes...),
	gateway.Route{Prefix: "/api/echo", Service: "echo"},
	gateway.Route{Prefix: "/api/ghost", Service: "ghost"},
)

// startSystem starts every service and the gateway on random loopback ports
// with their data in dir.
func startSystem(t *testing.T, dir string, logs io.Writer) *System {
	t.Helper()
	log, err := telemetry.NewLogger(logs, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		NATSListen: "127.0.0.1:0",
		DataDir:    dir,
		Gateway:    &GatewayConfig{Addr: "127.0.0.1:0", Timeout: time.Second, Routes: testRoutes},
		Server:     server.DefaultConfig(),
	}
	for _, name := range ServiceNames() {
		cfg.Services = append(cfg.Services, ServiceConfig{Name: name, Addr: "127.0.0.1:0", DB: dir + "/" + name + ".db"})
	}
	sys, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func (r response) problem(t *testing.T) problem.Body {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json; body %s", r.status, ct, r.body)
	}
	var p problem.Body
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != r.status || p.Title == "" || p.RequestID == "" {
		t.Fatalf("problem body %+v for status %d", p, r.status)
	}
	return p
}

func call(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func TestSystemEndToEnd(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	sys := startSystem(t, dir, logs)
	gw := sys.URLs[gateway.Name]

	for name, u := range sys.URLs {
		if r := call(t, "GET", u+"/readyz", ""); r.status != 200 {
			t.Fatalf("%s /readyz: %d %s", name, r.status, r.body)
		}
	}

	// A user's life through the gateway.
	r := call(t, "POST", gw+"/api/users", `{"name":"Ada Lovelace","email":"Ada@Example.com"}`)
	if r.status != 201 {
		t.Fatalf("POST /api/users: %d %s", r.status, r.body)
	}
	user := r.json(t)
	id, _ := user["id"].(string)
	if loc := r.header.Get("Location"); loc != "/api/users/"+id {
		t.Fatalf("Location = %q, want /api/users/%s", loc, id)
	}
	if user["email"] != "ada@example.com" {
		t.Fatalf("email stored as %v, want it lower-cased", user["email"])
	}
	if r := call(t, "GET", gw+"/api/users/"+id, ""); r.status != 200 || r.json(t)["name"] != "Ada Lovelace" {
		t.Fatalf("GET /api/users/%s: %d %s", id, r.status, r.body)
	}
	if r := call(t, "GET", sys.URLs["users"]+"/users/"+id, ""); r.status != 200 {
		t.Fatalf("GET /users/%s on the service's own port: %d %s", id, r.status, r.body)
	}
	if r := call(t, "PATCH", gw+"/api/users/"+id, `{"name":"Ada King"}`); r.status != 200 || r.json(t)["name"] != "Ada King" {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	for i := range 3 {
		body := fmt.Sprintf(`{"name":"User %d","email":"u%d@example.com"}`, i, i)
		if r := call(t, "POST", gw+"/api/users", body); r.status != 201 {
			t.Fatalf("POST %s: %d %s", body, r.status, r.body)
		}
	}
	seen := 0
	next := gw + "/api/users?limit=3"
	for pages := 0; next != ""; pages++ {
		r := call(t, "GET", next, "")
		if r.status != 200 || pages > 3 {
			t.Fatalf("GET %s: %d %s", next, r.status, r.body)
		}
		page := r.json(t)
		seen += len(page["items"].([]any))
		next = ""
		if c, ok := page["next_cursor"].(string); ok {
			next = gw + "/api/users?limit=3&cursor=" + c
		}
	}
	if seen != 4 {
		t.Fatalf("paging saw %d users, want 4", seen)
	}

	// A product's life.
	r = call(t, "POST", gw+"/api/products", `{"name":"Brass Lamp","description":"warm light","price":{"amount":4999,"currency":"EUR"}}`)
	if r.status != 201 {
		t.Fatalf("POST /api/products: %d %s", r.status, r.body)
	}
	pid := r.json(t)["id"].(string)
	if r.header.Get("Location") != "/api/products/"+pid {
		t.Fatalf("Location = %q", r.header.Get("Location"))
	}
	call(t, "POST", gw+"/api/products", `{"name":"Copper Kettle","price":{"amount":2500,"currency":"EUR"}}`)
	if r := call(t, "GET", gw+"/api/products?q=LAMP", ""); r.status != 200 || len(r.json(t)["items"].([]any)) != 1 {
		t.Fatalf("search q=LAMP: %d %s", r.status, r.body)
	}
	r = call(t, "PATCH", gw+"/api/products/"+pid, `{"price":{"amount":3999,"currency":"EUR"}}`)
	if r.status != 200 || r.json(t)["price"].(map[string]any)["amount"] != 3999.0 {
		t.Fatalf("PATCH price: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", sys.URLs["catalog"]+"/products/"+pid, ""); r.status != 200 {
		t.Fatalf("GET on catalog's own port: %d", r.status)
	}

	t.Run("bad input", func(t *testing.T) {
		big := `{"name":"` + strings.Repeat("x", 1<<20) + `","email":"big@example.com"}`
		cases := []struct {
			method, path, body string
			status             int
			field              string
		}{
			{"POST", "/api/users", `{"name":"Bob",`, 400, ""},
			{"POST", "/api/users", `{"name":"Bob","email":"bob@example.com","admin":true}`, 400, "admin"},
			{"POST", "/api/users", `{"email":"bob@example.com"}`, 400, "name"},
			{"POST", "/api/users", `{"name":"  ","email":"bob@example.com"}`, 400, "name"},
			{"POST", "/api/users", `{"name":"Bob","email":"not-an-email"}`, 400, "email"},
			{"POST", "/api/users", `{"name":"Bob","email":"Bob <bob@example.com>"}`, 400, "email"},
			{"POST", "/api/users", `{"name":"Bob","email":42}`, 400, "email"},
			{"POST", "/api/users", `{"name":"Other","email":"ADA@example.com"}`, 409, ""},
			{"POST", "/api/users", big, 413, ""},
			{"GET", "/api/users/not-a-uuid", "", 400, "id"},
			{"GET", "/api/users/' OR 1=1 --", "", 400, "id"},
			{"GET", "/api/users/" + server.NewID(), "", 404, ""},
			{"PATCH", "/api/users/" + server.NewID(), `{"name":"x"}`, 404, ""},
			{"PATCH", "/api/users/" + id, `{}`, 400, ""},
			{"PATCH", "/api/users/" + id, `{"email":"nope"}`, 400, "email"},
			{"DELETE", "/api/users/" + server.NewID(), "", 404, ""},
			{"GET", "/api/users?limit=0", "", 400, "limit"},
			{"GET", "/api/users?limit=1000", "", 400, "limit"},
			{"GET", "/api/users?cursor=garbage", "", 400, "cursor"},
			{"POST", "/api/products", `{"name":"Lamp","price":{"amount":-1,"currency":"EUR"}}`, 400, "price.amount"},
			{"POST", "/api/products", `{"name":"Lamp","price":{"amount":19.99,"currency":"EUR"}}`, 400, "price.amount"},
			{"POST", "/api/products", `{"name":"Lamp","price":{"amount":1999,"currency":"euro"}}`, 400, "price.currency"},
			{"POST", "/api/products", `{"name":"Lamp"}`, 400, "price"},
			{"POST", "/api/products", `{"price":{"amount":1,"currency":"EUR"}}`, 400, "name"},
			{"GET", "/api/products/" + server.NewID(), "", 404, ""},
			{"GET", "/api/nowhere", "", 404, ""},
			{"GET", "/nowhere", "", 404, ""},
			{"PUT", "/api/users/" + id, `{"name":"x"}`, 405, ""},
			{"DELETE", "/api/products", "", 405, ""},
		}
		for _, c := range cases {
			r := call(t, c.method, gw+c.path, c.body)
			name := fmt.Sprintf("%s %s %.60s", c.method, c.path, c.body)
			if r.status != c.status {
				t.Errorf("%s: status %d, want %d; body %s", name, r.status, c.status, r.body)
				continue
			}
			p := r.problem(t)
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Errorf("%s: problem %+v does not name field %q", name, p, c.field)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		if r := call(t, "DELETE", gw+"/api/users/"+id, ""); r.status != 204 {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}
		if r := call(t, "GET", gw+"/api/users/"+id, ""); r.status != 404 {
			t.Fatalf("GET after DELETE: %d", r.status)
		}
		if r := call(t, "DELETE", gw+"/api/products/"+pid, ""); r.status != 204 {
			t.Fatalf("DELETE product: %d %s", r.status, r.body)
		}
	})

	t.Run("the request id reaches every log line of the request", func(t *testing.T) {
		rid := "trace-me-" + server.NewRequestID()[:8]
		r := call(t, "GET", gw+"/api/users/"+server.NewID(), "", "X-Request-Id", rid)
		if got := r.header.Values("X-Request-Id"); len(got) != 1 || got[0] != rid {
			t.Fatalf("response X-Request-Id = %v, want [%s]", got, rid)
		}
		services := map[string]bool{}
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, rid) {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) == nil && rec["request_id"] == rid {
					services[rec["service"].(string)] = true
				}
			}
		}
		if !services["gateway"] || !services["users"] {
			t.Fatalf("request id %s logged by %v, want gateway and users", rid, services)
		}
	})

	t.Run("persists across restart", func(t *testing.T) {
		u := call(t, "POST", gw+"/api/users", `{"name":"Grace","email":"grace@example.com"}`).json(t)
		if err := sys.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		sys = startSystem(t, dir, io.Discard)
		gw = sys.URLs[gateway.Name]
		if r := call(t, "GET", gw+"/api/users/"+u["id"].(string), ""); r.status != 200 || r.json(t)["email"] != "grace@example.com" {
			t.Fatalf("after restart, GET user: %d %s", r.status, r.body)
		}
	})
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
}

// TestGatewayEdge checks what the gateway adds and removes on the way, and
// how it fails when an upstream is missing, dead or slow. It registers an
// echo service in the running system's registry, as a real instance would.
func TestGatewayEdge(t *testing.T) {
	sys := startSystem(t, t.TempDir(), io.Discard)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]

	var mu sync.Mutex
	var got *http.Request
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo/slow" {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		got = r.Clone(context.Background())
		mu.Unlock()
		w.Write([]byte("ok"))
	}))
	t.Cleanup(echo.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	nc, err := broker.Connect(sys.NATSURL, "test", testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	reg, err := discovery.Open(t.Context(), nc, discovery.Config{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(t.Context(), discovery.Instance{Service: "echo", ID: "e1", URL: echo.URL}); err != nil {
		t.Fatal(err)
	}
	// Wait until the gateway's watcher has the instance.
	deadline := time.Now().Add(3 * time.Second)
	for call(t, "GET", gw+"/api/echo/ping", "").status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never routed to the echo instance")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("hop-by-hop and spoofed forwarding headers are replaced", func(t *testing.T) {
		r := call(t, "GET", gw+"/api/echo/ping?x=1", "",
			"X-Forwarded-For", "6.6.6.6",
			"X-Forwarded-Host", "evil.example",
			"X-Forwarded-Proto", "https",
			"Connection", "X-Secret, Keep-Alive",
			"X-Secret", "leak",
			"Upgrade", "h2c",
			"Proxy-Authorization", "Basic Zm9vOmJhcg==",
			"Te", "trailers, deflate",
		)
		if r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		mu.Lock()
		defer mu.Unlock()
		h := got.Header
		checks := []struct{ header, want string }{
			{"X-Forwarded-For", "127.0.0.1"},
			{"X-Forwarded-Host", strings.TrimPrefix(gw, "http://")},
			{"X-Forwarded-Proto", "http"},
			{"X-Secret", ""},
			{"Upgrade", ""},
			{"Proxy-Authorization", ""},
		}
		for _, c := range checks {
			if v := strings.Join(h.Values(c.header), ","); v != c.want {
				t.Errorf("upstream got %s: %q, want %q", c.header, v, c.want)
			}
		}
		if h.Get("X-Request-Id") == "" {
			t.Error("upstream got no X-Request-Id")
		}
		if got.URL.Path != "/echo/ping" || got.URL.RawQuery != "x=1" {
			t.Errorf("upstream got %s?%s, want /echo/ping?x=1", got.URL.Path, got.URL.RawQuery)
		}
	})

	t.Run("a service without instances is 503 at once", func(t *testing.T) {
		start := time.Now()
		r := call(t, "GET", gw+"/api/ghost/1", "")
		if r.status != 503 || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("status %d after %s, want 503 at once", r.status, time.Since(start))
		}
		r.problem(t)
	})

	t.Run("a dead instance is 503 at once", func(t *testing.T) {
		if _, err := reg.Register(t.Context(), discovery.Instance{Service: "ghost", ID: "g1", URL: dead.URL}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		r := call(t, "GET", gw+"/api/ghost/1", "")
		if r.status != 503 || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("status %d after %s, want 503 at once", r.status, time.Since(start))
		}
		r.problem(t)
	})

	t.Run("a slow service is 504 within the timeout", func(t *testing.T) {
		start := time.Now()
		r := call(t, "GET", gw+"/api/echo/slow", "")
		took := time.Since(start)
		if r.status != 504 || took < 900*time.Millisecond || took > 2*time.Second {
			t.Fatalf("status %d after %s, want 504 after the 1s timeout", r.status, took)
		}
		r.problem(t)
	})
}

// TestExternalEngines runs users and catalog on PostgreSQL and the gateway,
// all on the external NATS, as `souk serve` does in production.
func TestExternalEngines(t *testing.T) {
	natsURL := os.Getenv(testenv.NATSEnv)
	if natsURL == "" {
		t.Skipf("external engines not tested: set %s and %s", testenv.NATSEnv, testenv.PostgresEnv)
	}
	cfg := Config{
		NATS:     natsURL,
		Registry: discovery.Config{Bucket: testenv.Name("registry_")},
		Gateway:  &GatewayConfig{Addr: "127.0.0.1:0", Timeout: 2 * time.Second, Routes: gateway.DefaultRoutes},
		Server:   server.DefaultConfig(),
	}
	for _, name := range ServiceNames() {
		cfg.Services = append(cfg.Services, ServiceConfig{Name: name, Addr: "127.0.0.1:0", DB: testenv.PostgresURL(t)})
	}
	sys, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Shutdown(context.Background())
		nc, err := broker.Connect(natsURL, "cleanup", testenv.Logger(t))
		if err == nil {
			defer nc.Close()
			if js, err := jetstream.New(nc); err == nil {
				_ = js.DeleteKeyValue(context.Background(), cfg.Registry.Bucket)
			}
		}
	})
	gw := sys.URLs[gateway.Name]
	r := call(t, "POST", gw+"/api/users", `{"name":"Ada","email":"ada@example.com"}`)
	if r.status != 201 {
		t.Fatalf("POST /api/users on PostgreSQL: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", gw+"/api/users", `{"name":"Ada","email":"ada@example.com"}`); r.status != 409 {
		t.Fatalf("duplicate email on PostgreSQL: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", gw+r.header.Get("Location"), ""); r.status != 200 {
		t.Fatalf("GET user on PostgreSQL: %d %s", r.status, r.body)
	}
	r = call(t, "POST", gw+"/api/products", `{"name":"Lamp","price":{"amount":100,"currency":"EUR"}}`)
	if r.status != 201 {
		t.Fatalf("POST /api/products on PostgreSQL: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", gw+"/api/products?q=lam", ""); r.status != 200 || len(r.json(t)["items"].([]any)) != 1 {
		t.Fatalf("search on PostgreSQL: %d %s", r.status, r.body)
	}
}

// TestEventsEndToEnd registers users through the gateway and waits for the
// catalog's read model, fed by UserRegistered events, to count them.
func TestEventsEndToEnd(t *testing.T) {
	sys := startSystem(t, t.TempDir(), io.Discard)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	for i := range 5 {
		if r := call(t, "POST", gw+"/api/users", fmt.Sprintf(`{"name":"U%d","email":"u%d@example.com"}`, i, i)); r.status != 201 {
			t.Fatalf("POST user: %d %s", r.status, r.body)
		}
	}
	call(t, "POST", gw+"/api/users", `{"name":"Dup","email":"u0@example.com"}`) // 409: no event
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := call(t, "GET", gw+"/api/catalog/stats", "")
		if r.status != 200 {
			t.Fatalf("stats: %d %s", r.status, r.body)
		}
		n := r.json(t)["registered_users"].(float64)
		if n == 5 {
			break
		}
		if n > 5 || time.Now().After(deadline) {
			t.Fatalf("catalog counts %v registered users, want 5", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
