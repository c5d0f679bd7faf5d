package payments

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/souk-shop/souk/platform/problem"
)

// Method is a card a customer gave payments, as everyone else sees it: a
// token to pay with, the brand and the last four digits. The number itself
// stays in payments' database, sealed (platform/secrets), and goes only to
// the provider.
type Method struct {
	Token      string    `json:"token"`
	CustomerID string    `json:"customer_id"`
	Brand      string    `json:"brand"`
	Last4      string    `json:"last4"`
	CreatedAt  time.Time `json:"created_at"`
}

// tokenPrefix starts every payment method's token.
const tokenPrefix = "pm_"

// newToken makes a payment method's token: 130 random bits.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return tokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ValidToken says whether s has a token's shape, so that what is plainly
// not one is refused before it is looked up or written anywhere.
func ValidToken(s string) bool {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// cardNumber checks a card number as a customer may type it (spaces and
// dashes between digits allowed) and returns its digits.
func cardNumber(typed string) (string, error) {
	digits := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, typed)
	bad := func(detail string) error {
		return problem.Field("card", detail)
	}
	switch {
	case digits == "":
		return "", bad("is required: a card number of 12 to 19 digits (test cards: 4242424242424242; 4000000000000002 is declined)")
	case strings.Trim(digits, "0123456789") != "":
		return "", bad("must be digits only, spaces and dashes between them allowed")
	case len(digits) < 12 || len(digits) > 19:
		return "", bad("must be 12 to 19 digits long")
	case !luhn(digits):
		return "", bad("is not a card number: its check digit is wrong (a digit mistyped?)")
	}
	return digits, nil
}

// luhn reports whether digits pass the Luhn check that every card number's
// last digit makes (ISO/IEC 7812).
func luhn(digits string) bool {
	sum := 0
	for i := range len(digits) {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// brand names a card's network from its first digits (its IIN range).
func brand(digits string) string {
	prefix := func(n int) int {
		v := 0
		for _, c := range digits[:n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	switch p2, p4 := prefix(2), prefix(4); {
	case digits[0] == '4':
		return "visa"
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return "mastercard"
	case p2 == 34 || p2 == 37:
		return "amex"
	case p4 == 6011 || p2 == 65:
		return "discover"
	}
	return "unknown"
}

// errNoMethod means a payment method does not exist, or is not the
// paying customer's: the two look the same to the customer.
var errNoMethod = errors.New("no such payment method")

// card returns the number of a customer's payment method, for the
// provider.
func (s *Service) card(ctx context.Context, token, customerID string) (string, error) {
	if !ValidToken(token) {
		return "", errNoMethod
	}
	owner, sealed, ok, err := s.store.sealedCard(ctx, token)
	if err != nil {
		return "", err
	}
	if !ok || owner != customerID {
		return "", errNoMethod
	}
	number, err := s.keys.Open(sealed, []byte(token))
	if err != nil {
		return "", fmt.Errorf("open the card of %s: %w", token, err)
	}
	return string(number), nil
}
