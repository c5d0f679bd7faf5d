package system

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/openapitest"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/users"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer = testenv.Buffer

const (
	adminEmail    = "admin@example.com"
	adminPassword = "admin password 123"
)

// testGatewayConfig is the built-in configuration without rate limits (the
// tests that test them set their own), with a 1 s timeout, and with routes
// to two services only tests register: echo, which tells what it
// received, and ghost, which never runs.
func testGatewayConfig() gateway.Config {
	cfg := gateway.DefaultConfig().WithoutRateLimits()
	cfg.Defaults.Timeout = time.Second
	all := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	cfg.Routes = append(cfg.Routes,
		gateway.Route{Path: "/api/echo/{rest...}", Methods: all, Service: "echo", Policy: gateway.Public},
		gateway.Route{Path: "/api/ghost/{rest...}", Methods: all, Service: "ghost", Policy: gateway.Public},
	)
	return cfg
}

// startSystem starts every service and the gateway on random loopback ports
// with their data in dir, an admin account, and gw as the gateway's
// configuration (testGatewayConfig if nil).
func startSystem(t *testing.T, dir string, logs io.Writer, gw *gateway.Config, opts ...func(*Config)) *System {
	t.Helper()
	log, err := telemetry.NewLogger(logs, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	if gw == nil {
		c := testGatewayConfig()
		gw = &c
	}
	cfg := Config{
		NATSListen: "127.0.0.1:0",
		DataDir:    dir,
		Services:   testServices(),
		Gateway:    &GatewayConfig{Addr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", Config: *gw},
		Server:     server.DefaultConfig(),
		Keyring:    testKeyring(t, dir),
	}
	// Rotated keys sign at once; gateways learn them on the first unknown kid.
	cfg.Services.Users.SigningKeyLead = -1
	for _, name := range ServiceNames() {
		cfg.Instances = append(cfg.Instances, Instance{Service: name, Addr: "127.0.0.1:0", DB: dir + "/" + name + ".db"})
	}
	for _, o := range opts {
		o(&cfg)
	}
	sys, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

// testServices are the services' settings the tests run with: the
// defaults, and an admin account.
func testServices() Services {
	return Services{Users: users.Config{AdminEmail: adminEmail, AdminPassword: adminPassword}}
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

// call sends a request with a JSON body (if not empty) and headers given
// as name, value pairs.
func call(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()
	return callWith(t, http.DefaultClient, method, url, body, headers...)
}

// clientFrom returns a client whose connections leave from ip (on Linux,
// any address in 127.0.0.0/8 is the loopback's), so that the gateway sees
// another client address.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// callWith is call with client.
func callWith(t *testing.T, client *http.Client, method, url, body string, headers ...string) response {
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
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	checkAPI(t, req, []byte(body), resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// checkAPI fails the test if an exchange with the gateway's API is not as
// openapi.yaml describes it. Only the gateway serves /api/… (services
// serve their routes without the prefix), and the users service serves
// the JWK Set as the gateway does; routes only tests have (echo, ghost)
// are not in the spec, and neither are methods a route does not list.
func checkAPI(t *testing.T, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	if !strings.HasPrefix(req.URL.Path, "/api/") && req.URL.Path != "/.well-known/jwks.json" {
		return
	}
	spec, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Check(req, reqBody, resp, respBody); err != nil {
		t.Error(err)
	}
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// login returns an access token for email.
func login(t *testing.T, gw, email, password string) string {
	t.Helper()
	r := call(t, "POST", gw+"/api/auth/login", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password))
	if r.status != 200 {
		t.Fatalf("login %s: %d %s", email, r.status, r.body)
	}
	tok, _ := r.json(t)["access_token"].(string)
	return tok
}

// register signs a customer up and returns its id and an access token.
func register(t *testing.T, gw, name, email string) (id, token string) {
	t.Helper()
	r := call(t, "POST", gw+"/api/auth/register", fmt.Sprintf(`{"name":%q,"email":%q,"password":"correct horse battery"}`, name, email))
	if r.status != 201 {
		t.Fatalf("register %s: %d %s", email, r.status, r.body)
	}
	return r.json(t)["id"].(string), login(t, gw, email, "correct horse battery")
}

// serveAs registers e as an instance of service and waits until the
// gateway has sent it a request for path.
func serveAs(t *testing.T, reg *discovery.Registry, gw, service string, e *echoService, path string) {
	t.Helper()
	if _, err := reg.Register(t.Context(), discovery.Instance{Service: service, ID: discovery.NewInstanceID(), URL: e.URL}); err != nil {
		t.Fatal(err)
	}
	_, before := e.request()
	if !testenv.Eventually(3*time.Second, func() bool {
		call(t, "GET", gw+path, "")
		_, n := e.request()
		return n > before
	}) {
		t.Fatalf("the gateway never routed %s to %s", path, service)
	}
}

// testKeyring is the keyring in dir, made if there is none.
func testKeyring(t testing.TB, dir string) *secrets.Keyring {
	t.Helper()
	k, err := secrets.Ensure(filepath.Join(dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
