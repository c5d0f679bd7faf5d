package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/openapitest"
)

// TestUpTLS runs `souk up --tls` twice: the first start makes a local CA
// and a certificate with their keys readable by their owner only and
// serves the gateway over HTTPS, HTTP/2 for clients that offer it, with
// HSTS; the second reuses them. The operations port stays plain HTTP.
func TestUpTLS(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	var files map[string][]byte
	for start := 1; start <= 2; start++ {
		output, _ := up(t, dir, func(urls map[string]string) {
			gw := urls["gateway"]
			if !strings.HasPrefix(gw, "https://127.0.0.1:") || !strings.HasPrefix(urls["gateway-ops"], "http://") {
				t.Fatalf("gateway at %q, operations at %q; want https and http", gw, urls["gateway-ops"])
			}
			ca, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(ca) {
				t.Fatal("ca.pem holds no certificate")
			}
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			// The certificate is good for each loopback name.
			for _, u := range []string{gw, strings.Replace(gw, "127.0.0.1", "localhost", 1)} {
				resp, err := client.Get(u + "/readyz")
				if err != nil {
					t.Fatalf("%s/readyz with the local CA: %v", u, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") != "max-age=300" {
					t.Fatalf("%s/readyz: %d over %s, Strict-Transport-Security %q", u, resp.StatusCode, resp.Proto, resp.Header.Get("Strict-Transport-Security"))
				}
			}
			// The API, over HTTP/2, as openapi.yaml describes it.
			body := `{"name":"Ada","email":"ada@example.com","password":"correct horse battery"}`
			req, _ := http.NewRequest("POST", gw+"/api/auth/register", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := map[int]int{1: 201, 2: 409}[start]; resp.StatusCode != want || resp.ProtoMajor != 2 {
				t.Fatalf("register over %s: %d %s, want %d", resp.Proto, resp.StatusCode, b, want)
			}
			spec, err := openapitest.Load()
			if err != nil {
				t.Fatal(err)
			}
			if err := spec.Check(req, []byte(body), resp, b); err != nil {
				t.Error(err)
			}
			// The operations port is plain HTTP, without HSTS.
			resp, err = http.Get(urls["gateway-ops"] + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "" {
				t.Errorf("operations port: %d, Strict-Transport-Security %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
			}
		}, "--tls")
		out := strings.Join(output, "\n")
		wantState := map[int]string{1: "made now", 2: "made at an earlier start"}[start]
		if !strings.Contains(out, "curl --cacert "+filepath.Join(tlsDir, "ca.pem")) || !strings.Contains(out, wantState) || !strings.Contains(out, "update-ca-certificates") {
			t.Errorf("start %d does not say how to trust the CA (%s):\n%s", start, wantState, out)
		}

		for name, mode := range map[string]os.FileMode{".": 0o700 | os.ModeDir, "ca-key.pem": 0o600, "server-key.pem": 0o600, "ca.pem": 0o644, "server.pem": 0o644} {
			if fi, err := os.Stat(filepath.Join(tlsDir, name)); err != nil || fi.Mode() != mode {
				t.Errorf("start %d: %s: mode %v (%v), want %v", start, name, fi.Mode(), err, mode)
			}
		}
		now := map[string][]byte{}
		for _, name := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem"} {
			now[name], _ = os.ReadFile(filepath.Join(tlsDir, name))
		}
		if start == 2 {
			for name, b := range files {
				if !bytes.Equal(b, now[name]) {
					t.Errorf("the second start changed %s", name)
				}
			}
		}
		files = now
	}
}

// TestServeTLSFlags: what --tls-cert and --tls-key cannot serve stops
// souk serve at once, before it looks for NATS, naming what is wrong.
func TestServeTLSFlags(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"--tls-cert", missing, "--tls-key", missing}, missing + ": no such file"},
		{[]string{"--tls-cert", garbage, "--tls-key", garbage}, "failed to find any PEM data in certificate input"},
		{[]string{"--tls-cert", garbage}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-key", garbage}, "--tls-cert and --tls-key go together"},
	} {
		args := append([]string{"serve", "gateway", "--nats", "nats://127.0.0.1:1"}, c.args...)
		var out strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code := run(ctx, args, noEnv, &out, &out)
		cancel()
		if code != 1 || !strings.Contains(out.String(), c.out) {
			t.Errorf("souk %v: exit %d; want 1 and %q in:\n%s", args, code, c.out, out.String())
		}
	}
	var out strings.Builder
	if code := run(context.Background(), []string{"serve", "users", "--tls-cert", garbage, "--tls-key", garbage}, noEnv, &out, &out); code != 1 ||
		!strings.Contains(out.String(), "only the gateway serves HTTPS") {
		t.Errorf("souk serve users with --tls-cert: exit %d:\n%s", code, out.String())
	}
}
