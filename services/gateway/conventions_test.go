package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/souk-shop/souk/platform/auth"
)

// TestChallenge checks the WWW-Authenticate header of refusals (RFC 6750,
// 3): the scheme alone without a credential, an error code with a wrong
// one, insufficient_scope for a missing role.
func TestChallenge(t *testing.T) {
	fx := newFixture(t)
	unknownKey, _, _ := auth.NewAPIKey()
	for _, c := range []struct {
		name, method, path, authorization string
		status                            int
		challenge                         string
	}{
		{"no credential", "GET", benchUser, "", 401, `Bearer realm="souk"`},
		{"a malformed header", "GET", benchUser, "Basic dTpw", 401, `Bearer realm="souk", error="invalid_request"`},
		{"a forged token", "GET", benchUser, "Bearer eyJhbGciOiJub25lIn0.e30.", 401, `Bearer realm="souk", error="invalid_token"`},
		{"an unknown API key", "GET", benchUser, "Bearer " + unknownKey, 401, `Bearer realm="souk", error="invalid_token"`},
		{"a customer on an admin route", "GET", "/api/catalog/stats", "Bearer " + fx.token, 403, `Bearer realm="souk", error="insufficient_scope"`},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.authorization != "" {
			r.Header.Set("Authorization", c.authorization)
		}
		w := httptest.NewRecorder()
		fx.router.ServeHTTP(w, r)
		got := w.Header().Get("WWW-Authenticate")
		if w.Code != c.status || !strings.HasPrefix(got, c.challenge) || strings.Contains(strings.TrimPrefix(got, c.challenge), `error="`) {
			t.Errorf("%s: %d with WWW-Authenticate %q; want %d with %s", c.name, w.Code, got, c.status, c.challenge)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
}

// TestCORS checks that a preflight allows exactly what the real request's
// answer allows, and that a default CORS setting opens every route.
func TestCORS(t *testing.T) {
	preflight := func(fx *fixture, path, method, origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("OPTIONS", path, nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", method)
		w := httptest.NewRecorder()
		fx.router.ServeHTTP(w, r)
		return w
	}
	real := func(fx *fixture, path, method, origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Authorization", "Bearer "+fx.apiKey) // an admin
		w := httptest.NewRecorder()
		fx.router.ServeHTTP(w, r)
		return w
	}
	fx := newFixture(t)
	for _, c := range []struct {
		path, method string
		allowed      bool
	}{
		{"/api/products", "GET", true},     // the built-in config opens catalog reads to any origin
		{"/api/products", "POST", false},   // but not writes
		{productPath, "GET", true},         //
		{productPath, "DELETE", false},     //
		{"/api/orders", "POST", false},     // nor anything else
		{"/api/auth/login", "POST", false}, //
	} {
		pf := preflight(fx, c.path, c.method, "https://shop.example")
		rl := real(fx, c.path, c.method, "https://shop.example")
		pfAllows := pf.Code == 204 && pf.Header().Get("Access-Control-Allow-Origin") != "" &&
			strings.Contains(pf.Header().Get("Access-Control-Allow-Methods"), c.method)
		realAllows := rl.Header().Get("Access-Control-Allow-Origin") != ""
		if pfAllows != c.allowed || realAllows != c.allowed {
			t.Errorf("%s %s from another origin: preflight %d allows %v (%v), the answer allows %v; want %v",
				c.method, c.path, pf.Code, pfAllows, pf.Header(), realAllows, c.allowed)
		}
		if strings.Contains(pf.Header().Get("Access-Control-Allow-Methods"), "POST") && c.path == "/api/products" {
			t.Errorf("the preflight of %s %s allows POST, whose answer a browser may not read", c.method, c.path)
		}
	}

	// A storefront on its own origin, allowed by config to sign in and order.
	cfg := DefaultConfig()
	cfg.Defaults.CORS = &CORS{Origins: []string{"https://shop.example"}}
	fx = newFixtureConfig(t, cfg)
	for _, c := range []struct{ path, method, origin string }{
		{"/api/auth/login", "POST", "https://shop.example"},
		{"/api/orders", "POST", "https://shop.example"},
		{"/api/products", "GET", "https://evil.example"}, // its own CORS: any origin
	} {
		pf := preflight(fx, c.path, c.method, c.origin)
		if pf.Code != 204 || pf.Header().Get("Access-Control-Allow-Origin") == "" ||
			!strings.Contains(pf.Header().Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
			t.Errorf("%s %s from %s: preflight %d %v", c.method, c.path, c.origin, pf.Code, pf.Header())
		}
	}
	if pf := preflight(fx, "/api/orders", "POST", "https://evil.example"); pf.Code != 403 || pf.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST /api/orders from an origin not listed: preflight %d %v", pf.Code, pf.Header())
	}
}

// TestCompression checks which answers the gateway compresses, that they
// decompress to the service's body, and that 304s pass as they are.
func TestCompression(t *testing.T) {
	fx := newFixture(t)
	big := `{"items":[` + strings.Repeat(`{"name":"Brass Lamp","price":{"amount":4999,"currency":"EUR"}},`, 40) + `{}]}`
	var status int
	var body, contentType string
	length := int64(-2) // the body's length; -1 for unknown
	fx.upstream.respond = func(req *http.Request) (*http.Response, error) {
		h := http.Header{"Content-Type": {contentType}, "Etag": {`"abc"`}}
		n := length
		if n == -2 {
			n = int64(len(body))
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: n, Request: req}, nil
	}
	for _, c := range []struct {
		name           string
		status         int
		contentType    string
		body           string
		length         int64
		acceptEncoding string
		coding         string
	}{
		{"JSON, zstd accepted", 200, "application/json", big, -2, "gzip, deflate, br, zstd", "zstd"},
		{"JSON, gzip accepted", 200, "application/json", big, -2, "gzip", "gzip"},
		{"JSON of unknown length", 200, "application/json", big, -1, "gzip", "gzip"},
		{"a problem", 400, "application/problem+json", big, -2, "gzip", "gzip"},
		{"zstd refused", 200, "application/json", big, -2, "zstd;q=0, gzip;q=0.5", "gzip"},
		{"any coding", 200, "application/json", big, -2, "*", "zstd"},
		{"nothing accepted", 200, "application/json", big, -2, "", ""},
		{"identity only", 200, "application/json", big, -2, "identity, *;q=0", ""},
		{"a small answer", 200, "application/json", `{"id":1}`, -2, "gzip", ""},
		{"not JSON", 200, "text/event-stream", big, -1, "gzip", ""},
		{"not modified", 304, "application/json", "", -2, "gzip", ""},
	} {
		status, contentType, body, length = c.status, c.contentType, c.body, c.length
		r := httptest.NewRequest("GET", "/api/products", nil)
		if c.acceptEncoding != "" {
			r.Header.Set("Accept-Encoding", c.acceptEncoding)
		}
		w := httptest.NewRecorder()
		fx.router.ServeHTTP(w, r)
		h := w.Header()
		if w.Code != c.status || h.Get("Content-Encoding") != c.coding {
			t.Errorf("%s: %d, Content-Encoding %q; want %d, %q", c.name, w.Code, h.Get("Content-Encoding"), c.status, c.coding)
			continue
		}
		got := w.Body.Bytes()
		switch c.coding {
		case "gzip":
			zr, err := gzip.NewReader(bytes.NewReader(got))
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got, _ = io.ReadAll(zr)
		case "zstd":
			zr, _ := zstd.NewReader(nil)
			var err error
			if got, err = zr.DecodeAll(got, nil); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		if string(got) != c.body {
			t.Errorf("%s: the client got %d bytes that are not the service's %d", c.name, len(got), len(c.body))
		}
		if c.coding != "" {
			if h.Get("ETag") != `W/"abc"` || h.Get("Content-Length") != "" || len(w.Body.Bytes()) >= len(c.body)/2 {
				t.Errorf("%s: ETag %q, Content-Length %q, %d bytes for %d", c.name, h.Get("ETag"), h.Get("Content-Length"), w.Body.Len(), len(c.body))
			}
		} else if h.Get("ETag") != `"abc"` {
			t.Errorf("%s: the service's tag changed to %q", c.name, h.Get("ETag"))
		}
		if varies := strings.Contains(strings.Join(h.Values("Vary"), ","), "Accept-Encoding"); varies != (c.body == big && c.contentType != "text/event-stream" && c.status != 304) {
			t.Errorf("%s: Vary %q", c.name, h.Values("Vary"))
		}
	}
}

func TestAccepted(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "gzip": "gzip", "zstd": "zstd", "gzip, zstd": "zstd", "br": "", "GZIP;Q=1": "gzip",
		"zstd;q=0, *": "gzip", "*;q=0": "", "gzip;q=0.001": "gzip", "deflate, gzip;q=0": "", "*": "zstd",
	} {
		if got := accepted([]string{in}); got != want {
			t.Errorf("Accept-Encoding %q: %q, want %q", in, got, want)
		}
	}
}
