package users

import (
	"time"
	"unicode/utf8"

	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// User is a registered user of the shop.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// now is the time as stored: UTC, to the microsecond (PostgreSQL's precision).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func newID() string { return server.NewID() }

// validate checks the fields a client sets, and puts the name and the
// email in their canonical forms (identity.go).
func (u *User) validate() error {
	var fields []problem.FieldError
	name, msg := canonicalName(u.Name)
	if msg != "" {
		fields = append(fields, problem.FieldError{Field: "name", Detail: msg})
	}
	e, msg := canonicalEmail(u.Email)
	if msg != "" {
		fields = append(fields, problem.FieldError{Field: "email", Detail: msg})
	}
	if len(fields) > 0 {
		return problem.Fields(fields)
	}
	u.Name, u.Email = name, e.Display
	return nil
}

// checkPassword enforces a length, not a composition: long passphrases
// beat short complicated ones (NIST SP 800-63B).
func checkPassword(pw string) string {
	switch n := utf8.RuneCountInString(pw); {
	case n < 10:
		return "must be at least 10 characters"
	case len(pw) > 256:
		return "must be at most 256 bytes"
	}
	return ""
}

// checkEmail says why email is not an address Souk accepts, or "".
func checkEmail(email string) string {
	_, msg := canonicalEmail(email)
	return msg
}
