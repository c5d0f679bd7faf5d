package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
)

// The gateway forwards with its own few lines rather than
// httputil.ReverseProxy, which clones each request three times (URL,
// headers, context) and sets up an httptrace per request to relay 1xx
// answers this API never sends. What it does that matters is kept: no
// hop-by-hop header passes either way, nor any header a Connection header
// names; the client's X-Forwarded-* are replaced; a body is streamed, and
// flushed as it comes when its length is unknown; a body that breaks off
// breaks off the client's response too. Trailers are not passed on: no
// service sends them.

// forward sends r, as the route's upstream request, to the service and
// copies the answer to w. ctx carries the request's deadline and span.
func (g *Gateway) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, rt *route, id auth.Identity) {
	out := r.WithContext(ctx) // a shallow copy: only what is set below differs
	out.URL = &url.URL{
		Scheme:   "http",
		Host:     rt.Service,
		Path:     strings.TrimPrefix(r.URL.Path, *rt.StripPrefix),
		RawPath:  strings.TrimPrefix(r.URL.RawPath, *rt.StripPrefix),
		RawQuery: r.URL.RawQuery,
	}
	out.Host, out.RequestURI = "", ""
	out.Close = false // the client's connection, not the service's
	proof, err := g.prover.Prove(rt.Service, id, clientIP(r))
	if err != nil {
		g.proxyError(w, out, err)
		return
	}
	out.Header = upstreamHeader(ctx, r, proof)
	switch {
	case r.ContentLength == 0:
		out.Body = nil // so that the request may be sent again on a fresh connection
	case r.Header.Get("Idempotency-Key") != "":
		// The service answers a repeat of this request as it answered the
		// first, so if the instance dies under it, it may go to another:
		// its body is kept for that (it is bounded by the route's limit).
		body, err := io.ReadAll(r.Body)
		if err != nil {
			g.proxyError(w, out, err)
			return
		}
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := g.transport.RoundTrip(out)
	if err != nil {
		g.proxyError(w, out, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 {
		// Interim answers never reach here (the client reads past them),
		// and a switch of protocol was not asked for: hop-by-hop headers,
		// Upgrade among them, never go upstream.
		g.proxyError(w, out, errors.New("the service switched protocols: "+resp.Status))
		return
	}
	if resp.StatusCode >= 500 {
		trace.SpanFromContext(ctx).SetStatus(codes.Error, resp.Status) // the call's span
	}
	h := w.Header()
	copyResponseHeader(h, resp.Header, *rt.StripPrefix)
	coding, varies := encoding(r, resp)
	if varies {
		h.Add("Vary", "Accept-Encoding")
	}
	if coding == "" {
		w.WriteHeader(resp.StatusCode)
		var rc *http.ResponseController
		if resp.ContentLength < 0 { // maybe a stream: each piece goes on as it comes
			rc = http.NewResponseController(w)
		}
		err = copyBody(w, resp.Body, rc)
	} else {
		err = compressBody(w, resp, coding)
	}
	if err != nil {
		// The status line is out; only cutting the connection tells the
		// client that the body is not whole.
		if !errors.Is(err, context.Canceled) {
			// Either side: the service's body broke off or the client left.
			g.log.WarnContext(ctx, "forwarding the body failed", "path", r.URL.Path, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// upstreamHeader returns the headers for the service: the client's, less
// those below, plus the gateway's own, which no client can set or unset:
// the proof of the verified caller (the only thing a service believes of
// who sent a request), the request id, the deadline and the trace.
func upstreamHeader(ctx context.Context, r *http.Request, proof string) http.Header {
	h := make(http.Header, len(r.Header)+8)
	named := connectionNamed(r.Header["Connection"])
	for k, vs := range r.Header {
		if !droppedRequestHeader(k) && !slices.Contains(named, k) {
			h[k] = vs // shared: neither side changes values in place
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	// The keys are canonical, as the server made the request's: map
	// operations, not Set, which canonicalizes each key again.
	h["X-Forwarded-For"] = []string{clientIP(r)}
	h["X-Forwarded-Host"] = []string{r.Host}
	h["X-Forwarded-Proto"] = []string{proto}
	h[auth.HeaderProof] = []string{proof}
	h[server.HeaderRequestID] = []string{telemetry.RequestID(ctx)}
	telemetry.InjectHTTP(ctx, h) // the span of this call
	if dl, ok := ctx.Deadline(); ok {
		h[server.HeaderTimeout] = []string{strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10)}
	}
	return h
}

// droppedRequestHeader: headers that never reach a service. Hop-by-hop
// headers (RFC 9110, 7.6.1) are about the client's connection, Upgrade
// (websocket, h2c) among them, which this API does not speak; the
// credential is verified here, and services get the identity instead;
// X-Souk-* is the identity, set by the gateway alone, whatever the case a
// client writes it in; the gateway sets the forwarding headers and its
// own trace context.
func droppedRequestHeader(k string) bool {
	if hopByHop(k) {
		return true
	}
	switch k {
	case "Http2-Settings",
		"Authorization", "X-Api-Key",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"Traceparent", "Tracestate":
		return true
	}
	return auth.IsIdentityHeader(k)
}

// hopByHop reports whether a header is about one connection, the client's
// or the service's, rather than the message.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// connectionNamed returns the canonical names of the headers that the
// values of a Connection header list: they are hop-by-hop too.
func connectionNamed(connection []string) []string {
	var names []string
	for _, v := range connection {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				names = append(names, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	return names
}

// copyResponseHeader adds the service's response headers to dst, less the
// hop-by-hop ones and the service's copy of the request id (the router
// has set the gateway's). A Location on the service's paths is made to
// point through the gateway, under prefix.
func copyResponseHeader(dst, src http.Header, prefix string) {
	named := connectionNamed(src["Connection"])
	for k, vs := range src {
		if hopByHop(k) || k == server.HeaderRequestID || slices.Contains(named, k) {
			continue
		}
		if len(dst[k]) == 0 {
			dst[k] = vs // shared: the response is the gateway's to give away
		} else {
			dst[k] = append(dst[k], vs...)
		}
	}
	if loc := dst["Location"]; prefix != "" && len(loc) > 0 && strings.HasPrefix(loc[0], "/") && !strings.HasPrefix(loc[0], prefix+"/") {
		dst["Location"] = []string{prefix + loc[0]}
	}
}

// copyBody copies body to w through a pooled buffer. With rc, it flushes
// the header at once and then each write: a body of unknown length may be
// a stream. The error is the first of reading or writing.
func copyBody(w io.Writer, body io.Reader, rc *http.ResponseController) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	flush := func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	if rc != nil {
		// A stream's first event may be a while: the status goes now.
		if err := flush(); err != nil {
			return err
		}
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if rc != nil {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// compressBody sends resp's body compressed with coding. The tag of the
// compressed body, another representation, is weak (RFC 9110 8.8.1): a
// client's If-None-Match still matches it, compared weakly, upstream.
func compressBody(w http.ResponseWriter, resp *http.Response, coding string) error {
	h := w.Header()
	delete(h, "Content-Length")
	h["Content-Encoding"] = []string{coding}
	if etag := h.Get("ETag"); strings.HasPrefix(etag, `"`) {
		h["Etag"] = []string{"W/" + etag}
	}
	w.WriteHeader(resp.StatusCode)
	cw := newCompressor(coding, w)
	if err := copyBody(cw, resp.Body, nil); err != nil {
		return err
	}
	return cw.Close()
}

// buffers holds the 32 KiB buffers bodies are copied through.
var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
