// Package localca keeps a certificate authority of a development machine's
// own, and a server certificate for the loopback names signed by it, so
// that a local HTTPS server can be trusted by adding one CA certificate to
// a client (curl --cacert, or the system's trust store).
//
// Both keys are ECDSA P-256, which every browser and TLS library accepts.
// The CA may vouch only for localhost and loopback addresses (X.509 name
// constraints, marked critical): should its key leak, it cannot be used to
// impersonate any other site to a machine that trusts it.
package localca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Lifetimes of what Ensure makes. A server certificate is made again when
// less than Renew of it is left, so a start never leaves it weeks from its
// end; a CA is made again only when it could not outlive a new server
// certificate.
const (
	CALifetime     = 10 * 365 * 24 * time.Hour
	ServerLifetime = 90 * 24 * time.Hour
	Renew          = 30 * 24 * time.Hour
)

// Hosts are the names the server certificate is for.
var Hosts = []string{"localhost", "127.0.0.1", "::1"}

// Files are the paths of a local CA's files in its directory. The keys are
// readable by their owner only (0600), in a directory that is too (0700).
type Files struct {
	CACert, CAKey string // ca.pem, ca-key.pem
	Cert, Key     string // server.pem, server-key.pem
}

// FilesIn are the files of the local CA in dir.
func FilesIn(dir string) Files {
	return Files{
		CACert: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca-key.pem"),
		Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem"),
	}
}

// Made says what Ensure had to make.
type Made struct {
	CA     bool // a new CA: clients must trust it anew
	Server bool // a new server certificate
}

// Ensure makes sure dir holds a valid CA and a server certificate for
// Hosts that it signed, valid for at least Renew more: it keeps what is
// there and makes what is missing, unreadable, mismatched or near its end.
func Ensure(dir string, now time.Time) (Files, Made, error) {
	f := FilesIn(dir)
	var made Made
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, made, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return f, made, err
	}
	ca, caKey, err := loadPair(f.CACert, f.CAKey)
	if err != nil || !ca.IsCA || now.Add(ServerLifetime).After(ca.NotAfter) {
		if ca, caKey, err = newCA(now); err != nil {
			return f, made, err
		}
		if err := writePair(f.CACert, f.CAKey, ca.Raw, caKey); err != nil {
			return f, made, err
		}
		made.CA = true
	}
	leaf, _, err := loadPair(f.Cert, f.Key)
	if made.CA || err != nil || !servesHosts(leaf, ca, now.Add(Renew)) {
		der, key, err := newServer(ca, caKey, now)
		if err != nil {
			return f, made, err
		}
		if err := writePair(f.Cert, f.Key, der, key); err != nil {
			return f, made, err
		}
		made.Server = true
	}
	return f, made, nil
}

// servesHosts reports whether leaf, signed by ca, is good for every one of
// Hosts at time at.
func servesHosts(leaf, ca *x509.Certificate, at time.Time) bool {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range Hosts {
		opts := x509.VerifyOptions{DNSName: h, Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			return false
		}
	}
	return true
}

func newCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Souk local development CA"},
			// Told apart in a trust store by where and when it was made.
			CommonName: fmt.Sprintf("Souk local CA %s %s", host, now.UTC().Format("2006-01-02 15:04:05")),
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// What it may sign for: the loopback names, nothing else.
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"localhost"},
		PermittedIPRanges: []*net.IPNet{
			{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
			{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func newServer(ca *x509.Certificate, caKey crypto.Signer, now time.Time) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Souk local development"}, CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	return der, key, err
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// loadPair reads a certificate and its key, and checks that they belong
// together.
func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || cp.Type != "CERTIFICATE" || kp == nil || kp.Type != "PRIVATE KEY" {
		return nil, nil, errors.New("not a PEM certificate and PKCS #8 key")
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the key does not belong to the certificate")
	}
	return cert, key, nil
}

// writePair writes the key (0600) and then the certificate (0644), each
// to a temporary file renamed over the old one, so that a reader never
// sees half a file.
func writePair(certFile, keyFile string, der []byte, key crypto.Signer) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a failure; the rename consumed it otherwise
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
