package orders

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/api/saga"
)

// steps writes decide's answer compactly: each step's type without the
// prefix, with "!" when it is published, and the reason of a cancellation.
func steps(ss []step) string {
	var out []string
	for _, s := range ss {
		name := s.typ[strings.LastIndexByte(s.typ, '.')+1:]
		if s.publish {
			name = "!" + name
		}
		if o, ok := s.data.(saga.Outcome); ok && s.typ == saga.OrderCancelled {
			name += "(" + o.Reason + ")"
		}
		out = append(out, name)
	}
	return strings.Join(out, " ")
}

// TestDecide is the saga's transition table: for each state an order can
// be in and each answer that can reach it, the steps orders takes.
func TestDecide(t *testing.T) {
	placed := Order{ID: "o1", Status: Placed, Total: money.Money{Amount: 998, Currency: "EUR"}}
	awaiting := Order{ID: "o1", Status: AwaitingPayment, paymentAsked: true, Total: placed.Total}
	confirming := Order{ID: "o1", Status: Confirming, paymentAsked: true}
	committed := confirming
	committed.committed = true
	captured := confirming
	captured.captured = true
	confirmed := Order{ID: "o1", Status: Confirmed, paymentAsked: true, committed: true, captured: true}
	cancelledEarly := Order{ID: "o1", Status: Cancelled}
	cancelledPaid := Order{ID: "o1", Status: Cancelled, paymentAsked: true}

	cases := []struct {
		state  string
		o      Order
		typ    string
		reason string
		want   string
	}{
		// The happy path.
		{"placed", placed, saga.StockReserved, "", "StockReserved !PaymentRequested"},
		{"awaiting payment", awaiting, saga.PaymentAuthorized, "", "PaymentAuthorized !StockCommitRequested !PaymentCaptureRequested"},
		{"confirming", confirming, saga.StockCommitted, "", "StockCommitted"},
		{"confirming", confirming, saga.PaymentCaptured, "", "PaymentCaptured"},
		{"confirming, captured", captured, saga.StockCommitted, "", "StockCommitted !OrderConfirmed"},
		{"confirming, committed", committed, saga.PaymentCaptured, "", "PaymentCaptured !OrderConfirmed"},

		// Failures, and what they undo.
		{"placed", placed, saga.ReservationFailed, saga.ReasonOutOfStock, "ReservationFailed !OrderCancelled(out_of_stock)"},
		{"placed", placed, saga.ReservationFailed, "cancelled", "ReservationFailed !OrderCancelled(cancelled) !StockReleaseRequested"},
		{"awaiting payment", awaiting, saga.PaymentDeclined, saga.ReasonDeclined,
			"PaymentDeclined !OrderCancelled(declined) !PaymentCancelRequested !StockReleaseRequested"},
		{"awaiting payment", awaiting, saga.PaymentDeclined, saga.ReasonNoMethod,
			"PaymentDeclined !OrderCancelled(payment_method_unknown) !PaymentCancelRequested !StockReleaseRequested"},
		{"awaiting payment", awaiting, saga.PaymentDeclined, "provider_unavailable",
			"PaymentDeclined !OrderCancelled(payment_failed) !PaymentCancelRequested !StockReleaseRequested"},
		{"confirming", confirming, saga.StockCommitFailed, "expired",
			"StockCommitFailed !OrderCancelled(stock_lost) !PaymentCancelRequested !StockReleaseRequested"},
		{"confirming", confirming, saga.PaymentCaptureFailed, "voided",
			"PaymentCaptureFailed !OrderCancelled(payment_failed) !PaymentCancelRequested !StockReleaseRequested"},

		// Answers that come at the wrong time are logged and change nothing.
		{"placed", placed, saga.PaymentAuthorized, "", "PaymentAuthorized"},
		{"placed", placed, saga.StockCommitted, "", "StockCommitted"},
		{"awaiting payment", awaiting, saga.StockReserved, "", "StockReserved"},
		{"awaiting payment", awaiting, saga.ReservationFailed, saga.ReasonOutOfStock, "ReservationFailed"},
		{"confirming", confirming, saga.PaymentDeclined, saga.ReasonDeclined, "PaymentDeclined"},
		{"placed", placed, saga.StockReleased, "released", "StockReleased"},
		{"confirming", confirming, saga.PaymentCancelled, "voided", "PaymentCancelled"},

		// Late answers to an order that ended: what they did is undone.
		{"cancelled", cancelledEarly, saga.StockReserved, "", "StockReserved !StockReleaseRequested"},
		{"cancelled", cancelledPaid, saga.StockCommitted, "", "StockCommitted !StockReleaseRequested"},
		{"cancelled", cancelledPaid, saga.PaymentAuthorized, "", "PaymentAuthorized !PaymentCancelRequested"},
		{"cancelled", cancelledPaid, saga.PaymentCaptured, "", "PaymentCaptured !PaymentCancelRequested"},
		{"cancelled", cancelledPaid, saga.StockReleased, "released", "StockReleased"},
		{"confirmed", confirmed, saga.StockReserved, "", "StockReserved"},
		{"confirmed", confirmed, saga.PaymentAuthorized, "", "PaymentAuthorized"},
		{"confirmed", confirmed, saga.StockCommitFailed, "expired", "StockCommitFailed"},
	}
	for _, c := range cases {
		got := steps(decide(c.o, c.typ, saga.Outcome{OrderID: "o1", Reason: c.reason}))
		if got != c.want {
			t.Errorf("%s + %s(%s):\n got  %s\n want %s", c.state, c.typ, c.reason, got, c.want)
		}
	}
}

// TestDecidePaymentRequest checks what the payment request carries: the
// order's total, its customer and the payment method it was placed with.
func TestDecidePaymentRequest(t *testing.T) {
	o := Order{ID: "o1", CustomerID: "c1", Status: Placed, Total: money.Money{Amount: 998, Currency: "EUR"}, PaymentMethod: "pm_abc"}
	ss := decide(o, saga.StockReserved, saga.Outcome{OrderID: "o1"})
	want := saga.PaymentRequestedData{OrderID: "o1", CustomerID: "c1", Amount: o.Total, PaymentMethod: "pm_abc"}
	if len(ss) != 2 || ss[1].data != want {
		t.Fatalf("steps %+v, want a PaymentRequested with %+v", ss, want)
	}
}

// TestFold replays logs into states: each entry moves the order as the
// saga says, and nothing moves it once it ended.
func TestFold(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	entry := func(typ string, data any) Event {
		b, _ := json.Marshal(data)
		at = at.Add(time.Second)
		return Event{Type: typ, Data: b, At: at}
	}
	ref := saga.OrderRef{OrderID: "o1"}
	placedEntry := entry(saga.OrderPlaced, placedData{CustomerID: "c1", Lines: []Line{{ProductID: "p1", Quantity: 2}},
		Total: money.Money{Amount: 998, Currency: "EUR"}, Deadline: at.Add(time.Minute)})
	type state struct {
		status, reason               string
		committed, captured, payment bool
	}
	cases := []struct {
		name string
		log  []Event
		want state
	}{
		{"placed", []Event{placedEntry}, state{status: Placed}},
		{"reserved", []Event{placedEntry, entry(saga.StockReserved, ref), entry(saga.PaymentRequested, ref)},
			state{status: AwaitingPayment, payment: true}},
		{"authorized", []Event{placedEntry, entry(saga.StockReserved, ref), entry(saga.PaymentAuthorized, ref)},
			state{status: Confirming, payment: true}},
		{"committed", []Event{placedEntry, entry(saga.StockReserved, ref), entry(saga.PaymentAuthorized, ref), entry(saga.StockCommitted, ref)},
			state{status: Confirming, payment: true, committed: true}},
		{"confirmed", []Event{placedEntry, entry(saga.StockReserved, ref), entry(saga.PaymentAuthorized, ref),
			entry(saga.StockCommitted, ref), entry(saga.PaymentCaptured, ref), entry(saga.OrderConfirmed, ref)},
			state{status: Confirmed, payment: true, committed: true, captured: true}},
		{"out of stock", []Event{placedEntry, entry(saga.ReservationFailed, ref), entry(saga.OrderCancelled, saga.Outcome{OrderID: "o1", Reason: saga.ReasonOutOfStock})},
			state{status: Cancelled, reason: saga.ReasonOutOfStock}},
		{"a late reply after the end changes nothing", []Event{placedEntry, entry(saga.OrderCancelled, saga.Outcome{OrderID: "o1", Reason: saga.ReasonDeadline}),
			entry(saga.StockReserved, ref), entry(saga.PaymentAuthorized, ref)},
			state{status: Cancelled, reason: saga.ReasonDeadline}},
	}
	for _, c := range cases {
		o := fold("o1", c.log)
		got := state{status: o.Status, reason: o.Reason, committed: o.committed, captured: o.captured, payment: o.paymentAsked}
		if got != c.want {
			t.Errorf("%s: folded to %+v, want %+v", c.name, got, c.want)
		}
		if o.CustomerID != "c1" || !slices.Equal(o.Lines, []Line{{ProductID: "p1", Quantity: 2}}) || o.Total.Amount != 998 || !o.CreatedAt.Equal(placedEntry.At) {
			t.Errorf("%s: the placed entry was not read: %+v", c.name, o)
		}
	}
}
