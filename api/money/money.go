// Package money is how Souk writes an amount of money, in every API and
// event: an integer in the currency's minor unit (cents for EUR), never a
// float, with its ISO 4217 code.
package money

// Money is an amount in minor units and its currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// MaxAmount is the largest amount Souk takes anywhere: a price, a line of
// an order, an order's total. 10^12 minor units is ten billion euros, past
// any real order, and far enough below int64's limit that no sum Souk
// makes of amounts within it can wrap around; Add and Mul check all the
// same, so that no path to a wrong total is left to arithmetic.
const MaxAmount int64 = 1_000_000_000_000

// Valid reports whether amount is from 0 to MaxAmount.
func Valid(amount int64) bool { return amount >= 0 && amount <= MaxAmount }

// Add is a + b, and whether both and the sum are from 0 to MaxAmount.
func Add(a, b int64) (int64, bool) {
	if !Valid(a) || !Valid(b) || a > MaxAmount-b {
		return 0, false
	}
	return a + b, true
}

// Mul is amount × n (a unit price times a quantity), and whether amount,
// n and the product are from 0 to MaxAmount.
func Mul(amount, n int64) (int64, bool) {
	if !Valid(amount) || n < 0 || n > MaxAmount || (n != 0 && amount > MaxAmount/n) {
		return 0, false
	}
	return amount * n, true
}
