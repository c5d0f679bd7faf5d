package auth

import (
	"net/http"
	"strings"

	"github.com/souk-shop/souk/platform/problem"
)

// Roles.
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
)

// The headers in which the gateway passes the identity it verified. The
// gateway removes them from every client request before it sets them, so a
// service behind it can trust them; services must not be reachable except
// through the gateway (or another service).
const (
	HeaderUserID = "X-Souk-User-Id"
	HeaderRole   = "X-Souk-Role"
	HeaderAuth   = "X-Souk-Auth" // how the caller proved it: "jwt" or "api-key"
)

// IdentityHeaders are every header that carries identity.
var IdentityHeaders = []string{HeaderUserID, HeaderRole, HeaderAuth}

// Identity is who is calling.
type Identity struct {
	UserID string
	Role   string
	Method string // "jwt", "api-key", or "" when anonymous
	// KeyPrefix names the API key used, if any; it stays in the gateway
	// (for per-key rate limits) and is not passed on.
	KeyPrefix string
}

// Anonymous reports whether no one was authenticated.
func (id Identity) Anonymous() bool { return id.UserID == "" }

// IsAdmin reports whether the caller is an admin.
func (id Identity) IsAdmin() bool { return id.Role == RoleAdmin }

// FromRequest reads the identity the gateway set.
func FromRequest(r *http.Request) Identity {
	return Identity{
		UserID: r.Header.Get(HeaderUserID),
		Role:   r.Header.Get(HeaderRole),
		Method: r.Header.Get(HeaderAuth),
	}
}

// SetHeaders writes id into h, replacing whatever was there.
func (id Identity) SetHeaders(h http.Header) {
	// The names are canonical: map operations, not Set and Del, which
	// canonicalize each again.
	for _, k := range IdentityHeaders {
		delete(h, k)
	}
	if id.Anonymous() {
		return
	}
	h[HeaderUserID] = []string{id.UserID}
	h[HeaderRole] = []string{id.Role}
	h[HeaderAuth] = []string{id.Method}
}

// IsIdentityHeader reports whether a header of this name is one only the
// gateway may set: any X-Souk-* header, whatever its case. The gateway
// passes none on from a client.
func IsIdentityHeader(name string) bool {
	return len(name) >= len(headerPrefix) && strings.EqualFold(name[:len(headerPrefix)], headerPrefix)
}

const headerPrefix = "X-Souk-"

// RequireUser fails with Unauthorized unless someone is authenticated.
func (id Identity) RequireUser() error {
	if id.Anonymous() {
		return problem.New(problem.Unauthorized, "sign in: send Authorization: Bearer <token> or an API key")
	}
	return nil
}

// RequireAdmin fails unless the caller is an admin.
func (id Identity) RequireAdmin() error {
	if err := id.RequireUser(); err != nil {
		return err
	}
	if !id.IsAdmin() {
		return problem.New(problem.Forbidden, "only admins may do this")
	}
	return nil
}

// RequireSelfOrAdmin fails unless the caller is the user userID or an admin.
func (id Identity) RequireSelfOrAdmin(userID string) error {
	if err := id.RequireUser(); err != nil {
		return err
	}
	if id.UserID != userID && !id.IsAdmin() {
		return problem.New(problem.Forbidden, "you may only see and change your own user")
	}
	return nil
}
