package chaos

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoServer answers each line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line on c and reads it back, within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetDeadline(start.Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("got " + line)
	}
	return time.Since(start), nil
}

func TestProxy(t *testing.T) {
	p, err := NewProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	c, r := dial()
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.SetLatency(50 * time.Millisecond)
	if took, err := roundTrip(c, r, time.Second); err != nil || took < 100*time.Millisecond {
		t.Errorf("with 50 ms each way a round trip took %v (%v), want at least 100 ms", took, err)
	}
	p.SetLatency(0)
	if took, err := roundTrip(c, r, time.Second); err != nil || took > 50*time.Millisecond {
		t.Errorf("without latency a round trip took %v (%v)", took, err)
	}

	// A cut resets open connections and holds new ones silent.
	p.Cut(true)
	if _, err := roundTrip(c, r, time.Second); err == nil {
		t.Error("an open connection still worked across a cut")
	}
	held, hr := dial()
	if _, err := roundTrip(held, hr, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a new connection during a cut: %v, want a timeout", err)
	}
	p.Cut(false)
	c, r = dial()
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Errorf("after the cut: %v", err)
	}

	// Close ends every connection and goroutine; nothing listens after.
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Close: %v, want connection refused", err)
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p, err := NewProxy("127.0.0.1:0", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before the dial returned: as good
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection to a proxy whose server is gone: %v, want it reset at once", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		err  string
	}{
		{func(*Config) {}, ""},
		{func(c *Config) { c.Binary = "" }, "binary"},
		{func(c *Config) { c.Instances = 0 }, "--instances"},
		{func(c *Config) { c.Load.Duration = 0 }, "bounded in time"},
		{func(c *Config) { c.NATSNodes = 1 }, "needs a cluster"},
		{func(c *Config) { c.NATSNodes, c.NATSKillEvery = 1, 0 }, ""},
		{func(c *Config) { c.KillEvery = -time.Second }, "negative"},
		{func(c *Config) { c.Postgres = "mysql://x" }, "--postgres"},
		{func(c *Config) { c.Postgres = "postgres://postgres@127.0.0.1:5432/test" }, ""},
	} {
		cfg := DefaultConfig()
		cfg.Binary, cfg.Dir = "/bin/souk", "/tmp"
		c.edit(&cfg)
		err := cfg.Validate()
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", cfg, err, c.err)
		}
	}
}
