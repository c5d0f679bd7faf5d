package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/souk-shop/souk/platform/auth"
)

// Host makes the gateway serve the routes of service itself, with h,
// rather than forward them: for what only the gateway holds (its
// registry watcher, its breakers, the traces it keeps), such as the
// operators' console API. Such a route is configured like any other, and
// its requests pass the same edge (path checks, CORS, authentication and
// the route's policy, rate limits, body limit, deadline); h then gets
// the request as a service would: the route's prefix stripped, and the
// verified caller in its context (auth.FromRequest), from the gateway.
// Call Host before the gateway serves.
func (g *Gateway) Host(service string, h http.Handler) { g.local[service] = h }

// serveLocal hands a request of a hosted service's route to its handler.
func (g *Gateway) serveLocal(ctx context.Context, w http.ResponseWriter, r *http.Request, rt *route, id auth.Identity, h http.Handler) {
	in := r.WithContext(auth.WithCaller(ctx, auth.Caller{Sender: auth.GatewayIdentity, Identity: id, Addr: clientIP(r)}))
	u := *r.URL
	u.Path = strings.TrimPrefix(u.Path, *rt.StripPrefix)
	u.RawPath = strings.TrimPrefix(u.RawPath, *rt.StripPrefix)
	in.URL = &u
	h.ServeHTTP(w, in)
}
