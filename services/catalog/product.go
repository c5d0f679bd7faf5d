package catalog

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	p.Name = strings.TrimSpace(p.Name)
	switch {
	case p.Name == "":
		add("name", "is required")
	case utf8.RuneCountInString(p.Name) > 200:
		add("name", "must be at most 200 characters")
	case strings.IndexFunc(p.Name, unicode.IsControl) >= 0:
		add("name", "must not contain control characters")
	}
	if utf8.RuneCountInString(p.Description) > 4000 {
		add("description", "must be at most 4000 characters")
	}
	if p.Price.Amount < 0 {
		add("price.amount", "must not be negative")
	}
	if !isCurrency(p.Price.Currency) {
		add("price.currency", "must be an ISO 4217 code of three capital letters, like EUR")
	}
	return problem.Fields(fields)
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
