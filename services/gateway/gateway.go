// Package gateway is the API gateway: the one public entry to the shop. It
// maps /api/<resource>/… to the service that owns the resource, picks a live
// instance of it from the registry, and forwards the request with a
// deadline, a request id and X-Forwarded-* headers it sets itself.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
)

// Name is the gateway's name in metrics and logs.
const Name = "gateway"

// Route sends requests under Prefix (e.g. /api/users) to Service, with
// "/api" removed from the path (/api/users/7 → /users/7).
type Route struct {
	Prefix  string
	Service string
}

// DefaultRoutes are the public API's routes.
var DefaultRoutes = []Route{
	{Prefix: "/api/users", Service: "users"},
	{Prefix: "/api/products", Service: "catalog"},
	{Prefix: "/api/catalog", Service: "catalog"},
}

// apiPrefix is removed from the path before a request is forwarded.
const apiPrefix = "/api"

// Config configures a Gateway.
type Config struct {
	Routes []Route
	// Timeout bounds each forwarded request, from the gateway receiving it
	// to the upstream's response headers and body.
	Timeout time.Duration
}

// Gateway forwards API requests to services.
type Gateway struct {
	cfg   Config
	proxy *httputil.ReverseProxy
	log   *slog.Logger
}

// New returns a gateway that sends requests through transport, which
// resolves service names to instances (see discovery.Transport).
func New(cfg Config, transport http.RoundTripper, log *slog.Logger) *Gateway {
	g := &Gateway{cfg: cfg, log: log}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      transport,
		BufferPool:     bufferPool{},
		ModifyResponse: modifyResponse,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return g
}

// Routes registers each route's prefix, exactly and as a subtree.
func (g *Gateway) Routes(rt *server.Router) {
	for _, route := range g.cfg.Routes {
		h := g.forward(route.Service)
		rt.HandleHTTP(route.Prefix, h)
		rt.HandleHTTP(route.Prefix+"/", h)
	}
}

type serviceKey struct{}

func (g *Gateway) forward(service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
		defer cancel()
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, serviceKey{}, service)))
	})
}

// rewrite builds the upstream request. By the time it runs, ReverseProxy has
// removed hop-by-hop headers, those named in Connection, and any
// X-Forwarded-* the client sent; what is set here cannot be undone by the
// client.
func rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = in.Context().Value(serviceKey{}).(string)
	out.URL.Path = strings.TrimPrefix(in.URL.Path, apiPrefix)
	out.URL.RawPath = strings.TrimPrefix(in.URL.RawPath, apiPrefix)
	out.Host = ""
	pr.SetXForwarded()
	out.Header.Set(server.HeaderRequestID, telemetry.RequestID(in.Context()))
	// Protocol switches (websocket, h2c) are not part of this API.
	out.Header.Del("Upgrade")
}

// modifyResponse makes the service's Location point through the gateway,
// and drops the service's copy of the request id, which the gateway's
// router has already set on the response.
func modifyResponse(resp *http.Response) error {
	resp.Header.Del(server.HeaderRequestID)
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, apiPrefix+"/") {
		resp.Header.Set("Location", apiPrefix+loc)
	}
	return nil
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	service, _ := r.Context().Value(serviceKey{}).(string)
	var p *problem.Error
	switch {
	case errors.Is(err, discovery.ErrNoInstance):
		p = problem.Wrap(problem.Unavailable, err, service+" is unavailable: no live instance")
	case errors.Is(err, context.DeadlineExceeded):
		p = problem.Wrap(problem.Timeout, err, service+" did not answer within "+g.cfg.Timeout.String())
	case errors.Is(err, context.Canceled):
		p = problem.Wrap(problem.BadGateway, err, "the request was canceled")
	case refusedOrReset(err):
		p = problem.Wrap(problem.Unavailable, err, service+" is unavailable")
	default:
		p = problem.Wrap(problem.BadGateway, err, service+" answered badly")
	}
	if r.Context().Err() == nil || errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		g.log.WarnContext(r.Context(), "upstream failed", "service", service, "err", err)
	}
	problem.Write(w, p)
}

func refusedOrReset(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// bufferPool reuses the 32 KiB buffers ReverseProxy copies bodies through.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
