package catalog

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/platform/problem"
)

// Product is something the shop sells.
type Product struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Price       money.Money `json:"price"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
}

// validate checks the fields a client sets.
func (p *Product) validate() error {
	var fields []problem.FieldError
	add := func(field, msg string) {
		if msg != "" {
			fields = append(fields, problem.FieldError{Field: field, Detail: msg})
		}
	}
	p.Name = norm.NFC.String(strings.TrimSpace(p.Name))
	switch {
	case p.Name == "":
		add("name", "is required")
	case utf8.RuneCountInString(p.Name) > 200:
		add("name", "must be at most 200 characters")
	default:
		add("name", checkText(p.Name, false))
	}
	p.Description = norm.NFC.String(strings.ReplaceAll(p.Description, "\r\n", "\n"))
	if utf8.RuneCountInString(p.Description) > 4000 {
		add("description", "must be at most 4000 characters")
	} else {
		add("description", checkText(p.Description, true))
	}
	if p.Price.Amount < 0 {
		add("price.amount", "must not be negative")
	} else if p.Price.Amount > money.MaxAmount {
		add("price.amount", fmt.Sprintf("must be at most %d (minor units)", money.MaxAmount))
	}
	if !isCurrency(p.Price.Currency) {
		add("price.currency", "must be an ISO 4217 code of three capital letters, like EUR")
	}
	return problem.Fields(fields)
}

// checkText says why s may not be shown as a product's text, or "". A
// name is one line; a description may also hold line feeds and tabs
// (a CR LF has become a line feed). Neither may hold other control
// characters, nor invisible format characters: bidi controls, which
// reorder what a page shows (a name that reads "Lamp" and sorts or
// matches as something else), zero-width spaces, and the like. The
// zero-width joiner and non-joiner stay, which emoji sequences and some
// scripts need. Unassigned code points, private-use characters and
// noncharacters are refused too: nothing can show them reliably.
func checkText(s string, multiline bool) string {
	for _, r := range s {
		switch {
		case multiline && (r == '\n' || r == '\t'):
		case r == '\u200c' || r == '\u200d':
		case unicode.IsControl(r):
			if multiline {
				return "must not contain control characters but line feeds and tabs"
			}
			return "must not contain control characters"
		case unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			return "must not contain bidi controls or other invisible format characters"
		case r == utf8.RuneError, unicode.In(r, unicode.Co, unicode.Cs) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z):
			return "must not contain unassigned, private-use or invalid characters"
		}
	}
	return ""
}

func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range 3 {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
