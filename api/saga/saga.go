// Package saga is the contract of the order saga: the type of every event
// the orders, inventory and payments services exchange, and its payload.
// The services share this package, never each other's code; a change here
// is a change of the published contract (add a v2 type rather than change
// a v1 payload).
//
// orders orchestrates: it publishes requests (…Requested, and OrderPlaced,
// which asks for stock) and the order's outcome; inventory and payments
// answer each request with an event of their own.
package saga

import (
	"errors"
	"time"

	"github.com/souk-shop/souk/api/money"
)

// Published by orders.
const (
	OrderPlaced             = "souk.orders.v1.OrderPlaced"             // asks inventory to reserve the items
	PaymentRequested        = "souk.orders.v2.PaymentRequested"        // asks payments to authorize (v1 carried a card number; see PaymentRequestedData)
	StockCommitRequested    = "souk.orders.v1.StockCommitRequested"    // asks inventory to turn the reservation into a sale
	PaymentCaptureRequested = "souk.orders.v1.PaymentCaptureRequested" // asks payments to capture
	StockReleaseRequested   = "souk.orders.v1.StockReleaseRequested"   // compensation: give the stock back, whatever was done with it
	PaymentCancelRequested  = "souk.orders.v1.PaymentCancelRequested"  // compensation: void or refund, whatever was done
	OrderConfirmed          = "souk.orders.v1.OrderConfirmed"
	OrderCancelled          = "souk.orders.v1.OrderCancelled"
)

// Published by inventory.
const (
	StockReserved     = "souk.inventory.v1.StockReserved"
	ReservationFailed = "souk.inventory.v1.ReservationFailed"
	StockCommitted    = "souk.inventory.v1.StockCommitted"
	StockCommitFailed = "souk.inventory.v1.StockCommitFailed"
	StockReleased     = "souk.inventory.v1.StockReleased"
)

// Published by payments.
const (
	PaymentAuthorized    = "souk.payments.v1.PaymentAuthorized"
	PaymentDeclined      = "souk.payments.v1.PaymentDeclined"
	PaymentCaptured      = "souk.payments.v1.PaymentCaptured"
	PaymentCaptureFailed = "souk.payments.v1.PaymentCaptureFailed"
	PaymentCancelled     = "souk.payments.v1.PaymentCancelled"
)

// Item is a product and how many of it.
type Item struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// OrderPlacedData is the payload of OrderPlaced.
type OrderPlacedData struct {
	OrderID    string      `json:"order_id"`
	CustomerID string      `json:"customer_id"`
	Items      []Item      `json:"items"`
	Total      money.Money `json:"total"`
	Deadline   time.Time   `json:"deadline"`
}

// PaymentRequestedData is the payload of PaymentRequested: the order's
// total, to be paid with a payment method its customer made at payments
// (POST /payment-methods), named by its token. No card number ever travels
// in an event: v1 of this payload carried one, and is neither published nor
// read any more.
type PaymentRequestedData struct {
	OrderID       string      `json:"order_id"`
	CustomerID    string      `json:"customer_id"`
	Amount        money.Money `json:"amount"`
	PaymentMethod string      `json:"payment_method"`
}

// OrderRef is the payload of the requests and answers that need nothing
// but the order.
type OrderRef struct {
	OrderID string `json:"order_id"`
}

// Outcome is the payload of answers that may say why.
type Outcome struct {
	OrderID string `json:"order_id"`
	// Reason says why a step failed (out_of_stock, declined,
	// payment_method_unknown, provider_unavailable, expired, cancelled), or what a compensation did
	// (released, restocked, voided, refunded, nothing).
	Reason    string `json:"reason,omitempty"`
	ProductID string `json:"product_id,omitempty"`
}

// Reasons an order is cancelled.
const (
	ReasonOutOfStock = "out_of_stock"
	ReasonDeclined   = "declined"
	ReasonNoMethod   = "payment_method_unknown" // no such payment method, or another customer's
	ReasonPayment    = "payment_failed"
	ReasonDeadline   = "deadline"
	ReasonCustomer   = "cancelled_by_customer"
	ReasonStock      = "stock_lost"
)

// errNoOrder is the one check every payload has: it names its order.
var errNoOrder = errors.New("no order_id")

// Validate checks what every consumer relies on.
func (d OrderPlacedData) Validate() error {
	switch {
	case d.OrderID == "":
		return errNoOrder
	case len(d.Items) == 0:
		return errors.New("no items")
	}
	for _, it := range d.Items {
		if it.ProductID == "" || it.Quantity < 1 {
			return errors.New("an item without a product or a positive quantity")
		}
	}
	return nil
}

// Validate checks what every consumer relies on.
func (d PaymentRequestedData) Validate() error {
	if d.OrderID == "" {
		return errNoOrder
	}
	if !money.Valid(d.Amount.Amount) || d.Amount.Currency == "" {
		return errors.New("no amount, or one out of range")
	}
	return nil
}

// Validate checks what every consumer relies on.
func (d OrderRef) Validate() error {
	if d.OrderID == "" {
		return errNoOrder
	}
	return nil
}

// Validate checks what every consumer relies on.
func (d Outcome) Validate() error {
	if d.OrderID == "" {
		return errNoOrder
	}
	return nil
}
