package chaos

import (
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of one server, which can add
// latency or cut the link on demand.
//
// Latency delays every chunk forwarded, in each direction, so a request
// and its answer take twice the latency more. A cut resets every open
// connection and holds new ones open without forwarding a byte until the
// link is restored (then closes them): to a client it is a partition, seen
// as timeouts, not as refused connections.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu      sync.Mutex
	latency time.Duration
	cut     bool
	conns   map[net.Conn]struct{}
	held    chan struct{} // closed when a cut ends
	closed  bool
	wg      sync.WaitGroup
}

// NewProxy listens on listen and forwards to upstream.
func NewProxy(listen, upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency adds d to every chunk forwarded each way (0 for none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Cut cuts the link (true) or restores it (false).
func (p *Proxy) Cut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cut == p.cut {
		return
	}
	p.cut = cut
	if cut {
		p.held = make(chan struct{})
		for c := range p.conns {
			reset(c)
		}
		return
	}
	close(p.held)
}

// Close stops the proxy and closes every connection; it returns once
// every goroutine of the proxy has.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	if p.cut {
		p.cut = false
		close(p.held)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track adds c to the open connections; false if the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) serve(client net.Conn) {
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	p.mu.Lock()
	cut, held := p.cut, p.held
	p.mu.Unlock()
	if cut {
		<-held // a partition: nothing passes until it ends
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		reset(client) // as the server would have refused it
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	go func() { p.pipe(up, client); done <- struct{}{} }()
	go func() { p.pipe(client, up); done <- struct{}{} }()
	<-done
	// One side ended: end the other, and wait for its copy.
	client.Close()
	up.Close()
	<-done
}

// pipe copies from src to dst, delaying each chunk by the latency.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.latency
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// reset closes c with a RST rather than a FIN, as a dead peer's kernel
// or a middlebox that lost the flow would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
