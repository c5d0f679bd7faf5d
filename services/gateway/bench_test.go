package gateway

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/telemetry"
)

const benchUser = "/api/users/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d"

// BenchmarkHandler measures the gateway's own work per request (routing,
// authentication, rate limits, the proxy's rewriting, metrics), with an
// upstream that answers in memory. The network is measured by bench/gateway.
func BenchmarkHandler(b *testing.B) {
	fx := newFixture(b)
	limited := newFixtureLimited(b, true, nil)
	// A revocation list as a busy shop's might hold in the five minutes
	// its entries matter: 10,000 ended sessions, 1,000 users whose
	// sessions ended, none of them the caller's.
	revoked := newFixture(b)
	now := time.Now()
	for i := range 10_000 {
		v, _ := json.Marshal(auth.Revocation{At: now})
		revoked.authn.revoked.Put(auth.SessionRevocationKey(fmt.Sprintf("01900000-0000-7000-8000-%012d", i+2)), v)
		if i < 1000 {
			v, _ = json.Marshal(auth.Revocation{At: now, SessionsBefore: "01900000-0000-7000-8000-999999999999"})
			revoked.authn.revoked.Put(auth.UserRevocationKey(fmt.Sprintf("user-%d", i)), v)
		}
	}
	for _, c := range []struct {
		name, path, auth string
		fx               *fixture
	}{
		{"public", "/api/products/0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "", fx},
		{"jwt", benchUser, "Bearer " + fx.token, fx},
		{"jwt+revocations", benchUser, "Bearer " + revoked.token, revoked},
		{"jwt+limits", benchUser, "Bearer " + limited.token, limited},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveOne(b, c.fx, c.path, c.auth)
			}
		})
	}
}

// BenchmarkTracing measures what tracing adds to the gateway's full path
// (a token, rate limits, metrics) at sampling ratios 0 (tracing off), 1%
// and 100%, with spans kept in memory as in souk up.
func BenchmarkTracing(b *testing.B) {
	for _, ratio := range []float64{0, 0.01, 1} {
		b.Run(fmt.Sprintf("sample=%g", ratio), func(b *testing.B) {
			tr, err := telemetry.NewTracing(b.Context(), telemetry.TracingConfig{SampleRatio: ratio})
			if err != nil {
				b.Fatal(err)
			}
			fx := newFixtureLimited(b, true, tr.Provider(Name))
			b.ReportAllocs()
			for b.Loop() {
				// Tracing on, sampled or not, passes a traceparent on.
				if tp := serveOne(b, fx, benchUser, "Bearer "+fx.token).Header.Get("Traceparent"); (ratio > 0) != (tp != "") {
					b.Fatalf("sampling %g: traceparent %q", ratio, tp)
				}
			}
		})
	}
}

// serveOne sends one GET through fx and returns what reached the upstream.
func serveOne(b *testing.B, fx *fixture, path, auth string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = "192.0.2.1:1234"
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	fx.router.ServeHTTP(w, r)
	if w.Code != 200 {
		b.Fatalf("status %d", w.Code)
	}
	got := fx.upstream.take()
	if len(got) != 1 {
		b.Fatalf("%d requests reached the upstream, want 1", len(got))
	}
	return got[0]
}

// BenchmarkCompression measures what compressing a JSON answer costs the
// gateway, per request, against passing it as it is: a page of products
// of 1.5 KiB (just over the threshold) and of 15 KiB.
func BenchmarkCompression(b *testing.B) {
	fx := newFixture(b)
	for _, items := range []int{8, 80} {
		// Products as catalog lists them: distinct ids, names and prices.
		var sb strings.Builder
		for i := range items {
			sum := sha256.Sum256([]byte{byte(i)})
			fmt.Fprintf(&sb, `{"id":"%x-%x-7%x","name":"Lamp no. %d","description":"brass, %d cm","price":{"amount":%d,"currency":"EUR"},"created_at":"2026-11-26T14:%02d:05.%06dZ"},`,
				sum[:4], sum[4:6], sum[6:12], i, 20+i%30, 999+i*37, i%60, int(sum[13])*3907)
		}
		body := `{"items":[` + strings.TrimSuffix(sb.String(), ",") + `]}`
		fx.upstream.respond = func(req *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
		}
		for _, coding := range []string{"identity", "gzip", "zstd"} {
			b.Run(fmt.Sprintf("%dB/%s", len(body), coding), func(b *testing.B) {
				b.ReportAllocs()
				var sent int
				for b.Loop() {
					r := httptest.NewRequest(http.MethodGet, "/api/products", nil)
					r.Header.Set("Accept-Encoding", coding)
					w := httptest.NewRecorder()
					fx.router.ServeHTTP(w, r)
					if w.Code != 200 || (coding != "identity") != (w.Header().Get("Content-Encoding") == coding) {
						b.Fatalf("%d %v", w.Code, w.Header())
					}
					sent = w.Body.Len()
					fx.upstream.take()
				}
				b.ReportMetric(float64(sent), "bytes/answer")
			})
		}
	}
}
