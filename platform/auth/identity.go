package auth

import (
	"strings"

	"github.com/souk-shop/souk/platform/problem"
)

// Roles.
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
)

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

// IsIdentityHeader reports whether a header of this name is one only the
// gateway and the services may set (HeaderProof among them): any X-Souk-*
// header, whatever its case. The gateway passes none on from a client.
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
