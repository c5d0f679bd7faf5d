package payments

import (
	"strings"
	"testing"
)

func TestCardNumber(t *testing.T) {
	for _, c := range []struct {
		typed, digits, brand string
		err                  string // a word the error has; "" for none
	}{
		{"4242424242424242", "4242424242424242", "visa", ""},
		{"4242 4242 4242 4242", "4242424242424242", "visa", ""},
		{"4242-4242-4242-4242", "4242424242424242", "visa", ""},
		{"5555555555554444", "5555555555554444", "mastercard", ""},
		{"2223003122003222", "2223003122003222", "mastercard", ""},
		{"378282246310005", "378282246310005", "amex", ""},
		{"6011111111111117", "6011111111111117", "discover", ""},
		{"4000000000000002", "4000000000000002", "visa", ""},
		{"4242424242424241", "", "", "check digit"},
		{"4242424242424243", "", "", "check digit"},
		{"", "", "", "required"},
		{"4242x424242424242", "", "", "digits only"},
		{"٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "", "", "digits only"}, // Arabic-Indic digits
		{"42424242424", "", "", "12 to 19"},
		{"42424242424242424242", "", "", "12 to 19"},
	} {
		got, err := cardNumber(c.typed)
		switch {
		case c.err == "" && (err != nil || got != c.digits):
			t.Errorf("cardNumber(%q) = %q, %v; want %q", c.typed, got, err, c.digits)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("cardNumber(%q) = %q, %v; want an error saying %q", c.typed, got, err, c.err)
		case c.err == "" && brand(got) != c.brand:
			t.Errorf("brand(%q) = %q, want %q", got, brand(got), c.brand)
		}
	}
}

func TestToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := newToken()
		if !ValidToken(tok) || seen[tok] {
			t.Fatalf("newToken() = %q: invalid or repeated", tok)
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", "pm_", "pm_short", "4242424242424242", "pm_AAAAAAAAAAAAAAAAAAAAAAAAAA", "pm_aaaaaaaaaaaaaaaaaaaaaaaaa1", "xx_aaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		if ValidToken(bad) {
			t.Errorf("ValidToken(%q) = true", bad)
		}
	}
}
