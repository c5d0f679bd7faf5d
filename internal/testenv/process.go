package testenv

import (
	"bytes"
	"net"
	"os/exec"
	"sync"
	"testing"
)

// Start starts a program the test needs (a Prometheus, a Jaeger) and kills
// it when the test ends. Its output is kept: the function returned gives
// it so far, for a failure's message.
func Start(t testing.TB, cmd *exec.Cmd) (output func() string) {
	t.Helper()
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return out.String
}

// FreeAddr is a loopback address nothing listened on a moment ago, for a
// program that must be told its port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Buffer collects output written from many goroutines (a program's
// output copiers, loggers) while the test may read it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
