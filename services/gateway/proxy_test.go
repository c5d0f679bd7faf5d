package gateway

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/auth"
)

const productPath = "/api/products/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d"

// TestForwardRequest checks what of a client's request reaches a service:
// no hop-by-hop header, none that Connection names, no credential, no
// identity, forwarding or trace header of the client's own.
func TestForwardRequest(t *testing.T) {
	fx := newFixture(t)
	r := httptest.NewRequest("GET", benchUser+"?q=a%20b", nil)
	r.RemoteAddr = "192.0.2.7:4321"
	r.Close = true
	for k, v := range map[string]string{
		"Authorization":     "Bearer " + fx.token,
		"Connection":        "close, X-Private",
		"X-Private":         "for the gateway only",
		"Keep-Alive":        "timeout=5",
		"Te":                "trailers",
		"Upgrade":           "h2c",
		"Http2-Settings":    "AAMAAABkAAQAoAAAAAIAAAAA",
		"Proxy-Connection":  "keep-alive",
		"Forwarded":         "for=203.0.113.1",
		"X-Forwarded-For":   "203.0.113.1",
		"X-Forwarded-Host":  "evil.example",
		"X-Forwarded-Proto": "https",
		"Traceparent":       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"X-Souk-Timeout-Ms": "999999",
		"Accept":            "application/json",
	} {
		r.Header.Set(k, v)
	}
	r.Header["x-souk-role"] = []string{"admin"} // not canonical: as a client may send it over HTTP/2 or raw
	w := httptest.NewRecorder()
	fx.router.ServeHTTP(w, r)
	ups := fx.upstream.take()
	if len(ups) != 1 {
		t.Fatalf("%d requests reached the service", len(ups))
	}
	up := ups[0]
	if up.URL.String() != "http://users/users/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d?q=a%20b" || up.Host != "" || up.Close {
		t.Errorf("sent to %s, Host %q, Close %v", up.URL, up.Host, up.Close)
	}
	want := map[string]string{
		"Accept":            "application/json",
		"X-Forwarded-For":   "192.0.2.7",
		"X-Forwarded-Host":  "example.com",
		"X-Forwarded-Proto": "http",
	}
	for k, v := range want {
		if got := up.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// Who sent it, the service learns from the gateway's proof alone.
	if c := fx.caller(t, up); c != (auth.Caller{Sender: auth.GatewayIdentity, Identity: auth.Identity{UserID: "u1", Role: auth.RoleCustomer, Method: "jwt"}, Addr: "192.0.2.7"}) {
		t.Errorf("the proof says %+v", c)
	}
	for _, k := range []string{"Authorization", "Connection", "X-Private", "Keep-Alive", "Te", "Upgrade", "Http2-Settings",
		"Proxy-Connection", "Forwarded", "x-souk-role"} {
		if v, ok := up.Header[k]; ok {
			t.Errorf("%s reached the service: %q", k, v)
		}
	}
	if got, gw := up.Header.Values("X-Request-Id"), w.Header().Get("X-Request-Id"); len(got) != 1 || got[0] != gw {
		t.Errorf("X-Request-Id %q, want the gateway's, %q", got, gw)
	}
	if got := up.Header.Get("X-Souk-Timeout-Ms"); got == "" || got == "999999" {
		t.Errorf("X-Souk-Timeout-Ms %q, want the route's", got)
	}
	if got := up.Header.Get("Traceparent"); strings.Contains(got, "0af7651916cd43dd8448eb211c80319c") {
		t.Errorf("the client's trace context reached the service: %q", got)
	}
}

// TestForwardResponse checks what of a service's answer reaches the
// client: its status, headers and body, less hop-by-hop headers, with the
// gateway's request id and a Location that points through the gateway.
func TestForwardResponse(t *testing.T) {
	fx := newFixture(t)
	fx.upstream.respond = func(req *http.Request) (*http.Response, error) {
		h := http.Header{}
		for k, v := range map[string]string{
			"Connection": "X-Secret, X-Request-Id", "X-Secret": "s", "Keep-Alive": "timeout=5", "Trailer": "X-Sum",
			"Upgrade": "h2c", "Location": "/products/9", "X-Request-Id": "the service's", "Content-Type": "application/json",
		} {
			h.Set(k, v)
		}
		h["Vary"] = []string{"Accept"}
		return &http.Response{StatusCode: 201, Header: h, Body: io.NopCloser(strings.NewReader(`{"id":9}`)), ContentLength: 8, Request: req}, nil
	}
	r := httptest.NewRequest("GET", productPath, nil)
	r.Header.Set("Origin", "https://shop.example")
	w := httptest.NewRecorder()
	fx.router.ServeHTTP(w, r)
	h := w.Result().Header
	if w.Code != 201 || w.Body.String() != `{"id":9}` {
		t.Fatalf("got %d %q", w.Code, w.Body)
	}
	if got := h.Get("Location"); got != "/api/products/9" {
		t.Errorf("Location %q", got)
	}
	if got := h.Values("X-Request-Id"); len(got) != 1 || got[0] == "the service's" {
		t.Errorf("X-Request-Id %q, want the gateway's alone", got)
	}
	if got := h.Values("Vary"); strings.Join(got, ",") != "Origin,Accept" {
		t.Errorf("Vary %q, want the gateway's and the service's", got)
	}
	if h.Get("Content-Type") != "application/json" || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("headers %v", h)
	}
	for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Trailer", "Upgrade"} {
		if v, ok := h[k]; ok {
			t.Errorf("%s reached the client: %q", k, v)
		}
	}
}

// TestForwardBody checks that a body of unknown length reaches the client
// as it comes, that one that breaks off breaks off the client's response,
// and that a service switching protocols gets 502.
func TestForwardBody(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(fx.router)
	defer srv.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	var body io.ReadCloser
	status := 200
	fx.upstream.respond = func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: body, ContentLength: -1, Request: req}, nil
	}
	client := &http.Client{Timeout: 5 * time.Second}

	t.Run("streamed", func(t *testing.T) {
		body = pr
		resp, err := client.Get(srv.URL + productPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lines := bufio.NewReader(resp.Body)
		for _, event := range []string{"data: one\n", "data: two\n"} {
			// The second is written only after the first has arrived.
			if _, err := io.WriteString(pw, event); err != nil {
				t.Fatal(err)
			}
			if got, err := lines.ReadString('\n'); got != event {
				t.Fatalf("read %q, %v; want %q", got, err, event)
			}
		}
	})
	t.Run("broken off", func(t *testing.T) {
		body = io.NopCloser(io.MultiReader(strings.NewReader("half"), errReader{errors.New("connection reset by peer")}))
		resp, err := client.Get(srv.URL + productPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read %q, %v; want the response cut short", got, err)
		}
	})
	t.Run("switching protocols", func(t *testing.T) {
		body, status = http.NoBody, http.StatusSwitchingProtocols
		resp, err := client.Get(srv.URL + productPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", resp.StatusCode)
		}
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestHost checks that a hosted service's routes are served in the
// gateway, past the same edge: the policy holds, the handler sees the
// path without the prefix and the verified caller, and nothing is
// forwarded.
func TestHost(t *testing.T) {
	cfg := DefaultConfig().WithoutRateLimits()
	cfg.Routes = append(cfg.Routes, Route{Path: "/api/admin/ping", Methods: []string{"GET"}, Service: "console", Policy: Admin})
	fx := newFixtureConfig(t, cfg)
	var got []string
	fx.gw.Host("console", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := auth.FromRequest(r)
		got = append(got, r.URL.Path+" "+id.UserID+" "+id.Role+" "+auth.CallerOf(r).Sender)
		w.WriteHeader(http.StatusNoContent)
	}))
	send := func(header, value string) int {
		r := httptest.NewRequest("GET", "/api/admin/ping", nil)
		r.Header.Set(header, value)
		w := httptest.NewRecorder()
		fx.router.ServeHTTP(w, r)
		return w.Code
	}
	if code := send("Authorization", "Bearer "+fx.token); code != http.StatusForbidden {
		t.Errorf("a customer: %d, want 403", code)
	}
	if code := send("X-Api-Key", fx.apiKey); code != http.StatusNoContent {
		t.Errorf("an admin's key: %d, want 204", code)
	}
	if len(got) != 1 || got[0] != "/admin/ping u2 admin "+auth.GatewayIdentity {
		t.Errorf("the hosted handler saw %q", got)
	}
	if ups := fx.upstream.take(); len(ups) != 0 {
		t.Errorf("%d requests were forwarded", len(ups))
	}
}
