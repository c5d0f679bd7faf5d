package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// HTTP1 is the http.RoundTripper under Transport: an HTTP/1.1 client
// (fasthttp's) that writes a request and reads its answer on the calling
// goroutine. net/http's Transport hands every request to a writing and a
// reading goroutine per connection and back; for the gateway, whose work
// is mostly forwarding, this client saves 8% of its CPU per request
// (bench/gateway -baseline, beside a build with net/http's Transport).
// Services speak HTTP/1.1 to each other over plain TCP, so nothing of
// net/http's Transport (HTTP/2, proxies, TLS) is missed.
//
// A request must have a deadline in its context, or it gets Timeout; the
// deadline bounds the whole exchange, the response body included. A
// context canceled without a deadline passing does not stop a request
// already sent: it ends at its deadline.
type HTTP1 struct {
	Client *fasthttp.Client
	// Timeout bounds a request whose context has no deadline.
	Timeout time.Duration

	hosts sync.Map // host:port → the Client's *fasthttp.HostClient for it
}

var _ http.RoundTripper = (*HTTP1)(nil)

// NewHTTP1 returns an HTTP1 with the settings Transport needs: it does not
// retry on its own (the resilience layer does, within a budget) except to
// send an idempotent request again when a kept-alive connection turns out
// to have been closed by the server, as net/http's Transport does.
func NewHTTP1() *HTTP1 {
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	t := &HTTP1{Timeout: 30 * time.Second}
	t.Client = &fasthttp.Client{
		// Each host's client is kept, to close its idle connections
		// (CloseIdle).
		ConfigureClient: func(hc *fasthttp.HostClient) error {
			t.hosts.Store(hc.Addr, hc)
			return nil
		},
		Dial: func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) },
		// Net/http's Transport has no cap either; the bulkhead in
		// front of it bounds requests in flight per service.
		MaxConnsPerHost: 1 << 16,
		// Shorter than any server's idle timeout (120 s here), so
		// that the client, not the server, closes idle connections.
		MaxIdleConnDuration:       30 * time.Second,
		MaxIdemponentCallAttempts: 2,
		RetryIfErr: func(req *fasthttp.Request, _ int, err error) (bool, bool) {
			return false, replayable(req) && (errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed))
		},
		StreamResponseBody:            true,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true, // a request's are canonical already; responses' are made so below
		DisablePathNormalizing:        true, // the path goes as the caller wrote it
	}
	return t
}

// CloseIdle closes the idle kept-alive connections to host (host:port):
// once one of them turned out dead, the instance most likely is, and the
// others would fail the next requests too.
func (t *HTTP1) CloseIdle(host string) {
	if hc, ok := t.hosts.Load(host); ok {
		hc.(*fasthttp.HostClient).CloseIdleConnections()
	}
}

// replayable: the methods net/http's Transport sends again on a closed
// kept-alive connection.
func replayable(req *fasthttp.Request) bool {
	h := &req.Header
	return (h.IsGet() || h.IsHead() || h.IsOptions()) && !req.IsBodyStream() && len(req.Body()) == 0
}

// RoundTrip implements http.RoundTripper.
func (t *HTTP1) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		closeBody(r)
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.Timeout)
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	h := &req.Header
	h.SetMethod(r.Method)
	req.SetRequestURI(r.URL.Scheme + "://" + r.URL.Host + r.URL.RequestURI())
	if r.Host != "" && r.Host != r.URL.Host {
		h.SetHost(r.Host) // as net/http sends it
		req.UseHostHeader = true
	}
	h.SetNoDefaultContentType(true)
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue // from the request's fields, as net/http does
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if r.Close {
		h.SetConnectionClose()
	}
	if r.Body != nil && r.Body != http.NoBody {
		size := int(r.ContentLength)
		if size <= 0 {
			size = -1 // unknown: chunked
		}
		req.SetBodyStream(r.Body, size)
	}

	resp := fasthttp.AcquireResponse()
	resp.Header.SetNoDefaultContentType(true)
	err := t.Client.DoDeadline(req, resp, deadline)
	closeBody(r) // fasthttp closes a body it read to the end; this covers the rest
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		if errors.Is(err, fasthttp.ErrTimeout) {
			// Callers (retry policies, the gateway's 504) know this one.
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: err}
	}
	return response(r, resp), nil
}

// response converts resp, which the returned response's body releases
// when closed.
func response(r *http.Request, resp *fasthttp.Response) *http.Response {
	code := resp.StatusCode()
	header := make(http.Header, 8)
	for k, v := range resp.Header.All() {
		// As net/http's Transport gives them: the proxy's hop-by-hop
		// removal and every Header.Get depend on canonical names.
		key := textproto.CanonicalMIMEHeaderKey(string(k))
		if key == "Transfer-Encoding" {
			continue // fasthttp has decoded the body; net/http drops it too
		}
		header[key] = append(header[key], string(v))
	}
	length := int64(resp.Header.ContentLength())
	if length < 0 || r.Method == http.MethodHead {
		length = -1
	}
	body := &http1Body{resp: resp}
	if s := resp.BodyStream(); s != nil {
		body.r = s
	} else {
		body.r = bytes.NewReader(resp.Body())
	}
	return &http.Response{
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode: code,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        header,
		ContentLength: length,
		Body:          body,
		Request:       r,
	}
}

// http1Body reads a response's body and releases the response when
// closed; a body closed before its end closes the connection with it.
type http1Body struct {
	r    io.Reader
	resp *fasthttp.Response
	once sync.Once
}

func (b *http1Body) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *http1Body) Close() error {
	var err error
	b.once.Do(func() {
		err = b.resp.CloseBodyStream()
		fasthttp.ReleaseResponse(b.resp)
	})
	return err
}
