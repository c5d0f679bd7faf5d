package system

import (
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
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/services/gateway"
)

func TestSystemEndToEnd(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	sys := startSystem(t, dir, logs, nil)
	gw := sys.URLs[gateway.Name]

	for name, u := range sys.URLs {
		if r := call(t, "GET", u+"/readyz", ""); r.status != 200 {
			t.Fatalf("%s /readyz: %d %s", name, r.status, r.body)
		}
	}
	admin := bearer(login(t, gw, adminEmail, adminPassword))

	// A user's life through the gateway.
	signUp := `{"name":"Ada Lovelace","email":"Ada@Example.com","password":"correct horse battery"}`
	if r := call(t, "POST", gw+"/api/auth/register", signUp, "Content-Type", "text/plain"); r.status != 415 || r.problem(t).Code != "unsupported_media_type" {
		t.Fatalf("register with a text/plain body: %d %s, want 415", r.status, r.body)
	}
	r := call(t, "POST", gw+"/api/auth/register", signUp)
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	user := r.json(t)
	id, _ := user["id"].(string)
	if loc := r.header.Get("Location"); loc != "/api/users/"+id {
		t.Fatalf("Location = %q, want /api/users/%s", loc, id)
	}
	if user["email"] != "ada@example.com" || user["role"] != "customer" {
		t.Fatalf("registered %v, want the email lower-cased and role customer", user)
	}
	ada := bearer(login(t, gw, "ada@example.com", "correct horse battery"))
	if r := call(t, "GET", gw+"/api/users/"+id, "", ada...); r.status != 200 || r.json(t)["name"] != "Ada Lovelace" {
		t.Fatalf("GET /api/users/%s as herself: %d %s", id, r.status, r.body)
	}
	if r := call(t, "GET", gw+"/api/users/"+id, ""); r.status != 401 {
		t.Fatalf("GET a user without a token: %d, want 401", r.status)
	}
	if r := call(t, "PATCH", gw+"/api/users/"+id, `{"name":"Ada King"}`, ada...); r.status != 200 || r.json(t)["name"] != "Ada King" {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", sys.URLs["users"]+"/users/"+id, "", "X-Souk-User-Id", id, "X-Souk-Role", "customer"); r.status != 401 {
		t.Fatalf("GET /users/%s on the service's own port, with identity headers and no proof: %d %s, want 401", id, r.status, r.body)
	}
	for i := range 3 {
		body := fmt.Sprintf(`{"name":"User %d","email":"u%d@example.com"}`, i, i)
		if r := call(t, "POST", gw+"/api/users", body, admin...); r.status != 201 {
			t.Fatalf("admin POST %s: %d %s", body, r.status, r.body)
		}
	}
	seen := 0
	next := gw + "/api/users?limit=3"
	for pages := 0; next != ""; pages++ {
		r := call(t, "GET", next, "", admin...)
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
	if seen != 5 { // the admin, Ada and three more
		t.Fatalf("paging saw %d users, want 5", seen)
	}

	// A product's life.
	r = call(t, "POST", gw+"/api/products", `{"name":"Brass Lamp","description":"warm light","price":{"amount":4999,"currency":"EUR"}}`, admin...)
	if r.status != 201 {
		t.Fatalf("POST /api/products: %d %s", r.status, r.body)
	}
	pid := r.json(t)["id"].(string)
	if r.header.Get("Location") != "/api/products/"+pid {
		t.Fatalf("Location = %q", r.header.Get("Location"))
	}
	call(t, "POST", gw+"/api/products", `{"name":"Copper Kettle","price":{"amount":2500,"currency":"EUR"}}`, admin...)
	if r := call(t, "GET", gw+"/api/products?q=LAMP", ""); r.status != 200 || len(r.json(t)["items"].([]any)) != 1 {
		t.Fatalf("search q=LAMP: %d %s", r.status, r.body)
	}
	r = call(t, "PATCH", gw+"/api/products/"+pid, `{"price":{"amount":3999,"currency":"EUR"}}`, admin...)
	if r.status != 200 || r.json(t)["price"].(map[string]any)["amount"] != 3999.0 {
		t.Fatalf("PATCH price: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", sys.URLs["catalog"]+"/products/"+pid, ""); r.status != 401 {
		t.Fatalf("GET on catalog's own port without a proof: %d, want 401", r.status)
	}

	t.Run("bad input", func(t *testing.T) {
		big := `{"name":"` + strings.Repeat("x", 1<<20) + `","email":"big@example.com"}`
		cases := []struct {
			method, path, body string
			auth               []string
			status             int
			field              string
		}{
			{"POST", "/api/auth/register", `{"name":"Bob",`, nil, 400, ""},
			{"POST", "/api/auth/register", `{"name":"Bob","email":"bob@example.com","password":"long enough pw","admin":true}`, nil, 400, "admin"},
			{"POST", "/api/auth/register", `{"email":"bob@example.com","password":"long enough pw"}`, nil, 400, "name"},
			{"POST", "/api/auth/register", `{"name":"  ","email":"bob@example.com","password":"long enough pw"}`, nil, 400, "name"},
			{"POST", "/api/auth/register", `{"name":"Bob","email":"not-an-email","password":"long enough pw"}`, nil, 400, "email"},
			{"POST", "/api/auth/register", `{"name":"Bob","email":"Bob <bob@example.com>","password":"long enough pw"}`, nil, 400, "email"},
			{"POST", "/api/auth/register", `{"name":"Bob","email":42,"password":"long enough pw"}`, nil, 400, "email"},
			{"POST", "/api/auth/register", `{"name":"Bob","email":"bob@example.com","password":"short"}`, nil, 400, "password"},
			{"POST", "/api/auth/register", `{"name":"Bob","email":"bob@example.com","password":"long enough pw","role":"admin"}`, nil, 400, "role"},
			{"POST", "/api/auth/register", `{"name":"Other","email":"ADA@example.com","password":"long enough pw"}`, nil, 409, ""},
			{"POST", "/api/auth/register", big, nil, 413, ""},
			{"GET", "/api/users/not-a-uuid", "", admin, 400, "id"},
			{"GET", "/api/users/' OR 1=1 --", "", admin, 400, "id"},
			{"GET", "/api/users/" + server.NewID(), "", admin, 404, ""},
			{"PATCH", "/api/users/" + server.NewID(), `{"name":"x"}`, admin, 404, ""},
			{"PATCH", "/api/users/" + id, `{}`, admin, 400, ""},
			{"PATCH", "/api/users/" + id, `{"email":"nope"}`, admin, 400, "email"},
			{"DELETE", "/api/users/" + server.NewID(), "", admin, 404, ""},
			{"GET", "/api/users?limit=0", "", admin, 400, "limit"},
			{"GET", "/api/users?limit=1000", "", admin, 400, "limit"},
			{"GET", "/api/users?cursor=garbage", "", admin, 400, "cursor"},
			{"POST", "/api/products", `{"name":"Lamp","price":{"amount":-1,"currency":"EUR"}}`, admin, 400, "price.amount"},
			{"POST", "/api/products", `{"name":"Lamp","price":{"amount":19.99,"currency":"EUR"}}`, admin, 400, "price.amount"},
			{"POST", "/api/products", `{"name":"Lamp","price":{"amount":1999,"currency":"euro"}}`, admin, 400, "price.currency"},
			{"POST", "/api/products", `{"name":"Lamp"}`, admin, 400, "price"},
			{"POST", "/api/products", `{"price":{"amount":1,"currency":"EUR"}}`, admin, 400, "name"},
			{"GET", "/api/products/" + server.NewID(), "", nil, 404, ""},
			{"GET", "/api/nowhere", "", nil, 404, ""},
			{"GET", "/nowhere", "", nil, 404, ""},
			{"PUT", "/api/users/" + id, `{"name":"x"}`, admin, 405, ""},
			{"DELETE", "/api/products", "", admin, 405, ""},
			{"TRACE", "/api/products", "", nil, 405, ""},
			{"GET", "/api/products/..%2f..%2fusers", "", nil, 400, ""},
			{"GET", "/api/products/%2e%2e", "", nil, 400, ""},
		}
		for _, c := range cases {
			r := call(t, c.method, gw+c.path, c.body, c.auth...)
			name := fmt.Sprintf("%s %s %.60s", c.method, c.path, c.body)
			if r.status != c.status {
				t.Errorf("%s: status %d, want %d; body %.300s", name, r.status, c.status, r.body)
				continue
			}
			p := r.problem(t)
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Errorf("%s: problem %+v does not name field %q", name, p, c.field)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		if r := call(t, "DELETE", gw+"/api/users/"+id, "", ada...); r.status != 204 {
			t.Fatalf("DELETE herself: %d %s", r.status, r.body)
		}
		if r := call(t, "GET", gw+"/api/users/"+id, "", admin...); r.status != 404 {
			t.Fatalf("GET after DELETE: %d", r.status)
		}
		if r := call(t, "DELETE", gw+"/api/products/"+pid, "", admin...); r.status != 204 {
			t.Fatalf("DELETE product: %d %s", r.status, r.body)
		}
	})

	t.Run("the request id reaches every log line of the request", func(t *testing.T) {
		rid := "trace-me-" + server.NewRequestID()[:8]
		r := call(t, "GET", gw+"/api/users/"+server.NewID(), "", append(admin, "X-Request-Id", rid)...)
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
		uid, _ := register(t, gw, "Grace", "grace@example.com")
		if err := sys.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		sys = startSystem(t, dir, io.Discard, nil)
		gw = sys.URLs[gateway.Name]
		grace := bearer(login(t, gw, "grace@example.com", "correct horse battery"))
		if r := call(t, "GET", gw+"/api/users/"+uid, "", grace...); r.status != 200 || r.json(t)["email"] != "grace@example.com" {
			t.Fatalf("after restart, GET user: %d %s", r.status, r.body)
		}
	})
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
}

// echoService is an upstream the tests register in the running system's
// registry, as a real instance would register: it records what it got.
type echoService struct {
	*httptest.Server
	mu   sync.Mutex
	last *http.Request
	hits int
}

func newEcho(t *testing.T, handle func(w http.ResponseWriter, r *http.Request) bool) *echoService {
	e := &echoService{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.last = r.Clone(context.Background())
		e.hits++
		e.mu.Unlock()
		if handle != nil && handle(w, r) {
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echoService) request() (*http.Request, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last, e.hits
}

// registry connects to the system's NATS and opens its registry.
func registry(t *testing.T, sys *System) *discovery.Registry {
	nc, err := broker.Connect(sys.NATSURL, "test", sys.Credentials(AdminIdentity), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	reg, err := discovery.Open(t.Context(), nc, discovery.Config{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestGatewayEdge checks what the gateway adds and removes on the way, and
// how it fails when an upstream is missing, dead or slow.
func TestGatewayEdge(t *testing.T) {
	sys := startSystem(t, t.TempDir(), io.Discard, nil)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	echo := newEcho(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/echo/slow" {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return true
		}
		return false
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	reg := registry(t, sys)
	serveAs(t, reg, gw, "echo", echo, "/api/echo/ping")

	t.Run("hop-by-hop, forwarding and identity headers are the gateway's", func(t *testing.T) {
		r := call(t, "GET", gw+"/api/echo/ping?x=1", "",
			"X-Forwarded-For", "6.6.6.6",
			"X-Forwarded-Host", "evil.example",
			"X-Forwarded-Proto", "https",
			"Connection", "X-Secret, Keep-Alive",
			"X-Secret", "leak",
			"Upgrade", "h2c",
			"Proxy-Authorization", "Basic Zm9vOmJhcg==",
			"X-Souk-User-Id", "someone-else",
			"X-Souk-Role", "admin",
			"x-souk-auth", "jwt",
		)
		if r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		got, _ := echo.request()
		h := got.Header
		checks := []struct{ header, want string }{
			{"X-Forwarded-For", "127.0.0.1"},
			{"X-Forwarded-Host", strings.TrimPrefix(gw, "http://")},
			{"X-Forwarded-Proto", "http"},
			{"X-Secret", ""},
			{"Upgrade", ""},
			{"Proxy-Authorization", ""},
			{"X-Souk-User-Id", ""},
			{"X-Souk-Role", ""},
			{"X-Souk-Auth", ""},
		}
		for _, c := range checks {
			if v := strings.Join(h.Values(c.header), ","); v != c.want {
				t.Errorf("upstream got %s: %q, want %q", c.header, v, c.want)
			}
		}
		if h.Get("X-Request-Id") == "" {
			t.Error("upstream got no X-Request-Id")
		}
		if ms := h.Get("X-Souk-Timeout-Ms"); ms == "" || ms > "1000" && len(ms) >= 4 {
			t.Errorf("upstream got X-Souk-Timeout-Ms %q, want the time left of 1s", ms)
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
		Services: testServices(),
		Registry: discovery.Config{Bucket: testenv.Name("registry_")},
		Gateway:  &GatewayConfig{Addr: "127.0.0.1:0", Config: testGatewayConfig()},
		Server:   server.DefaultConfig(),
		Keyring:  testKeyring(t, t.TempDir()),
	}
	for _, name := range ServiceNames() {
		cfg.Instances = append(cfg.Instances, Instance{Service: name, Addr: "127.0.0.1:0", DB: testenv.PostgresURL(t)})
	}
	sys, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Shutdown(context.Background())
		nc, err := broker.Connect(natsURL, "cleanup", broker.Credentials{}, testenv.Logger(t))
		if err == nil {
			defer nc.Close()
			if js, err := jetstream.New(nc); err == nil {
				_ = js.DeleteKeyValue(context.Background(), cfg.Registry.Bucket)
				// The services' streams and durable consumers carry their
				// names: left behind, the next run would consume this run's
				// events against fresh databases.
				for _, name := range ServiceNames() {
					_ = js.DeleteStream(context.Background(), events.StreamName(name))
				}
			}
		}
	})
	gw := sys.URLs[gateway.Name]
	admin := bearer(login(t, gw, adminEmail, adminPassword))
	uid, ada := register(t, gw, "Ada", "ada-"+testenv.Name("")+"@example.com")
	if r := call(t, "GET", gw+"/api/users/"+uid, "", bearer(ada)...); r.status != 200 {
		t.Fatalf("GET user on PostgreSQL: %d %s", r.status, r.body)
	}
	r := call(t, "POST", gw+"/api/products", `{"name":"Lamp","price":{"amount":100,"currency":"EUR"}}`, admin...)
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
	sys := startSystem(t, t.TempDir(), io.Discard, nil)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	admin := bearer(login(t, gw, adminEmail, adminPassword))
	for i := range 5 {
		body := fmt.Sprintf(`{"name":"U%d","email":"u%d@example.com","password":"correct horse battery"}`, i, i)
		if r := call(t, "POST", gw+"/api/auth/register", body); r.status != 201 {
			t.Fatalf("register: %d %s", r.status, r.body)
		}
	}
	call(t, "POST", gw+"/api/auth/register", `{"name":"Dup","email":"u0@example.com","password":"correct horse battery"}`) // 409: no event
	want := 6.0                                                                                                            // and the admin
	var n float64
	if !testenv.Eventually(5*time.Second, func() bool {
		r := call(t, "GET", gw+"/api/catalog/stats", "", admin...)
		n, _ = r.json(t)["registered_users"].(float64)
		return n >= want
	}) || n != want {
		t.Fatalf("catalog counts %v registered users, want %v", n, want)
	}
}
