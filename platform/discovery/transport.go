package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Transport is an http.RoundTripper that resolves the request URL's host as
// a service name: GET http://users/users/42 goes to one live users
// instance, chosen by Picker, over Base.
//
// An instance that refuses the connection is ejected for EjectFor and,
// when the request can be sent again, the request goes to another
// instance: a refused connection means the first instance never saw it.
// An instance whose established connection breaks (reset, closed) is
// ejected too, and its idle connections are closed at once, so that the
// next requests neither pick it nor reuse its dead connections; whether
// the broken request may be sent again is the caller's to decide (the
// resilience layer retries what is idempotent).
//
// A Guard, if set, keeps requests from instances it judges unhealthy (a
// circuit breaker per instance). When it refuses every live instance of a
// service, the request goes to one of them anyway, unguarded: a guess
// beats a certain failure, and breakers that opened on a passing fault
// (or on one that was not the instances' own) must not take the whole
// service down until they heal (Envoy calls this panic routing).
type Transport struct {
	Picker   Picker
	Base     http.RoundTripper
	EjectFor time.Duration
	Guard    Guard
	// Panicked, if set, is told of each request routed in panic.
	Panicked func(service string)
}

// Guard decides which instances may take requests, and learns from how
// they answer.
type Guard interface {
	// Ready reports, without side effects, whether ep may be picked.
	Ready(ep *Endpoint) bool
	// Acquire reserves ep for one request; false means it may not take it
	// now (a half-open breaker whose trial requests are all out).
	Acquire(ep *Endpoint) bool
	// Record reports the outcome of a request that Acquire let through:
	// the response's status, or the error if there was no response
	// (context.Canceled if the caller gave up).
	Record(ep *Endpoint, status int, err error)
}

// idleCloser is a Base that can drop an instance's idle connections.
type idleCloser interface{ CloseIdle(host string) }

// Attempts remembers which instances one request has been sent to, so that
// a retry goes elsewhere when it can. Put one in the request's context
// (WithAttempts) before the first try.
type Attempts struct {
	mu   sync.Mutex
	sent []*Endpoint
}

type attemptsKey struct{}

// WithAttempts returns ctx carrying a.
func WithAttempts(ctx context.Context, a *Attempts) context.Context {
	return context.WithValue(ctx, attemptsKey{}, a)
}

func (a *Attempts) add(ep *Endpoint) {
	a.mu.Lock()
	a.sent = append(a.sent, ep)
	a.mu.Unlock()
}

func (a *Attempts) has(ep *Endpoint) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.sent, ep)
}

// ErrUnhealthy means every live instance of a service was refused by the
// Guard.
var ErrUnhealthy = errors.New("every instance is failing (circuit open)")

var _ http.RoundTripper = (*Transport)(nil)

// maxPicks bounds how many instances one request may try.
const maxPicks = 4

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	service := req.URL.Host
	var skipped [maxPicks]*Endpoint
	tried := skipped[:0]
	refusedOnce, guarded, panicking := false, false, false
	earlier, _ := req.Context().Value(attemptsKey{}).(*Attempts)
	avoidEarlier := earlier != nil
	skip := func(ep *Endpoint) bool {
		if slices.Contains(tried, ep) || avoidEarlier && earlier.has(ep) {
			return true
		}
		if t.Guard != nil && !t.Guard.Ready(ep) {
			guarded = true
			return true
		}
		return false
	}
	for len(tried) < maxPicks {
		ep, err := t.Picker.Pick(service, skip)
		if err != nil && avoidEarlier {
			// Every instance had a try: a repeat beats nothing.
			avoidEarlier = false
			ep, err = t.Picker.Pick(service, skip)
		}
		if err != nil && guarded && !refusedOnce && !panicking {
			// The guard refused every live instance: panic routing.
			panicking = true
			ep, err = t.Picker.Pick(service, func(ep *Endpoint) bool { return slices.Contains(tried, ep) })
			if err == nil && t.Panicked != nil {
				t.Panicked(service)
			}
		}
		if err != nil {
			if !refusedOnce { // else Base has closed it
				closeBody(req)
			}
			if guarded && !refusedOnce {
				return nil, fmt.Errorf("%s: %w", service, ErrUnhealthy)
			}
			return nil, err
		}
		guard := t.Guard
		if panicking {
			guard = nil // neither asked nor told: the request is a guess
		}
		if guard != nil && !guard.Acquire(ep) {
			tried = append(tried, ep)
			guarded = true
			continue
		}
		target, err := url.Parse(ep.URL)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		out := *req
		u := *req.URL
		u.Scheme, u.Host = target.Scheme, target.Host
		out.URL = &u
		if earlier != nil {
			earlier.add(ep)
		}
		ep.inFlight.Add(1)
		resp, err := t.Base.RoundTrip(&out)
		if guard != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			if err != nil && req.Context().Err() == context.Canceled {
				err = context.Canceled
			}
			guard.Record(ep, status, err)
		}
		if err == nil {
			resp.Body = &countedBody{ReadCloser: resp.Body, ep: ep}
			return resp, nil
		}
		ep.inFlight.Add(-1)
		if broken(err) {
			ep.Eject(t.EjectFor)
			if c, ok := t.Base.(idleCloser); ok {
				c.CloseIdle(target.Host)
			}
		}
		if !refused(err) {
			return nil, err
		}
		ep.Eject(t.EjectFor)
		if refusedOnce || !resendable(req) {
			return nil, err
		}
		refusedOnce = true
		tried = append(tried, ep)
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			again := *req
			again.Body = body
			req = &again
		}
	}
	return nil, fmt.Errorf("%s: %w", service, ErrUnhealthy)
}

// refused reports whether err happened while dialing: the request was not
// sent.
func refused(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}

// broken reports whether err is an established connection that broke:
// closed or reset by the other side, which a process that died does to
// every connection it had.
func broken(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, fasthttp.ErrConnectionClosed)
}

func resendable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// countedBody ends the request's in-flight count when the response body is
// closed.
type countedBody struct {
	io.ReadCloser
	ep     *Endpoint
	closed atomic.Bool
}

func (b *countedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.ep.inFlight.Add(-1)
	}
	return b.ReadCloser.Close()
}

// NewTransport returns a Transport over picker that sends requests with
// NewHTTP1.
func NewTransport(picker Picker) *Transport {
	return &Transport{Picker: picker, EjectFor: 5 * time.Second, Base: NewHTTP1()}
}
