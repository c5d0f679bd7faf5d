package system

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/resilience"
	"github.com/souk-shop/souk/platform/store"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/users"
)

// signingKey reads the users service's active signing key from its
// database, so that the tests can make tokens the gateway must refuse for
// reasons other than the signature.
func signingKey(t *testing.T, dir string) auth.SigningKey {
	db, err := store.Open(context.Background(), dir+"/users.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, err := users.NewStore(db, nil, testKeyring(t, dir)).ActiveKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAuthProbes sends each way of faking or stretching an identity through
// the gateway and checks that it fails safely.
func TestAuthProbes(t *testing.T) {
	dir := t.TempDir()
	sys := startSystem(t, dir, io.Discard, nil)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	admin := bearer(login(t, gw, adminEmail, adminPassword))
	aliceID, alice := register(t, gw, "Alice", "alice@example.com")
	bobID, bob := register(t, gw, "Bob", "bob@example.com")
	aliceURL := gw + "/api/users/" + aliceID
	key := signingKey(t, dir)

	claims := func(edit func(*auth.Claims)) *auth.Claims {
		now := time.Now()
		c := &auth.Claims{Role: auth.RoleCustomer, RegisteredClaims: jwt.RegisteredClaims{
			Issuer: auth.Issuer, Subject: aliceID, Audience: jwt.ClaimStrings{auth.Audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}}
		if edit != nil {
			edit(c)
		}
		return c
	}
	signed := func(method jwt.SigningMethod, c *auth.Claims, kid string, k any) string {
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := signed(jwt.SigningMethodEdDSA, claims(nil), key.ID, key.Private)
	parts := strings.Split(valid, ".")
	tamperedSig := parts[0] + "." + parts[1] + "." + flip(parts[2])
	adminPayload := strings.Split(signed(jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Role = auth.RoleAdmin }), key.ID, key.Private), ".")[1]
	_, otherKey, _ := ed25519.GenerateKey(nil)
	pub := key.Private.Public().(ed25519.PublicKey)

	probes := []struct {
		name   string
		header []string
		url    string
		status int
	}{
		{"a valid token made here (control)", bearer(valid), aliceURL, 200},
		{"alg none", bearer(signed(jwt.SigningMethodNone, claims(nil), key.ID, jwt.UnsafeAllowNoneSignatureType)), aliceURL, 401},
		{"HS256 signed with the public key", bearer(signed(jwt.SigningMethodHS256, claims(nil), key.ID, []byte(pub))), aliceURL, 401},
		{"expired", bearer(signed(jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }), key.ID, key.Private)), aliceURL, 401},
		{"not before in the future", bearer(signed(jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), key.ID, key.Private)), aliceURL, 401},
		{"no expiry", bearer(signed(jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.ExpiresAt = nil }), key.ID, key.Private)), aliceURL, 401},
		{"wrong audience", bearer(signed(jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"other-api"} }), key.ID, key.Private)), aliceURL, 401},
		{"wrong issuer", bearer(signed(jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Issuer = "evil" }), key.ID, key.Private)), aliceURL, 401},
		{"unknown kid", bearer(signed(jwt.SigningMethodEdDSA, claims(nil), "no-such-key", otherKey)), aliceURL, 401},
		{"no kid", bearer(strings.Replace(valid, parts[0], "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9", 1)), aliceURL, 401},
		{"known kid, another key", bearer(signed(jwt.SigningMethodEdDSA, claims(nil), key.ID, otherKey)), aliceURL, 401},
		{"tampered signature", bearer(tamperedSig), aliceURL, 401},
		{"role changed to admin in the payload", bearer(parts[0] + "." + adminPayload + "." + parts[2]), gw + "/api/users", 401},
		{"garbage bearer", bearer("not.a.token"), aliceURL, 401},
		{"basic auth", []string{"Authorization", "Basic YWxpY2U6cHc="}, aliceURL, 401},
		{"malformed API key", []string{"X-API-Key", "souk_nothex_short"}, aliceURL, 401},
		{"user B reading user A", bearer(bob), aliceURL, 403},
		{"user B changing user A", append(bearer(bob), "X-HTTP-Method-Override", "PATCH"), aliceURL, 403},
		{"a customer listing users", bearer(alice), gw + "/api/users", 403},
		{"spoofed identity headers, no token", []string{"X-Souk-User-Id", aliceID, "X-Souk-Role", "admin", "X-Souk-Auth", "jwt"}, aliceURL, 401},
		{"spoofed admin role with a customer token", append(bearer(bob), "X-Souk-Role", "admin", "X-Souk-User-Id", aliceID), aliceURL, 403},
		{"Connection names the identity header", append(bearer(alice), "Connection", "X-Souk-User-Id, X-Souk-Role"), aliceURL, 200},
		{"Connection trick with another user's id", append(bearer(bob), "Connection", "X-Souk-User-Id", "X-Souk-User-Id", aliceID), aliceURL, 403},
		{"admin reads anyone (control)", admin, aliceURL, 200},
	}
	for _, p := range probes {
		r := call(t, "GET", p.url, "", p.header...)
		if r.status != p.status {
			t.Errorf("%s: status %d, want %d (%s)", p.name, r.status, p.status, r.body)
		} else if p.status >= 400 {
			r.problem(t)
		}
	}

	t.Run("writes need the right role", func(t *testing.T) {
		product := `{"name":"Lamp","price":{"amount":100,"currency":"EUR"}}`
		if r := call(t, "POST", gw+"/api/products", product, bearer(alice)...); r.status != 403 {
			t.Errorf("customer creating a product: %d", r.status)
		}
		if r := call(t, "POST", gw+"/api/products", product); r.status != 401 {
			t.Errorf("anonymous creating a product: %d", r.status)
		}
		if r := call(t, "PATCH", aliceURL, `{"role":"admin"}`, bearer(alice)...); r.status != 403 {
			t.Errorf("customer making herself admin: %d %s", r.status, r.body)
		}
		if r := call(t, "PATCH", gw+"/api/users/"+bobID, `{"name":"Mallory"}`, bearer(alice)...); r.status != 403 {
			t.Errorf("Alice renaming Bob: %d", r.status)
		}
		if r := call(t, "POST", gw+"/api/products", product, admin...); r.status != 201 {
			t.Errorf("admin creating a product: %d %s", r.status, r.body)
		}
	})

	t.Run("API keys work until revoked, everywhere within seconds", func(t *testing.T) {
		r := call(t, "POST", gw+"/api/auth/keys", `{"name":"ci"}`, bearer(alice)...)
		if r.status != 201 {
			t.Fatalf("create key: %d %s", r.status, r.body)
		}
		k := r.json(t)
		apiKey, keyID := k["key"].(string), k["id"].(string)
		if !testenv.Eventually(3*time.Second, func() bool { return call(t, "GET", aliceURL, "", "X-API-Key", apiKey).status == 200 }) {
			t.Fatal("the new API key did not work within 3s")
		}
		if r := call(t, "GET", aliceURL, "", bearer(apiKey)...); r.status != 200 {
			t.Fatalf("API key as a bearer token: %d", r.status)
		}
		if r := call(t, "GET", aliceURL, "", "X-API-Key", apiKey[:len(apiKey)-2]+"xx"); r.status != 401 {
			t.Fatalf("API key with a wrong secret: %d", r.status)
		}
		if r := call(t, "GET", gw+"/api/auth/keys", "", bearer(alice)...); r.status != 200 || strings.Contains(string(r.body), apiKey) {
			t.Fatalf("listing keys: %d, and the secret must never be listed: %s", r.status, r.body)
		}
		if r := call(t, "DELETE", gw+"/api/auth/keys/"+keyID, "", bearer(bob)...); r.status != 404 {
			t.Fatalf("Bob revoking Alice's key: %d", r.status)
		}
		if r := call(t, "DELETE", gw+"/api/auth/keys/"+keyID, "", bearer(alice)...); r.status != 204 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		start := time.Now()
		if !testenv.Eventually(5*time.Second, func() bool { return call(t, "GET", aliceURL, "", "X-API-Key", apiKey).status == 401 }) {
			t.Fatal("the revoked key still works after 5s")
		}
		t.Logf("revoked key refused after %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("tokens of a rotated key stay valid; new tokens use the new key", func(t *testing.T) {
		r := call(t, "POST", gw+"/api/auth/signing-keys/rotate", "", admin...)
		if r.status != 200 {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		kid := r.json(t)["kid"].(string)
		if r := call(t, "GET", aliceURL, "", bearer(alice)...); r.status != 200 {
			t.Fatalf("a token from before the rotation: %d", r.status)
		}
		// The system signs with a rotated key at once (no lead), so the
		// gateway learns the key from the first token naming it; the probes
		// above spent that refresh on an unknown kid, and refreshes come at
		// most every 2 s.
		time.Sleep(2100 * time.Millisecond)
		fresh := login(t, gw, "alice@example.com", "correct horse battery")
		tok, _, _ := jwt.NewParser().ParseUnverified(fresh, &auth.Claims{})
		if tok.Header["kid"] != kid {
			t.Fatalf("new token's kid %v, want %s", tok.Header["kid"], kid)
		}
		if r := call(t, "GET", aliceURL, "", bearer(fresh)...); r.status != 200 {
			t.Fatalf("a token from the new key: %d %s", r.status, r.body)
		}
	})

	t.Run("oversized body and headers", func(t *testing.T) {
		big := `{"name":"` + strings.Repeat("x", 2<<20) + `","price":{"amount":1,"currency":"EUR"}}`
		if r := call(t, "POST", gw+"/api/products", big, admin...); r.status != 413 {
			t.Errorf("2 MiB body: %d", r.status)
		}
		if r := call(t, "GET", gw+"/api/products", "", "X-Big", strings.Repeat("x", 100<<10)); r.status != 431 {
			t.Errorf("100 KiB header: %d", r.status)
		}
	})

	t.Run("CORS", func(t *testing.T) {
		r := call(t, "OPTIONS", gw+"/api/products", "", "Origin", "https://shop.example", "Access-Control-Request-Method", "GET")
		if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("preflight: %d %v", r.status, r.header)
		}
		r = call(t, "GET", gw+"/api/products", "", "Origin", "https://shop.example")
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET with Origin: no Access-Control-Allow-Origin: %v", r.header)
		}
		if r := call(t, "GET", aliceURL, "", append(bearer(alice), "Origin", "https://evil.example")...); r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("a route without CORS allowed an origin: %v", r.header)
		}
	})

	t.Run("failed logins wait, from their address; the owner's elsewhere does not", func(t *testing.T) {
		var last response
		for range 6 {
			last = call(t, "POST", gw+"/api/auth/login", `{"email":"bob@example.com","password":"wrong password!"}`)
		}
		if last.status != 429 || last.header.Get("Retry-After") == "" {
			t.Fatalf("6th failed login at once: %d, Retry-After %q", last.status, last.header.Get("Retry-After"))
		}
		last.problem(t)
		if r := call(t, "POST", gw+"/api/auth/login", `{"email":"bob@example.com","password":"correct horse battery"}`); r.status != 429 {
			t.Fatalf("the right password from the address that failed, before its wait is over: %d, want 429", r.status)
		}
		from := clientFrom(t, "127.0.0.2")
		if r := callWith(t, from, "POST", gw+"/api/auth/login", `{"email":"bob@example.com","password":"correct horse battery"}`); r.status != 200 {
			t.Fatalf("the right password from another address: %d %s, want 200", r.status, r.body)
		}
	})
}

// flip changes a character in the middle of s.
func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// TestRateLimit sends twice a route's rate and checks that no more than
// rate × time + burst get through, and that the refusals say when to come
// back.
func TestRateLimit(t *testing.T) {
	cfg := testGatewayConfig()
	for i := range cfg.Routes {
		if cfg.Routes[i].Service == "echo" {
			cfg.Routes[i].RateLimit = &gateway.RateLimits{Address: &gateway.Limit{RPS: 20, Burst: 10}}
		}
	}
	sys := startSystem(t, t.TempDir(), io.Discard, &cfg)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	echo := newEcho(t, nil)
	reg := registry(t, sys)
	serveAs(t, reg, gw, "echo", echo, "/api/echo/x")
	time.Sleep(time.Second) // let the bucket refill after serveAs's requests

	const rate, burst, seconds = 20, 10, 2
	start := time.Now()
	accepted, limited := 0, 0
	var sample response
	remaining := regexp.MustCompile(`^"address";r=(\d+);t=(\d+)$`)
	for i := range 2 * rate * seconds {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / (2 * rate))))
		r := call(t, "GET", gw+"/api/echo/x", "")
		// Every answer, success or not, tells the client its limit and
		// what is left of it (draft-ietf-httpapi-ratelimit-headers).
		if p := r.header.Get("RateLimit-Policy"); p != `"address";q=10;w=1` {
			t.Fatalf("answer %d: RateLimit-Policy %q, want \"address\";q=10;w=1", i, p)
		}
		m := remaining.FindStringSubmatch(r.header.Get("RateLimit"))
		if m == nil {
			t.Fatalf("answer %d: RateLimit %q", i, r.header.Get("RateLimit"))
		}
		switch r.status {
		case 200:
			accepted++
		case 429:
			limited++
			sample = r
			if m[1] != "0" {
				t.Fatalf("a 429 says %s requests remain", m[1])
			}
		default:
			t.Fatalf("status %d", r.status)
		}
	}
	elapsed := time.Since(start).Seconds()
	t.Logf("at 2x the rate for %.2fs: %d accepted, %d refused (limit %d/s, burst %d)", elapsed, accepted, limited, rate, burst)
	if max := int(rate*elapsed) + burst; accepted > max {
		t.Fatalf("%d accepted, more than rate × time + burst = %d", accepted, max)
	}
	if accepted < rate*seconds {
		t.Fatalf("only %d accepted: the limit bites below its rate", accepted)
	}
	if sample.header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After: %v", sample.header)
	}
	sample.problem(t)
}

var transitions = regexp.MustCompile(`souk_upstream_breaker_transitions_total\{service="gateway",state="open",upstream="echo"\} (\d+)`)

// TestResilience: retries carry idempotent requests past a failing
// instance, whose circuit then opens; a POST is never retried; the
// bulkhead bounds what is in flight.
func TestResilience(t *testing.T) {
	cfg := testGatewayConfig()
	cfg.Upstream.Breaker = resilience.BreakerConfig{FailureRate: 0.5, MinRequests: 5, Window: 10 * time.Second, OpenFor: 30 * time.Second, Probes: 1}
	cfg.Upstream.MaxInFlight = 2
	sys := startSystem(t, t.TempDir(), io.Discard, &cfg)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	reg := registry(t, sys)

	// An instance failing of its own (500s), beside a healthy one. (503s
	// would be retried past it, and would not open its circuit: they
	// speak of what stands behind it; platform/resilience tests that.)
	broken := newEcho(t, func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusInternalServerError)
		return true
	})
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	healthy := newEcho(t, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/hold") {
			<-release
		}
		return false
	})
	serveAs(t, reg, gw, "echo", healthy, "/api/echo/x")
	serveAs(t, reg, gw, "echo", broken, "/api/echo/x")

	// Its 500s reach clients (a bug is not retried) until its circuit
	// opens: the default breaker wants 20 requests and half of them failed.
	failures := 0
	for range 60 {
		if r := call(t, "GET", gw+"/api/echo/x", ""); r.status != 200 {
			failures++
		}
	}
	if failures == 0 || failures > 25 {
		t.Errorf("%d of 60 GETs failed before the broken instance's circuit opened; want a few, at most 25", failures)
	}
	_, brokenHits := broken.request()
	for range 40 {
		call(t, "GET", gw+"/api/echo/x", "")
	}
	_, after := broken.request()
	if after != brokenHits {
		t.Errorf("the broken instance got %d more requests after its circuit should have opened", after-brokenHits)
	}
	for i := range 20 {
		if r := call(t, "GET", gw+"/api/echo/x", ""); r.status != 200 {
			t.Fatalf("GET %d with the broken instance's circuit open: %d", i, r.status)
		}
	}
	m := call(t, "GET", sys.URLs[GatewayOpsName]+"/metrics", "")
	if got := transitions.FindSubmatch(m.body); got == nil || string(got[1]) == "0" {
		t.Errorf("no breaker opened for echo in /metrics")
	}

	t.Run("a POST is not retried", func(t *testing.T) {
		ghost := newEcho(t, func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		})
		serveAs(t, reg, gw, "ghost", ghost, "/api/ghost/x")
		_, before := ghost.request()
		if r := call(t, "POST", gw+"/api/ghost/x", `{"a":1}`); r.status != 503 {
			t.Fatalf("POST to a failing service: %d", r.status)
		}
		if _, n := ghost.request(); n != before+1 {
			t.Fatalf("the POST reached the service %d times", n-before)
		}
	})

	t.Run("the bulkhead bounds requests in flight", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { call(t, "POST", gw+"/api/echo/hold", `{}`) })
		}
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		r := call(t, "POST", gw+"/api/echo/x", `{}`)
		if r.status != 503 || time.Since(start) > 200*time.Millisecond {
			t.Fatalf("a third request with two in flight and max 2: %d after %s, want 503 at once", r.status, time.Since(start))
		}
		once.Do(func() { close(release) })
		wg.Wait()
		if r := call(t, "POST", gw+"/api/echo/x", `{}`); r.status != 200 {
			t.Fatalf("after the two finished: %d", r.status)
		}
	})
}

// TestCatalogCaching follows a catalog read through the gateway: it
// carries an ETag and Cache-Control, a matching If-None-Match gets 304
// without a body (also for the weak tag of a compressed answer), and a
// change of the product changes the tag.
func TestCatalogCaching(t *testing.T) {
	sys := startSystem(t, t.TempDir(), io.Discard, nil)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	admin := bearer(login(t, gw, adminEmail, adminPassword))
	var id string
	for i := range 12 { // a page of more than 1 KiB
		body := fmt.Sprintf(`{"name":"Brass Lamp %d","description":"warm light from a lamp of brass","price":{"amount":4999,"currency":"EUR"}}`, i)
		r := call(t, "POST", gw+"/api/products", body, admin...)
		if r.status != 201 {
			t.Fatalf("create a product: %d %s", r.status, r.body)
		}
		id = r.json(t)["id"].(string)
	}

	product := gw + "/api/products/" + id
	first := call(t, "GET", product, "")
	etag := first.header.Get("ETag")
	if first.status != 200 || !strings.HasPrefix(etag, `"`) || first.header.Get("Cache-Control") == "" {
		t.Fatalf("GET a product: %d, ETag %q, Cache-Control %q", first.status, etag, first.header.Get("Cache-Control"))
	}
	if r := call(t, "GET", product, "", "If-None-Match", etag); r.status != 304 || len(r.body) != 0 || r.header.Get("ETag") != etag {
		t.Fatalf("GET with If-None-Match %s: %d, %d bytes, ETag %q; want 304, none, the same tag", etag, r.status, len(r.body), r.header.Get("ETag"))
	}

	list := gw + "/api/products?limit=50"
	page := call(t, "GET", list, "", "Accept-Encoding", "gzip")
	weak := page.header.Get("ETag")
	if page.status != 200 || page.header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(weak, `W/"`) {
		t.Fatalf("GET the list with Accept-Encoding gzip: %d, Content-Encoding %q, ETag %q", page.status, page.header.Get("Content-Encoding"), weak)
	}
	if r := call(t, "GET", list, "", "Accept-Encoding", "gzip", "If-None-Match", weak); r.status != 304 || len(r.body) != 0 {
		t.Fatalf("GET the list with the compressed answer's tag: %d with %d bytes, want 304", r.status, len(r.body))
	}

	if r := call(t, "PATCH", product, `{"price":{"amount":5999,"currency":"EUR"}}`, admin...); r.status != 200 {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", product, "", "If-None-Match", etag); r.status != 200 || r.header.Get("ETag") == etag {
		t.Fatalf("GET with the old tag after a change: %d, ETag %q; want 200 and a new tag", r.status, r.header.Get("ETag"))
	}
}

// TestServicePortsVerifyCallers tries, straight at each service's port,
// what the gateway would refuse: identity headers, forged or misdirected
// proofs, a forwarded address. Each gets 401; probes and scrapes are
// answered.
func TestServicePortsVerifyCallers(t *testing.T) {
	sys := startSystem(t, t.TempDir(), io.Discard, nil)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	admin := bearer(login(t, gw, adminEmail, adminPassword))
	adaID, _ := register(t, gw, "Ada", "ada@example.com")
	product := call(t, "POST", gw+"/api/products", `{"name":"Lamp","price":{"amount":100,"currency":"EUR"}}`, admin...).json(t)["id"].(string)

	// A key no one published, signing as the gateway, and a real proof of
	// the gateway's meant for another service (as a service that saw one
	// could replay it).
	stranger, _ := auth.NewProver(auth.GatewayIdentity)
	forged, _ := stranger.Prove("users", auth.Identity{UserID: adaID, Role: auth.RoleAdmin, Method: "jwt"}, "")
	echo := newEcho(t, nil)
	serveAs(t, registry(t, sys), gw, "echo", echo, "/api/echo/x")
	call(t, "GET", gw+"/api/echo/x", "", admin...)
	got, _ := echo.request()
	misdirected := got.Header.Get(auth.HeaderProof)
	if misdirected == "" {
		t.Fatal("the gateway sent echo no proof")
	}
	spoof := []string{"X-Souk-User-Id", adaID, "X-Souk-Role", "admin", "X-Souk-Auth", "jwt"}
	for _, c := range []struct {
		name, service, method, path, body string
		headers                           []string
	}{
		{"list users as a made-up admin", "users", "GET", "/users", "", spoof},
		{"promote a user", "users", "PATCH", "/users/" + adaID, `{"role":"admin"}`, spoof},
		{"mint an API key as another", "users", "POST", "/auth/keys", `{"name":"mine"}`, spoof},
		{"dodge the login limit with X-Forwarded-For", "users", "POST", "/auth/login", `{"email":"ada@example.com","password":"wrong wrong wrong"}`, []string{"X-Forwarded-For", "203.0.113.9"}},
		{"change a price", "catalog", "PATCH", "/products/" + product, `{"price":{"amount":1,"currency":"EUR"}}`, spoof},
		{"set stock", "inventory", "PUT", "/inventory/" + product, `{"available":0}`, spoof},
		{"read a payment", "payments", "GET", "/payments/" + product, "", spoof},
		{"order in another's name", "orders", "POST", "/orders", `{"items":[{"product_id":"` + product + `","quantity":1}],"payment_method":"pm_aaaaaaaaaaaaaaaaaaaaaaaaaa"}`, append(spoof, "Idempotency-Key", "k1")},
		{"read another's payment methods", "payments", "GET", "/payment-methods", "", spoof},
		{"add a card in another's name", "payments", "POST", "/payment-methods", `{"card":"4242424242424242"}`, spoof},
		{"a read with no proof at all", "catalog", "GET", "/products", "", nil},
		{"a proof signed by an unknown key", "users", "GET", "/users", "", []string{auth.HeaderProof, forged}},
		{"the gateway's proof for another service", "users", "GET", "/users", "", []string{auth.HeaderProof, misdirected}},
		{"the traces", "catalog", "GET", "/debug/traces", "", nil},
	} {
		r := call(t, c.method, sys.URLs[c.service]+c.path, c.body, c.headers...)
		if r.status != 401 {
			t.Errorf("%s on %s's port: %d %s, want 401", c.name, c.service, r.status, r.body)
		}
	}
	for _, name := range ServiceNames() {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if r := call(t, "GET", sys.URLs[name]+path, ""); r.status != 200 {
				t.Errorf("GET %s on %s's port: %d, want it open to probes and scrapes", path, name, r.status)
			}
		}
	}
	// The public port serves no metrics and no traces: the operations
	// port does.
	for _, path := range []string{"/metrics", "/debug/traces"} {
		if r := call(t, "GET", gw+path, ""); r.status != 404 {
			t.Errorf("GET %s on the gateway's public port: %d, want 404", path, r.status)
		}
		if r := call(t, "GET", sys.URLs[GatewayOpsName]+path, ""); r.status != 200 {
			t.Errorf("GET %s on the gateway's operations port: %d, want 200", path, r.status)
		}
	}
	// And through the gateway, the same calls carry a proof and work.
	if r := call(t, "GET", gw+"/api/users", "", admin...); r.status != 200 {
		t.Fatalf("GET /api/users as the admin: %d %s", r.status, r.body)
	}
}
