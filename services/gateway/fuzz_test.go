package gateway

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
)

// fixture is a gateway over the built-in configuration whose upstream is a
// recorder, and an authenticator with one signing key and one API key.
type fixture struct {
	gw       *Gateway
	router   *server.Router
	authn    *Authenticator
	upstream *recorder
	token    string // valid, for user u1, customer
	apiKey   string // valid, for user u2, admin
	keys     *auth.KeySet
}

// caller is who the proof of a request that reached a service says sent
// it, as the service would verify it.
func (fx *fixture) caller(t testing.TB, up *http.Request) auth.Caller {
	t.Helper()
	c, err := auth.NewVerifier(up.URL.Host, fx.keys).Verify(up)
	if err != nil {
		t.Fatalf("the request to %s carries no valid proof: %v", up.URL, err)
	}
	return c
}

// recorder keeps the requests that reach it and answers them with
// respond, or 200 with no body if respond is nil.
type recorder struct {
	mu      sync.Mutex
	reqs    []*http.Request
	respond func(*http.Request) (*http.Response, error)
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	respond := r.respond
	r.mu.Unlock()
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	if respond != nil {
		return respond(req)
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func (r *recorder) take() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.reqs
	r.reqs = nil
	return got
}

func newFixture(t testing.TB) *fixture { return newFixtureLimited(t, false, nil) }

// newFixtureLimited is newFixture, with rate limits that never trigger if
// limits, and traced with tp if it is not nil.
func newFixtureLimited(t testing.TB, limits bool, tp trace.TracerProvider) *fixture {
	cfg := DefaultConfig()
	if !limits {
		cfg = cfg.WithoutRateLimits()
	} else {
		huge := &Limit{RPS: 1e9, Burst: 1e9}
		cfg.Defaults.RateLimit = RateLimits{Address: huge, User: huge, Key: huge}
	}
	return newFixtureTraced(t, cfg, tp)
}

// newFixtureConfig is a fixture of the gateway configured with cfg.
func newFixtureConfig(t testing.TB, cfg Config) *fixture { return newFixtureTraced(t, cfg, nil) }

func newFixtureTraced(t testing.TB, cfg Config, tp trace.TracerProvider) *fixture {
	pub, priv, _ := ed25519.GenerateKey(nil)
	key := auth.SigningKey{ID: "k1", Private: priv}
	token, err := key.Sign("u1", auth.RoleCustomer, "01900000-0000-7000-8000-000000000001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	apiKey, prefix, hash := auth.NewAPIKey()
	a := &Authenticator{
		keyfunc: func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] == key.ID {
				return pub, nil
			}
			return nil, errors.New("unknown kid")
		},
		parser:  auth.Parser(),
		tokens:  tokenCache{entries: map[string]cachedToken{}},
		keys:    apiKeys{entries: map[string]auth.APIKeyEntry{prefix: {Prefix: prefix, SecretHash: hash, UserID: "u2", Role: auth.RoleAdmin}}},
		revoked: auth.NewRevocations(),
		fails:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"}),
	}
	log := slog.New(slog.DiscardHandler)
	rec := &recorder{}
	rt := server.NewRouter(log, telemetry.NewHTTPMetrics(prometheus.NewRegistry()))
	prover, err := auth.NewProver(auth.GatewayIdentity)
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewKeySet(nil)
	keys.Put(prover.KeyID(), prover.PublicKey())
	g := New(cfg, a, NewRateLimiter(t.Context(), func() int { return 1 }), rec, prover, prometheus.NewRegistry(), log)
	if tp != nil {
		rt.Trace(tp, false)
		g.Trace(tp)
	}
	g.Routes(rt)
	return &fixture{gw: g, router: rt, authn: a, upstream: rec, token: token, apiKey: apiKey, keys: keys}
}

// FuzzRouting sends arbitrary request lines through the gateway and checks
// that whatever reaches a service went to the service the configuration
// names for that path, on a clean path under it, with no identity the
// request did not prove.
func FuzzRouting(f *testing.F) {
	for _, seed := range []string{
		"GET /api/products", "GET /api/products/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "GET /api/users/../products",
		"GET /api/products/..%2f..%2fusers", "GET //api/products", "POST /api/auth/login", "GET /.well-known/jwks.json",
		"GET /api/products/%2e%2e/x", "DELETE /api/products/1?x=/../", "GET /api/catalog/stats", "TRACE /api/products",
		"GET /api/products/./1", "GET /API/products", "GET /api/products/a%00b",
	} {
		f.Add(seed, "")
	}
	fx := newFixture(f)
	routes := DefaultConfig().Routes
	f.Fuzz(func(t *testing.T, line, identity string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line + " HTTP/1.1\r\nHost: souk\r\nX-Souk-User-Id: " + sanitize(identity) + "\r\n\r\n")))
		if err != nil {
			return
		}
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		fx.router.ServeHTTP(rec, req)
		for _, up := range fx.upstream.take() {
			if id := fx.caller(t, up).UserID; id != "" {
				t.Fatalf("%q: an anonymous request reached %s as user %q", line, up.URL, id)
			}
			p := up.URL.Path
			if strings.Contains("/"+p+"/", "/../") || strings.Contains("/"+p+"/", "/./") || strings.Contains(p, "//") {
				t.Fatalf("%q: forwarded the unclean path %q", line, p)
			}
			if !routedTo(routes, req.Method, req.URL.Path, up.URL.Host, p) {
				t.Fatalf("%q: forwarded to %s%s, which no route allows", line, up.URL.Host, p)
			}
		}
	})
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}

// routedTo reports whether some route sends method and public path to
// service, as upstreamPath.
func routedTo(routes []Route, method, public, service, upstreamPath string) bool {
	for _, r := range routes {
		strip := "/api"
		if r.StripPrefix != nil {
			strip = *r.StripPrefix
		}
		if r.Service != service || !slices.Contains(r.Methods, method) && method != http.MethodHead {
			continue
		}
		if strings.TrimPrefix(public, strip) != upstreamPath || !strings.HasPrefix(public, strip) {
			continue
		}
		if matches(r.Path, public) {
			return true
		}
	}
	return false
}

// matches reports whether path fits a ServeMux pattern made of literal
// segments and {wildcards}.
func matches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], "{") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// FuzzAuthorization sends arbitrary Authorization headers and checks that
// none proves an identity except the real token and API key.
func FuzzAuthorization(f *testing.F) {
	fx := newFixture(f)
	parts := strings.Split(fx.token, ".")
	for _, seed := range []string{
		"Bearer " + fx.token, "bearer " + fx.token, "Bearer " + fx.apiKey, "Bearer", "Bearer ", "Basic abc",
		"Bearer " + parts[0] + "." + parts[1] + ".", "Bearer " + parts[0] + "..", "Bearer eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"Bearer souk_00000000_" + strings.Repeat("A", 43), "Bearer " + fx.token + "x", "Bearer " + strings.ToUpper(fx.token),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		id, err := fx.authn.Authenticate(r)
		if err != nil || id.Anonymous() {
			return
		}
		scheme, cred, _ := strings.Cut(header, " ")
		cred = strings.TrimSpace(cred)
		if !strings.EqualFold(scheme, "Bearer") || (cred != fx.token && cred != fx.apiKey) {
			t.Fatalf("%q proved identity %+v", header, id)
		}
	})
}

// TestFixtureRoutes checks the fixture itself: the real credentials work,
// so that the fuzz targets test something.
func TestFixtureRoutes(t *testing.T) {
	fx := newFixture(t)
	for _, c := range []struct {
		cred, path string
		status     int
		user       string
	}{
		{"Bearer " + fx.token, "/api/users/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", 200, "u1"},
		{"Bearer " + fx.apiKey, "/api/catalog/stats", 200, "u2"},
		{"", "/api/products", 200, ""},
		{"", "/api/users/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", 401, ""},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		if c.cred != "" {
			r.Header.Set("Authorization", c.cred)
		}
		rec := httptest.NewRecorder()
		fx.router.ServeHTTP(rec, r)
		ups := fx.upstream.take()
		if rec.Code != c.status {
			t.Fatalf("%s with %.20q: %d", c.path, c.cred, rec.Code)
		}
		if c.status == 200 && (len(ups) != 1 || fx.caller(t, ups[0]).UserID != c.user) {
			t.Fatalf("%s: upstream requests %v", c.path, ups)
		}
	}
}
