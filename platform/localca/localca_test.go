package localca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func read(t *testing.T, f Files) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	for _, p := range []string{f.CACert, f.CAKey, f.Cert, f.Key} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got[filepath.Base(p)] = b
	}
	return got
}

// TestEnsure makes a CA and a server certificate, checks their files'
// modes and what they vouch for, and then what later starts keep and
// make again.
func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	f, made, err := Ensure(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if made != (Made{CA: true, Server: true}) {
		t.Errorf("first Ensure made %+v, want both", made)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, f.CAKey: 0o600, f.Key: 0o600, f.CACert: 0o644, f.Cert: 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode(), err, mode)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The pair loads as a TLS server's certificate and verifies, for
	// every loopback name, against the CA alone.
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := loadPair(f.CACert, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "127.0.0.2"} {
		want := h != "127.0.0.2" // in the CA's constraints, not in the certificate
		_, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: roots})
		if (err == nil) != want {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	if life := pair.Leaf.NotAfter.Sub(now); life > ServerLifetime || life < ServerLifetime-time.Minute {
		t.Errorf("server certificate valid for %s more", life)
	}
	if life := ca.NotAfter.Sub(now); life < 9*365*24*time.Hour {
		t.Errorf("CA valid for %s more", life)
	}
	if pair.Leaf.PublicKeyAlgorithm != x509.ECDSA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("keys %v and %v, want ECDSA", pair.Leaf.PublicKeyAlgorithm, ca.PublicKeyAlgorithm)
	}

	first := read(t, f)
	if _, made, err := Ensure(dir, now.Add(time.Hour)); err != nil || made != (Made{}) {
		t.Fatalf("a second start made %+v (%v), want nothing", made, err)
	}
	if !equal(first, read(t, f)) {
		t.Fatal("a second start changed the files")
	}

	// Near the server certificate's end, it is made again; the CA stays.
	_, made, err = Ensure(dir, now.Add(ServerLifetime-Renew+time.Hour))
	if err != nil || made != (Made{Server: true}) {
		t.Fatalf("near the server certificate's end: made %+v (%v), want the server certificate", made, err)
	}
	second := read(t, f)
	if !bytes.Equal(first["ca.pem"], second["ca.pem"]) || !bytes.Equal(first["ca-key.pem"], second["ca-key.pem"]) ||
		bytes.Equal(first["server.pem"], second["server.pem"]) || bytes.Equal(first["server-key.pem"], second["server-key.pem"]) {
		t.Error("renewing the server certificate did not keep the CA and replace the server's pair")
	}

	// A server key that is not the certificate's: made again.
	if err := os.WriteFile(f.Key, first["server-key.pem"], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, made, err := Ensure(dir, now); err != nil || made != (Made{Server: true}) {
		t.Errorf("with a mismatched key: made %+v (%v)", made, err)
	}

	// Near the CA's end: everything is made again.
	if _, made, err := Ensure(dir, now.Add(CALifetime-ServerLifetime)); err != nil || made != (Made{CA: true, Server: true}) {
		t.Errorf("near the CA's end: made %+v (%v), want both", made, err)
	}
}

// TestCAOnlyVouchesForLoopback signs, with the CA's key, certificates for
// other names: no verifier that honours name constraints accepts them.
func TestCAOnlyVouchesForLoopback(t *testing.T) {
	f, _, err := Ensure(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey, err := loadPair(f.CACert, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, name := range []string{"example.com", "localhost.example.com"} {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{name},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err == nil {
			t.Errorf("the local CA vouches for %s", name)
		}
	}
}

func equal(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
