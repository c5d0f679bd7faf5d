package orders

import (
	"encoding/json"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/api/saga"
)

// Statuses of an order. Confirmed and cancelled are terminal.
const (
	Placed          = "placed"           // waiting for stock
	AwaitingPayment = "awaiting_payment" // stock reserved, payment asked for
	Confirming      = "confirming"       // paid: stock being committed and payment captured
	Confirmed       = "confirmed"
	Cancelled       = "cancelled"
)

// Terminal reports whether status is final.
func Terminal(status string) bool { return status == Confirmed || status == Cancelled }

// Line is an ordered item at the price catalog gave at order time.
type Line struct {
	ProductID string      `json:"product_id"`
	Quantity  int64       `json:"quantity"`
	UnitPrice money.Money `json:"unit_price"`
}

// Order is the state an order's log folds to.
type Order struct {
	ID         string      `json:"id"`
	CustomerID string      `json:"customer_id"`
	Status     string      `json:"status"`
	Reason     string      `json:"reason,omitempty"` // why it was cancelled
	Lines      []Line      `json:"items"`
	Total      money.Money `json:"total"`
	// PaymentMethod is the token of the payment method the order is paid
	// with (payments keeps the card).
	PaymentMethod string    `json:"payment_method"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	Deadline      time.Time `json:"deadline"`

	// What the saga has got so far.
	committed bool
	captured  bool
	// paymentAsked is whether a payment may exist to undo.
	paymentAsked bool
}

// Event is one entry of an order's log.
type Event struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	At   time.Time       `json:"at"`
}

// placedData is the first entry of every log.
type placedData struct {
	CustomerID    string      `json:"customer_id"`
	Lines         []Line      `json:"items"`
	Total         money.Money `json:"total"`
	PaymentMethod string      `json:"payment_method"`
	Deadline      time.Time   `json:"deadline"`
}

// fold replays an order's log.
func fold(id string, log []Event) Order {
	o := Order{ID: id}
	for _, e := range log {
		o.apply(e)
	}
	return o
}

// apply folds one more entry of the log into o.
func (o *Order) apply(e Event) {
	if Terminal(o.Status) {
		return // late replies are logged, but change nothing
	}
	o.UpdatedAt = e.At
	switch e.Type {
	case saga.OrderPlaced:
		var d placedData
		_ = json.Unmarshal(e.Data, &d)
		o.CustomerID, o.Lines, o.Total, o.PaymentMethod, o.Deadline = d.CustomerID, d.Lines, d.Total, d.PaymentMethod, d.Deadline
		o.Status, o.CreatedAt = Placed, e.At
	case saga.StockReserved:
		o.Status, o.paymentAsked = AwaitingPayment, true
	case saga.PaymentAuthorized:
		o.Status = Confirming
	case saga.StockCommitted:
		o.committed = true
	case saga.PaymentCaptured:
		o.captured = true
	case saga.OrderConfirmed:
		o.Status = Confirmed
	case saga.OrderCancelled:
		var d saga.Outcome
		_ = json.Unmarshal(e.Data, &d)
		o.Status, o.Reason = Cancelled, d.Reason
	}
}

// folded is what an order's row keeps of its log: the fold of its entries
// up to Seq, so that the saga reads one row instead of the whole log.
type folded struct {
	Seq          int64 `json:"seq"`
	Order        Order `json:"order"`
	Committed    bool  `json:"committed,omitempty"`
	Captured     bool  `json:"captured,omitempty"`
	PaymentAsked bool  `json:"payment_asked,omitempty"`
}

func foldedOf(o Order, seq int64) folded {
	return folded{Seq: seq, Order: o, Committed: o.committed, Captured: o.captured, PaymentAsked: o.paymentAsked}
}

func (f folded) order() Order {
	o := f.Order
	o.committed, o.captured, o.paymentAsked = f.Committed, f.Captured, f.PaymentAsked
	return o
}
