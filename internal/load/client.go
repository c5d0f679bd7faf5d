package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"
)

// client is one simulated shopper: an account, its token, and its own
// connections, dialled from its own source address when the gateway is on
// loopback, so that per-address limits see as many addresses as there are
// shoppers.
type client struct {
	n        int
	addr     net.IP // source address; nil: the system's choice
	http     *http.Client
	email    string
	password string
	// Its payment methods' tokens: a card that pays, one that is declined.
	pay, decline string

	mu      sync.Mutex
	tokens  tokens
	renewed time.Time // when tokens were given
	cursor  string    // where browsing goes on
	// renew lets one operation at a time exchange the refresh token: two
	// exchanges of one would end the session.
	renew sync.Mutex
}

// tokens are what a login or a refresh answers.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func (c *client) bearer() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokens.AccessToken
}

func (c *client) setTokens(t tokens) {
	c.mu.Lock()
	c.tokens, c.renewed = t, time.Now()
	c.mu.Unlock()
}

func (c *client) current() (tokens, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokens, c.renewed
}

// sourceAddr is the loopback address of client n: 127.77.0.1 onwards,
// 250 to a /24, so that no two clients share one (up to 64,000 clients).
func sourceAddr(n int) net.IP {
	return net.IPv4(127, 77+byte(n/(250*256)), byte(n/250%256), byte(n%250+1))
}

// loopback says whether the gateway's host is on loopback IPv4, where any
// address of 127.0.0.0/8 can be a source.
func loopback(gateway *url.URL) bool {
	host := gateway.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() != nil && ip.IsLoopback()
}

// newHTTP returns an HTTP client of its own, dialling from src if not nil.
// It never retries: the only resend is net/http's own, of a GET on a
// kept-alive connection the server had closed before reading it, which
// every browser does too; POST bodies are never sent twice (see send).
func newHTTP(src net.IP, conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
			ForceAttemptHTTP2:   false,
		},
		// Redirects are not part of Souk's API; a 3xx is an answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// answer is what came back: a status and body, or an error.
type answer struct {
	status    int
	body      []byte
	ratelimit string // the RateLimit header
	err       error
}

// send makes one request with the given timeout.
func send(ctx context.Context, hc *http.Client, method, url, token string, body any, timeout time.Duration, header ...string) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{err: err}
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{err: err}
	}
	// Without GetBody net/http cannot send a body twice: a POST that
	// failed, failed.
	req.GetBody = nil
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	a := answer{status: resp.StatusCode, body: b, ratelimit: resp.Header.Get("RateLimit"), err: err}
	if err != nil {
		a.status = 0
	}
	return a
}

// failure names what went wrong with a, or "" when its status is one of
// ok: the status ("503"), or the kind of error.
func (a answer) failure(ok ...int) string {
	if a.err != nil {
		return errorKind(a.err)
	}
	for _, s := range ok {
		if a.status == s {
			return ""
		}
	}
	return fmt.Sprint(a.status)
}

// errorKind sorts a failed exchange into a few kinds a reader can act on.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no source address"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	default:
		return "network error"
	}
}

// decode reads a JSON answer into v.
func (a answer) decode(v any) error {
	if a.err != nil {
		return a.err
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("status %d: %w", a.status, err)
	}
	return nil
}

// String describes a for setup errors.
func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	b := a.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(b))
}
