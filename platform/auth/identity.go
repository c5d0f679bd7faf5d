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
	for _, k := range IdentityHeaders {
		h.Del(k)
	}
	if id.Anonymous() {
		return
	}
	h.Set(HeaderUserID, id.UserID)
	h.Set(HeaderRole, id.Role)
	h.Set(HeaderAuth, id.Method)
}

// StripIdentity removes every identity header from h, whatever its case,
// and from the Connection header's list, so that no client can set or
// unset one.
func StripIdentity(h http.Header) {
	for k := range h {
		if len(k) >= 7 && strings.EqualFold(k[:7], "x-souk-") {
			delete(h, k)
		}
	}
}

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
