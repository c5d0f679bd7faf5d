package discovery

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// Transport is an http.RoundTripper that resolves the request URL's host as
// a service name: GET http://users/users/42 goes to one live users
// instance, chosen by Picker, over Base. An instance that refuses the
// connection is ejected for EjectFor and, when the request can be sent
// again, the request goes to another instance: a refused connection means
// the first instance never saw it.
type Transport struct {
	Picker   Picker
	Base     http.RoundTripper
	EjectFor time.Duration
}

var _ http.RoundTripper = (*Transport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	service := req.URL.Host
	var failed *Endpoint
	for {
		ep, err := t.Picker.Pick(service, failed)
		if err != nil {
			if failed == nil { // else Base has closed it
				closeBody(req)
			}
			return nil, err
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
		ep.inFlight.Add(1)
		resp, err := t.Base.RoundTrip(&out)
		if err == nil {
			resp.Body = &countedBody{ReadCloser: resp.Body, ep: ep}
			return resp, nil
		}
		ep.inFlight.Add(-1)
		if !refused(err) {
			return nil, err
		}
		ep.Eject(t.EjectFor)
		if failed != nil || !resendable(req) {
			return nil, err
		}
		failed = ep
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
}

// refused reports whether err happened while dialing: the request was not
// sent.
func refused(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
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

// NewTransport returns a Transport over picker with an http.Transport tuned
// for many requests to few hosts: enough idle connections per instance to
// never reconnect under load, short dial timeouts, and no proxy from the
// environment (the registry already says where to go).
func NewTransport(picker Picker) *Transport {
	return &Transport{
		Picker:   picker,
		EjectFor: 5 * time.Second,
		Base: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}
