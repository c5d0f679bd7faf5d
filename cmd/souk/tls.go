package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/localca"
	"github.com/souk-shop/souk/platform/server"
)

// gatewayTLS is what --tls-cert and --tls-key say of souk serve: nil for
// plain HTTP. The files are read now, so that a wrong path or a key that
// is not the certificate's stops the gateway before it starts.
func (s *serveCmd) gatewayTLS(log *slog.Logger) (*server.TLS, error) {
	switch {
	case s.TLSCert == "" && s.TLSKey == "":
		return nil, nil
	case s.Service != system.GatewayName:
		return nil, fmt.Errorf("--tls-cert, --tls-key: only the gateway serves HTTPS; services are reached through it")
	case s.TLSCert == "" || s.TLSKey == "":
		return nil, errors.New("--tls-cert and --tls-key go together: the certificate chain and its private key")
	case s.HSTSMaxAge < 0:
		return nil, fmt.Errorf("--hsts-max-age %s: want 0 (none) or more", s.HSTSMaxAge)
	}
	certs, err := server.LoadCertFiles(s.TLSCert, s.TLSKey, log)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
	}
	return &server.TLS{GetCertificate: certs.GetCertificate, HSTSMaxAge: s.HSTSMaxAge}, nil
}

// upTLS is what souk up --tls serves the gateway with: a local CA and a
// certificate for localhost, made in <data>/tls at first start and kept
// (the certificate is made again when it nears its end). Its methods work
// on nil, for plain HTTP.
type upTLS struct {
	server *server.TLS
	files  localca.Files
	made   localca.Made
}

// localTLS prepares --tls; nil without it.
func (u *upCmd) localTLS(log *slog.Logger) (*upTLS, error) {
	if !u.TLS {
		return nil, nil
	}
	if u.HSTSMaxAge < 0 {
		return nil, fmt.Errorf("--hsts-max-age %s: want 0 (none) or more", u.HSTSMaxAge)
	}
	files, made, err := localca.Ensure(filepath.Join(u.Data, "tls"), time.Now())
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	certs, err := server.LoadCertFiles(files.Cert, files.Key, log)
	if err != nil {
		return nil, err
	}
	return &upTLS{server: &server.TLS{GetCertificate: certs.GetCertificate, HSTSMaxAge: u.HSTSMaxAge}, files: files, made: made}, nil
}

// config is the gateway's TLS, nil for plain HTTP.
func (t *upTLS) config() *server.TLS {
	if t == nil {
		return nil
	}
	return t.server
}

// curlFlag is what curl needs to trust the gateway.
func (t *upTLS) curlFlag() string {
	if t == nil {
		return ""
	}
	return " --cacert " + t.files.CACert
}

// print tells how to trust the local CA.
func (t *upTLS) print(w io.Writer, gateway string) {
	if t == nil {
		return
	}
	ca, state := t.files.CACert, "made at an earlier start"
	if t.made.CA {
		state = "made now: trust it once"
	}
	fmt.Fprintf(w, "HTTPS: the gateway's certificate is signed by a local CA, %s (%s; it vouches for localhost and loopback addresses only).\n", ca, state)
	fmt.Fprintf(w, "  curl --cacert %s %s/readyz\n", ca, gateway)
	fmt.Fprintf(w, "  To trust it everywhere, add it to the system's store: Debian, Ubuntu: sudo cp %s /usr/local/share/ca-certificates/souk-local-ca.crt && sudo update-ca-certificates;\n", ca)
	fmt.Fprintf(w, "  macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %s.\n", ca)
	fmt.Fprintln(w, "  Firefox, and Chrome on Linux, keep their own: import it as an authority in their certificate settings.")
}
