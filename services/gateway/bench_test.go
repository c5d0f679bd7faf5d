package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHandler measures the gateway's own work per request (routing,
// authentication, rate limits, the proxy's rewriting, metrics), with an
// upstream that answers in memory. The network is measured by bench/gateway.
func BenchmarkHandler(b *testing.B) {
	fx := newFixture(b)
	limited := newFixtureLimited(b, true)
	for _, c := range []struct {
		name, path, auth string
		fx               *fixture
	}{
		{"public", "/api/products/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "", fx},
		{"jwt", "/api/users/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "Bearer " + fx.token, fx},
		{"jwt+limits", "/api/users/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "Bearer " + limited.token, limited},
	} {
		fx := c.fx
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, c.path, nil)
				r.RemoteAddr = "192.0.2.1:1234"
				if c.auth != "" {
					r.Header.Set("Authorization", c.auth)
				}
				w := httptest.NewRecorder()
				fx.router.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
				fx.upstream.take()
			}
		})
	}
}
