package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/souk-shop/souk/platform/localca"
	"github.com/souk-shop/souk/platform/server"
)

// serveTLS serves fx's router over HTTPS with a local CA's certificate,
// and returns its URL and an HTTP/2 client that trusts the CA.
func serveTLS(t *testing.T, fx *fixture) (string, *http.Client) {
	t.Helper()
	files, _, err := localca.Ensure(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	certs, err := server.LoadCertFiles(files.Cert, files.Key, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.ListenTLS("127.0.0.1:0", fx.router, log, server.DefaultConfig(), server.TLS{GetCertificate: certs.GetCertificate, HSTSMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ca, err := os.ReadFile(files.CACert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL(), &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestHTTP2 runs the gateway's forwarding over HTTP/2: what reaches the
// service (the client's address, https as the protocol), streams, bodies
// that break off, compression, and rate limits by address, all on one
// multiplexed connection.
func TestHTTP2(t *testing.T) {
	cfg := DefaultConfig().WithoutRateLimits()
	cfg.Defaults.RateLimit = RateLimits{Address: &Limit{RPS: 0.001, Burst: 3}}
	fx := newFixtureConfig(t, cfg)
	url, client := serveTLS(t, fx)
	get := func(path string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", url+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
		}
		return resp
	}

	t.Run("forwarded", func(t *testing.T) {
		resp := get(benchUser, "Authorization", "Bearer "+fx.token, "X-Forwarded-Proto", "http")
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "max-age=3600" {
			t.Fatalf("status %d, Strict-Transport-Security %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
		}
		ups := fx.upstream.take()
		if len(ups) != 1 {
			t.Fatalf("%d requests reached the service", len(ups))
		}
		up := ups[0]
		if up.Header.Get("X-Forwarded-Proto") != "https" || up.Header.Get("X-Forwarded-For") != "127.0.0.1" || !strings.HasPrefix(up.Header.Get("X-Forwarded-Host"), "127.0.0.1:") {
			t.Errorf("X-Forwarded-Proto %q, -For %q, -Host %q", up.Header.Get("X-Forwarded-Proto"), up.Header.Get("X-Forwarded-For"), up.Header.Get("X-Forwarded-Host"))
		}
		if c := fx.caller(t, up); c.Addr != "127.0.0.1" || c.UserID != "u1" {
			t.Errorf("the proof says %+v", c)
		}
	})

	t.Run("rate limited by address", func(t *testing.T) {
		// Requests on one multiplexed connection draw from the client's
		// address's bucket of 3 for the route, then are refused.
		for _, want := range []string{`"address";r=2`, `"address";r=1`, `"address";r=0`} {
			resp := get(productPath)
			resp.Body.Close()
			if got := resp.Header.Get("RateLimit"); resp.StatusCode != 200 || !strings.HasPrefix(got, want) {
				t.Fatalf("status %d, RateLimit %q; want 200, %s", resp.StatusCode, got, want)
			}
		}
		resp := get(productPath)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d, Retry-After %q; want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
}

// TestHTTP2Bodies checks streams, broken-off bodies and compression over
// HTTP/2.
func TestHTTP2Bodies(t *testing.T) {
	fx := newFixture(t)
	url, client := serveTLS(t, fx)
	var body io.ReadCloser
	var header http.Header
	length := int64(-1)
	fx.upstream.respond = func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: header, Body: body, ContentLength: length, Request: req}, nil
	}

	t.Run("streamed", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		body, header, length = pr, http.Header{"Content-Type": {"text/event-stream"}}, -1
		resp, err := client.Get(url + productPath)
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
		body, header, length = io.NopCloser(io.MultiReader(strings.NewReader("half"), errReader{errors.New("connection reset by peer")})), http.Header{}, -1
		resp, err := client.Get(url + productPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if got, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("read %q whole; want the stream reset", got)
		}
		// The connection's other streams go on.
		body, length = io.NopCloser(strings.NewReader("whole")), 5
		resp2, err := client.Get(url + productPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp2.Body.Close()
		if got, err := io.ReadAll(resp2.Body); string(got) != "whole" || err != nil {
			t.Errorf("after a reset stream: read %q, %v", got, err)
		}
	})

	t.Run("compressed", func(t *testing.T) {
		big := `{"items":[` + strings.Repeat(`{"name":"Brass Lamp"},`, 100) + `{}]}`
		body, header, length = io.NopCloser(strings.NewReader(big)), http.Header{"Content-Type": {"application/json"}}, int64(len(big))
		req, _ := http.NewRequest("GET", url+productPath, nil)
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client leaves the body as it comes
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil || resp.Header.Get("Content-Encoding") != "gzip" || resp.ProtoMajor != 2 {
			t.Fatalf("over %s: Content-Encoding %q, %d bytes: %v", resp.Proto, resp.Header.Get("Content-Encoding"), len(raw), err)
		}
		if got, _ := io.ReadAll(zr); string(got) != big || len(raw) >= len(big)/2 {
			t.Errorf("decompressed %d bytes from %d, want the service's %d", len(got), len(raw), len(big))
		}
	})
}
