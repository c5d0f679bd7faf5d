package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/problem"
)

// testCert writes a self-signed certificate for 127.0.0.1 with the given
// serial number, and its key, to dir, and returns their paths and the
// certificate.
func testCert(t *testing.T, dir string, serial int64) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("test ", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, fmt.Sprint("cert-", serial, ".pem")), filepath.Join(dir, fmt.Sprint("key-", serial, ".pem"))
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

// client trusts roots and speaks the given ALPN protocols: h2 and
// http/1.1, or only http/1.1.
func client(roots *x509.CertPool, protos ...string) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, NextProtos: protos}, ForceAttemptHTTP2: true}
	if len(protos) == 1 && protos[0] == "http/1.1" {
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestTLS serves a router over HTTPS and checks that HTTP/2 is chosen by
// ALPN for the clients that offer it and HTTP/1.1 for the others, that
// handlers see the TLS state, that every answer carries HSTS (net/http's
// own error answers too) and none over plain HTTP, and that plain HTTP to
// the HTTPS port and old TLS versions are refused.
func TestTLS(t *testing.T) {
	certFile, keyFile, cert := testCert(t, t.TempDir(), 1)
	log := slog.New(slog.DiscardHandler)
	certs, err := LoadCertFiles(certFile, keyFile, log)
	if err != nil {
		t.Fatal(err)
	}
	rt := newTestRouter(io.Discard)
	rt.Handle("GET /proto", func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, 200, map[string]any{"proto": r.Proto, "tls": r.TLS != nil})
		return nil
	})
	cfg := DefaultConfig()
	cfg.MaxHeaderBytes = 1 << 10
	srv, err := ListenTLS("127.0.0.1:0", rt, log, cfg, TLS{GetCertificate: certs.GetCertificate, HSTSMaxAge: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	plain, err := Listen("127.0.0.1:0", rt, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go plain.Serve()
	t.Cleanup(func() { plain.Shutdown(context.Background()) })
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") || !strings.HasPrefix(plain.URL(), "http://") {
		t.Fatalf("URLs %s and %s", srv.URL(), plain.URL())
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	const hsts = "max-age=31536000"
	h2, h1 := client(roots, "h2", "http/1.1"), client(roots, "http/1.1")
	t.Cleanup(func() { h2.CloseIdleConnections(); h1.CloseIdleConnections() }) // else shutdown waits a second for them

	for _, c := range []struct {
		name     string
		client   *http.Client
		url      string
		major    int
		proto    string // as the handler sees it
		tls      bool   // whether the handler sees the TLS state
		wantHSTS string
	}{
		{name: "HTTP/2", client: h2, url: srv.URL(), major: 2, proto: "HTTP/2.0", tls: true, wantHSTS: hsts},
		{name: "HTTP/1.1 over TLS", client: h1, url: srv.URL(), major: 1, proto: "HTTP/1.1", tls: true, wantHSTS: hsts},
		{name: "plain HTTP", client: http.DefaultClient, url: plain.URL(), major: 1, proto: "HTTP/1.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := c.client.Get(c.url + "/proto")
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Proto string
				TLS   bool
			}
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil || resp.ProtoMajor != c.major || got.Proto != c.proto || got.TLS != c.tls {
				t.Fatalf("answer over %s (%v), the handler saw %+v; want HTTP/%d, %s, TLS %v", resp.Proto, err, got, c.major, c.proto, c.tls)
			}
			if v := resp.Header.Values("Strict-Transport-Security"); strings.Join(v, ",") != c.wantHSTS {
				t.Errorf("Strict-Transport-Security %q, want %q", v, c.wantHSTS)
			}
			// The router's own answers (a 404 here) carry it as well.
			resp, err = c.client.Get(c.url + "/nowhere")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 || resp.Header.Get("Strict-Transport-Security") != c.wantHSTS {
				t.Errorf("404: Strict-Transport-Security %q, want %q", resp.Header.Get("Strict-Transport-Security"), c.wantHSTS)
			}
		})
	}

	t.Run("net/http's own answers over TLS are problem+json, with HSTS", func(t *testing.T) {
		conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, "GET /proto HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("x", 8<<10)+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p problem.Body
		err = json.NewDecoder(resp.Body).Decode(&p)
		if resp.StatusCode != 431 || resp.Header.Get("Content-Type") != "application/problem+json" || err != nil || p.Code != problem.HeadersTooLarge ||
			resp.Header.Get("Strict-Transport-Security") != hsts {
			t.Fatalf("status %d, headers %v, body %+v (%v); want 431 problem+json with HSTS", resp.StatusCode, resp.Header, p, err)
		}
	})

	t.Run("plain HTTP to the HTTPS port is told to use HTTPS", func(t *testing.T) {
		resp, err := http.Get("http://" + srv.Addr() + "/proto")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p problem.Body
		err = json.NewDecoder(resp.Body).Decode(&p)
		if resp.StatusCode != 400 || err != nil || !strings.Contains(p.Detail, "https://") || resp.Header.Get("Strict-Transport-Security") != "" {
			t.Fatalf("status %d, headers %v, body %+v (%v); want 400 naming https://, without HSTS", resp.StatusCode, resp.Header, p, err)
		}
	})

	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11})
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})

	t.Run("TLS 1.2 gets a forward-secret AEAD suite and HTTP/2", func(t *testing.T) {
		conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		if st.Version != tls.VersionTLS12 || st.NegotiatedProtocol != "h2" || !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "ECDHE_ECDSA_WITH_AES_128_GCM") {
			t.Errorf("TLS 1.2 handshake: version %x, ALPN %q, suite %s", st.Version, st.NegotiatedProtocol, tls.CipherSuiteName(st.CipherSuite))
		}
	})
}

// TestCertFilesReload replaces the certificate files under a serving
// server: the next handshakes get the new certificate, and a renewal
// caught halfway keeps the old pair in service.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert1 := testCert(t, dir, 1)
	certs, err := LoadCertFiles(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	certs.every = 0 // look at the files at every handshake
	srv, err := ListenTLS("127.0.0.1:0", newTestRouter(io.Discard), slog.New(slog.DiscardHandler), DefaultConfig(), TLS{GetCertificate: certs.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	served := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := served(); got != cert1.SerialNumber.Int64() {
		t.Fatalf("serves certificate %d, want 1", got)
	}
	newCert, newKey, _ := testCert(t, dir, 2)
	replace := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		// As a renewal does: a new file renamed over the old one.
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	replace(newCert, certFile) // the new certificate beside the old key
	if got := served(); got != 1 {
		t.Fatalf("halfway through a renewal: serves certificate %d, want the old one, 1", got)
	}
	replace(newKey, keyFile)
	if got := served(); got != 2 {
		t.Fatalf("after the renewal: serves certificate %d, want the new one, 2", got)
	}
}

// TestLoadCertFilesErrors: what cannot serve fails at once, naming the
// files.
func TestLoadCertFilesErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testCert(t, dir, 1)
	_, otherKey, _ := testCert(t, dir, 2)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"no certificate file", missing, keyFile, "no such file"},
		{"no key file", certFile, missing, "no such file"},
		{"not PEM", garbage, keyFile, "PEM"},
		{"another certificate's key", certFile, otherKey, "does not match"},
	} {
		_, err := LoadCertFiles(c.cert, c.key, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.cert) || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: LoadCertFiles(%s, %s) = %v, want an error naming both files and %q", c.name, c.cert, c.key, err, c.want)
		}
	}
}
