package payments

import (
	"time"

	"github.com/souk-shop/souk/api/money"
)

// Payment statuses.
const (
	Authorized = "authorized"
	Declined   = "declined"
	Captured   = "captured"
	Voided     = "voided"
	Refunded   = "refunded"
	Cancelled  = "cancelled" // a tombstone: cancelled before it was authorized
)

// Payment is an order's payment.
type Payment struct {
	OrderID   string      `json:"order_id"`
	Status    string      `json:"status"`
	Amount    money.Money `json:"amount"`
	Reference string      `json:"reference,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// result is what a call to the provider learned, for the handler that
// records it.
type result struct {
	outcome string // authorized, declined, failed, captured, voided, refunded, nothing, skip
	ref     string
	reason  string
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
