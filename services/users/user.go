package users

import (
	"net/mail"
	"strings"
	"time"
	"unicode"
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

// validate checks the fields a client sets, and normalises the email.
func (u *User) validate() error {
	var fields []problem.FieldError
	u.Name = strings.TrimSpace(u.Name)
	if msg := checkName(u.Name); msg != "" {
		fields = append(fields, problem.FieldError{Field: "name", Detail: msg})
	}
	u.Email = strings.ToLower(strings.TrimSpace(u.Email))
	if msg := checkEmail(u.Email); msg != "" {
		fields = append(fields, problem.FieldError{Field: "email", Detail: msg})
	}
	return problem.Fields(fields)
}

func checkName(name string) string {
	switch {
	case name == "":
		return "is required"
	case utf8.RuneCountInString(name) > 200:
		return "must be at most 200 characters"
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "must not contain control characters"
	}
	return ""
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

func checkEmail(email string) string {
	if email == "" {
		return "is required"
	}
	if len(email) > 254 {
		return "must be at most 254 characters"
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" || !strings.Contains(email[strings.LastIndexByte(email, '@')+1:], ".") {
		return "must be an address like ada@example.com"
	}
	return ""
}
