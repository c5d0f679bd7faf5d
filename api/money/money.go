// Package money is how Souk writes an amount of money, in every API and
// event: an integer in the currency's minor unit (cents for EUR), never a
// float, with its ISO 4217 code.
package money

// Money is an amount in minor units and its currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}
