// Package gateway is the API gateway: the one public entry to the shop.
// Each route of its configuration names a path, the methods, the service
// that owns it and a policy (public, authenticated, admin). For each
// request the gateway, in this order: answers CORS, authenticates the
// caller (JWT or API key) and applies the route's policy, takes a token
// from the caller's rate-limit buckets, bounds the body, sets a deadline,
// and forwards the request, with the verified identity in headers only it
// sets, to a live instance of the service (see platform/discovery and
// platform/resilience for the picking, breakers, bulkhead and retries).
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/resilience"
	"github.com/souk-shop/souk/platform/server"
)

// Name is the gateway's name in the registry, metrics and logs.
const Name = "gateway"

// Gateway forwards API requests to services.
type Gateway struct {
	tracer    trace.Tracer
	cfg       Config
	auth      *Authenticator
	limiter   *RateLimiter
	log       *slog.Logger
	limited   *prometheus.CounterVec
	transport http.RoundTripper
	prover    *auth.Prover
	routes    []*route
	local     map[string]http.Handler // services the gateway serves itself (Host)
}

// route is a configured route with its defaults applied.
type route struct {
	Route
	index    int
	spanName string
}

// New returns a gateway for cfg that authenticates with authn, limits
// rates with limiter and sends requests through transport, which resolves
// service names (http://users/…) to instances, each with a proof of the
// verified caller signed by prover.
func New(cfg Config, authn *Authenticator, limiter *RateLimiter, transport http.RoundTripper, prover *auth.Prover, reg prometheus.Registerer, log *slog.Logger) *Gateway {
	g := &Gateway{
		tracer: noop.NewTracerProvider().Tracer(""),
		cfg:    cfg, auth: authn, limiter: limiter, log: log, transport: transport, prover: prover, local: map[string]http.Handler{},
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_gateway_rate_limited_total", Help: "Requests refused with 429, by route and by which limit.",
		}, []string{"route", "by"}),
	}
	reg.MustRegister(g.limited)
	for i, r := range cfg.Routes {
		rt := &route{Route: r.withDefaults(cfg.Defaults), index: i}
		rt.spanName = "call " + rt.Service
		label := strings.Join(rt.Methods, ",") + " " + rt.Path
		for by, lim := range map[string]*Limit{"address": rt.RateLimit.Address, "user": rt.RateLimit.User, "key": rt.RateLimit.Key} {
			if lim != nil {
				g.limited.WithLabelValues(label, by) // at zero until a request is refused
			}
		}
		g.routes = append(g.routes, rt)
	}
	return g
}

// Trace makes the gateway record a client span per forwarded request, and
// pass the trace on in traceparent.
func (g *Gateway) Trace(tp trace.TracerProvider) { g.tracer = tp.Tracer("souk/gateway") }

// Routes registers every configured route and CORS preflights where a
// route allows CORS. Methods a route does not list, TRACE among them, get
// 405 from the router.
func (g *Gateway) Routes(rt *server.Router) {
	preflights := map[string]bool{}
	for _, r := range g.routes {
		for _, m := range r.Methods {
			rt.HandleHTTP(m+" "+r.Path, g.handler(r))
		}
		if r.CORS != nil && !preflights[r.Path] {
			preflights[r.Path] = true
			rt.HandleHTTP("OPTIONS "+r.Path, g.preflight(r.Path))
		}
	}
}

func (g *Gateway) handler(rt *route) http.Handler {
	label := strings.Join(rt.Methods, ",") + " " + rt.Path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkPath(r.URL); err != nil {
			problem.Write(w, err)
			return
		}
		if rt.CORS != nil {
			corsHeaders(w.Header(), r, rt.CORS)
		}
		id, err := g.auth.Authenticate(r)
		if err == nil {
			switch rt.Policy {
			case Authenticated:
				err = id.RequireUser()
			case Admin:
				err = id.RequireAdmin()
			}
		}
		if err != nil {
			challenge(w.Header(), err)
			problem.Write(w, err)
			return
		}
		if !g.allow(w, r, rt, label, id) {
			return
		}
		if r.ContentLength > rt.MaxBodyBytes {
			problem.Write(w, problem.New(problem.TooLarge, "the body is larger than %d bytes", rt.MaxBodyBytes))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBodyBytes)
		}
		ctx, cancel := context.WithTimeout(r.Context(), rt.Timeout)
		defer cancel()
		if trace.SpanFromContext(ctx).IsRecording() {
			// A span for the call, in sampled traces only: an unsampled
			// trace passes the request's own span context on.
			var span trace.Span
			ctx, span = g.tracer.Start(ctx, rt.spanName, trace.WithSpanKind(trace.SpanKindClient))
			defer span.End()
		}
		if h := g.local[rt.Service]; h != nil {
			g.serveLocal(ctx, w, r, rt, id, h)
			return
		}
		g.forward(ctx, w, r, rt, id)
	})
}

// checkPath refuses paths that could mean one thing here and another
// upstream: an encoded slash or backslash (one segment here, two for a
// server that decodes first) and dot segments hidden by encoding (the
// router cleans the literal ones). Found by FuzzRouting.
func checkPath(u *url.URL) error {
	raw := strings.ToLower(u.RawPath)
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.ContainsRune(u.Path, '\\') {
		return problem.New(problem.Invalid, "encoded slashes and backslashes are not allowed in paths")
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return problem.New(problem.Invalid, "dot segments are not allowed in paths")
		}
	}
	return nil
}

// allow takes a token from each of the caller's buckets for the route: its
// address always, its user if it signed in with a token, its key if it used
// an API key. Every answer says, in RateLimit-Policy and RateLimit
// (draft-ietf-httpapi-ratelimit-headers), what each bucket allows and has
// left, so that clients can pace themselves; allow writes the 429 itself
// when one is empty.
func (g *Gateway) allow(w http.ResponseWriter, r *http.Request, rt *route, label string, id auth.Identity) bool {
	rl := rt.RateLimit
	var user, key string
	switch id.Method {
	case "jwt":
		user = id.UserID
	case "api-key":
		key = id.KeyPrefix
	}
	// Both header values are built side by side in one buffer, then made
	// one string: two allocations per answer, whatever the buckets.
	var pbuf, lbuf [96]byte
	policies, limits := pbuf[:0], lbuf[:0]
	for _, c := range [...]struct {
		by, who string
		lim     *Limit
	}{{"address", clientIP(r), rl.Address}, {"user", user, rl.User}, {"key", key, rl.Key}} {
		if c.lim == nil || c.who == "" {
			continue
		}
		d := g.limiter.Allow(rt.index, c.by, c.who, *c.lim)
		if len(policies) > 0 {
			policies, limits = append(policies, ", "...), append(limits, ", "...)
		}
		policies = append(policies, d.Policy...)
		limits = append(append(append(limits, '"'), c.by...), '"') // a fixed name: nothing to escape
		limits = strconv.AppendInt(append(limits, ";r="...), int64(d.Remaining), 10)
		limits = strconv.AppendInt(append(limits, ";t="...), int64(math.Ceil(d.Reset.Seconds())), 10)
		if d.Allowed {
			continue
		}
		g.limited.WithLabelValues(label, c.by).Inc()
		setRateLimit(w.Header(), policies, limits)
		w.Header()["Retry-After"] = []string{strconv.Itoa(int(math.Ceil(d.RetryAfter.Seconds())))}
		problem.Write(w, problem.New(problem.TooManyRequests, "rate limit per %s exceeded; retry in %s", c.by, d.RetryAfter.Round(time.Millisecond)))
		return false
	}
	if len(policies) > 0 {
		setRateLimit(w.Header(), policies, limits)
	}
	return true
}

// setRateLimit sets the RateLimit-Policy and RateLimit headers; the keys
// are canonical.
func setRateLimit(h http.Header, policies, limits []byte) {
	both := string(append(policies, limits...))
	vals := []string{both[:len(policies)], both[len(policies):]}
	h["Ratelimit-Policy"], h["Ratelimit"] = vals[:1:1], vals[1:]
}

// clientIP is the address the connection came from: the gateway is the
// edge, so it believes no X-Forwarded-For.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	trace.SpanFromContext(r.Context()).SetStatus(codes.Error, err.Error())
	var p *problem.Error
	_, tooLarge := errors.AsType[*http.MaxBytesError](err)
	switch {
	case tooLarge:
		p = problem.Wrap(problem.TooLarge, err, "the body is too large")
	case errors.Is(err, discovery.ErrNoInstance):
		p = problem.Wrap(problem.Unavailable, err, "the service is unavailable: no live instance")
	case errors.Is(err, discovery.ErrUnhealthy):
		p = problem.Wrap(problem.Unavailable, err, "the service is unavailable: every instance is failing")
	case errors.Is(err, resilience.ErrBulkheadFull):
		p = problem.Wrap(problem.Unavailable, err, "the service is overloaded: too many requests in flight")
	case errors.Is(err, context.DeadlineExceeded):
		p = problem.Wrap(problem.Timeout, err, "the service did not answer in time")
	case errors.Is(err, context.Canceled):
		p = problem.Wrap(problem.BadGateway, err, "the request was canceled")
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		p = problem.Wrap(problem.Unavailable, err, "the service is unavailable")
	default:
		p = problem.Wrap(problem.BadGateway, err, "the service answered badly")
	}
	if !errors.Is(err, context.Canceled) && !tooLarge {
		g.log.WarnContext(r.Context(), "upstream failed", "path", r.URL.Path, "err", err)
	}
	problem.Write(w, p)
}

// preflight answers a CORS preflight for path with what the real request
// would get: the method asked for must be routed on path with CORS that
// allows the origin, and the methods allowed are those whose routes allow
// it too, so that a browser never sends a request whose answer it may not
// read.
func (g *Gateway) preflight(path string) http.Handler {
	byMethod := map[string]*route{}
	var methods []string
	for _, r := range g.routes {
		if r.Path == path {
			for _, m := range r.Methods {
				byMethod[m] = r
				methods = append(methods, m)
			}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := r.Header.Get("Access-Control-Request-Method")
		rt, ok := byMethod[want]
		if !ok {
			problem.Write(w, problem.New(problem.MethodNotAllowed, "%q is not allowed here; allowed: %s", want, strings.Join(methods, ", ")))
			return
		}
		h := w.Header()
		if rt.CORS == nil || !corsHeaders(h, r, rt.CORS) {
			problem.Write(w, problem.New(problem.Forbidden, "origin %q may not call %s %s", r.Header.Get("Origin"), want, path))
			return
		}
		var allowed []string
		for _, m := range methods {
			if c := byMethod[m].CORS; c != nil && c.allows(r.Header.Get("Origin")) {
				allowed = append(allowed, m)
			}
		}
		h.Set("Access-Control-Allow-Methods", strings.Join(allowed, ", "))
		h.Set("Access-Control-Allow-Headers", strings.Join(append(corsRequestHeaders, rt.CORS.Headers...), ", "))
		if rt.CORS.MaxAge > 0 {
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(rt.CORS.MaxAge.Seconds())))
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// corsRequestHeaders are the request headers a browser may send to any
// route with CORS: what this API reads beyond the CORS-safelisted ones.
var corsRequestHeaders = []string{"Authorization", "Content-Type", "X-API-Key", "X-Request-Id", "Idempotency-Key", "If-None-Match"}

// corsExposed are the response headers a page may read.
const corsExposed = "Location, ETag, Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate, X-Request-Id"

// allows reports whether origin may call a route with these settings.
func (c *CORS) allows(origin string) bool {
	return origin != "" && (slices.Contains(c.Origins, "*") || slices.Contains(c.Origins, origin))
}

// corsHeaders sets the response headers for an allowed origin and reports
// whether the request's origin is allowed.
func corsHeaders(h http.Header, r *http.Request, c *CORS) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h.Add("Vary", "Origin")
	if !c.allows(origin) {
		return false
	}
	if c.Credentials || !slices.Contains(c.Origins, "*") {
		h.Set("Access-Control-Allow-Origin", origin)
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	if c.Credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Expose-Headers", corsExposed)
	return true
}
