package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/souk-shop/souk/platform/problem"
)

// TLS says how a server speaks HTTPS.
type TLS struct {
	// GetCertificate gives the certificate for each handshake, e.g.
	// CertFiles.GetCertificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// HSTSMaxAge, if not zero, is sent with every answer as
	// Strict-Transport-Security: max-age=<seconds>, which tells browsers
	// to reach this host over HTTPS only, for that long.
	HSTSMaxAge time.Duration
}

// config is the server side of TLS: versions 1.2 and 1.3 only; in 1.2,
// only suites with forward secrecy and an AEAD cipher (1.3 has no others),
// which is also what HTTP/2 asks for (RFC 9113, 9.2.2); crypto/tls's own
// curves, post-quantum hybrid first, and its preference order; and ALPN
// offering HTTP/2, then HTTP/1.1.
func (t TLS) config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: t.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// hsts is the Strict-Transport-Security value, "" for none.
func (t TLS) hsts() string {
	if t.HSTSMaxAge <= 0 {
		return ""
	}
	return "max-age=" + strconv.FormatInt(int64(t.HSTSMaxAge/time.Second), 10)
}

// ListenTLS is Listen for HTTPS: HTTP/2 for clients that offer it in ALPN,
// HTTP/1.1 for the others, and, if t says so, Strict-Transport-Security on
// every answer, net/http's own error answers included.
func ListenTLS(addr string, h http.Handler, log *slog.Logger, cfg Config, t TLS) (*Server, error) {
	if t.GetCertificate == nil {
		return nil, errors.New("TLS without a certificate")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	hsts := t.hsts()
	if hsts != "" {
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Strict-Transport-Security"] = []string{hsts}
			next.ServeHTTP(w, r)
		})
	}
	s := newServer(&tlsListener{Listener: ln, config: t.config(), timeout: cfg.ReadHeaderTimeout, hsts: hsts, log: log,
		conns: make(chan net.Conn), failed: make(chan struct{})}, h, log, cfg)
	s.scheme = "https"
	// net/http sets HTTP/2 up when Serve starts, for the *tls.Conn that
	// the listener returns for connections that chose it.
	return s, nil
}

// tlsListener hands http.Server connections whose TLS handshake is done,
// each in the form that net/http needs: an HTTP/2 connection as the
// *tls.Conn it recognizes HTTP/2 by, an HTTP/1.1 one wrapped, as plain
// connections are, so that net/http's own error answers (a 431, a
// malformed request) are problem+json over TLS too: only a wrapper above
// TLS sees them in clear. Handshakes run on their own goroutines, each
// bounded by the header timeout, as net/http's would be.
type tlsListener struct {
	net.Listener // TCP
	config       *tls.Config
	timeout      time.Duration
	hsts         string
	log          *slog.Logger

	start  sync.Once
	conns  chan net.Conn // handshakes done
	failed chan struct{} // closed when the TCP listener fails for good, err says why
	err    error
}

// Accept returns the next connection whose handshake succeeded. The
// goroutine that accepts TCP connections starts with the first call and
// ends when the listener is closed.
func (l *tlsListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.accept() })
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.failed:
		return nil, l.err
	}
}

func (l *tlsListener) accept() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors, say: wait, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			l.err = err
			close(l.failed)
			return
		}
		delay = 0
		go l.handshake(c)
	}
}

// handshake completes c's TLS handshake and hands it to Accept; it ends
// when Accept has taken it, or the listener is closed.
func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.config)
	if l.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	if err := tc.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader[:]) {
			// Plain HTTP to the HTTPS port: say so, in clear, as net/http
			// does, but as problem+json.
			_, _ = re.Conn.Write(problemAnswer(http.StatusBadRequest, problem.Invalid, "this port speaks HTTPS only: use an https:// URL", ""))
		}
		l.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{}) // net/http sets its own from here on
	var conn net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		conn = &problemTLSConn{problemConn: problemConn{Conn: tc, hsts: l.hsts}, tls: tc}
	}
	select {
	case l.conns <- conn:
	case <-l.failed:
		_ = tc.Close()
	}
}

// looksLikeHTTP reports whether the first five bytes of a connection, read
// as a TLS record header, are the start of an HTTP/1 request instead.
func looksLikeHTTP(hdr []byte) bool {
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "PATCH", "DELET"} {
		if bytes.HasPrefix(hdr, []byte(m)) {
			return true
		}
	}
	return false
}

// problemTLSConn is a problemConn over TLS; net/http takes the request's
// TLS state (http.Request.TLS) from ConnectionState.
type problemTLSConn struct {
	problemConn
	tls *tls.Conn
}

// ConnectionState is the TLS state of the connection.
func (c *problemTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// CertFiles is a certificate and its private key, read from PEM files and
// read again when either file changes, so that a certificate renewed in
// place (by cert-manager into a mounted Secret, by certbot, by hand) is
// served from the next handshake on, without a restart. A renewal caught
// halfway (the new certificate beside the old key) keeps the old pair in
// service until the files agree again.
type CertFiles struct {
	certFile, keyFile string
	log               *slog.Logger
	every             time.Duration // how often, at most, the files are looked at

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  fileStamps // of the files cert came from
	bad     fileStamps // of the last files that did not load
	checked time.Time
}

// LoadCertFiles reads the certificate chain in certFile (PEM, the server's
// certificate first) and its private key in keyFile (PEM: PKCS #8, PKCS #1
// or SEC 1). It fails if either cannot be read or they do not belong
// together; it only warns of a certificate that is outside its validity.
func LoadCertFiles(certFile, keyFile string, log *slog.Logger) (*CertFiles, error) {
	c := &CertFiles{certFile: certFile, keyFile: keyFile, log: log, every: time.Second}
	stamps, _ := c.stamps()
	cert, err := c.read()
	if err != nil {
		return nil, err
	}
	c.cert, c.loaded, c.checked = cert, stamps, time.Now()
	return c, nil
}

// GetCertificate is for tls.Config: the current certificate, after looking
// at most once a second whether the files have changed.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.every {
		c.checked = now
		c.reload()
	}
	return c.cert, nil
}

// reload reads the files again if they are not the ones loaded, nor ones
// that failed already.
func (c *CertFiles) reload() {
	stamps, err := c.stamps()
	if err != nil || stamps.same(c.loaded) || stamps.same(c.bad) {
		return // an unreadable file is taken for one being replaced
	}
	cert, err := c.read()
	if err != nil {
		c.bad = stamps
		c.log.Warn("the TLS certificate files changed but do not load; still serving the previous certificate", "err", err)
		return
	}
	c.cert, c.loaded, c.bad = cert, stamps, fileStamps{}
	c.log.Info("TLS certificate reloaded", "cert", c.certFile, "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

func (c *CertFiles) read() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	// Go fills Leaf in (Go 1.23 and later).
	if now := time.Now(); cert.Leaf != nil && (now.After(cert.Leaf.NotAfter) || now.Before(cert.Leaf.NotBefore)) {
		c.log.Warn("the TLS certificate is not valid at this time", "cert", c.certFile,
			"not_before", cert.Leaf.NotBefore.UTC().Format(time.RFC3339), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// fileStamps tell whether the two files are still the ones read: the same
// file (a Secret volume swaps a symbolic link to new files), size and
// modification time.
type fileStamps struct{ cert, key os.FileInfo }

func (c *CertFiles) stamps() (fileStamps, error) {
	cert, err := os.Stat(c.certFile)
	if err != nil {
		return fileStamps{}, err
	}
	key, err := os.Stat(c.keyFile)
	if err != nil {
		return fileStamps{}, err
	}
	return fileStamps{cert, key}, nil
}

func (s fileStamps) same(o fileStamps) bool {
	same := func(a, b os.FileInfo) bool {
		return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
	}
	return same(s.cert, o.cert) && same(s.key, o.key)
}
