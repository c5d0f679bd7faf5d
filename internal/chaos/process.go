package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// instance is one `souk serve` process that souk chaos runs, stops and
// starts again, always on the same port, behind its own proxy.
type instance struct {
	name  string // orders#1
	svc   string
	port  int    // where it listens
	proxy *Proxy // what it advertises; nil for the gateway
	args  []string
	log   string // its output goes here

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
}

// pid is the running process's id, 0 if none.
func (in *instance) pid() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// start runs the process and waits until it answers /readyz.
func (in *instance) start(ctx context.Context, bin string, ready time.Duration) error {
	out, err := os.OpenFile(in.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, in.args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Should this process die without cleaning up, the kernel kills its
	// children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", in.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	in.mu.Lock()
	in.cmd, in.exited, in.stopped = cmd, exited, false
	in.mu.Unlock()

	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", in.port)
	hc := &http.Client{Timeout: time.Second}
	end := time.Now().Add(ready)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready; see %s", in.name, in.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s was not ready in %s; see %s", in.name, ready, in.log)
		}
	}
}

// running says whether the process was started and has not exited.
func (in *instance) running() bool {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the process, if it runs.
func (in *instance) signal(sig syscall.Signal) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return errors.New(in.name + " is not running")
	}
	switch sig {
	case syscall.SIGSTOP:
		in.stopped = true
	case syscall.SIGCONT:
		in.stopped = false
	}
	return in.cmd.Process.Signal(sig)
}

// kill sends SIGKILL and waits for the process to be gone.
func (in *instance) kill() {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// freePorts finds n distinct free ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
