package orders

import "github.com/souk-shop/souk/api/saga"

// The saga, as orders runs it. Each answer from inventory or payments is
// applied to the order it names, in a transaction that locks the order:
// decide looks at the order's state and returns the next steps.
//
//	placed ──StockReserved──▶ awaiting_payment ──PaymentAuthorized──▶ confirming ──StockCommitted + PaymentCaptured──▶ confirmed
//	  │ReservationFailed            │PaymentDeclined                     │StockCommitFailed / PaymentCaptureFailed
//	  ▼                             ▼                                    ▼
//	cancelled ◀─────── compensations: StockReleaseRequested, PaymentCancelRequested ──────── (also on deadline, or the customer's cancel)
//
// An answer that arrives after the order ended (a late reply) asks again
// for whatever undoes it: releasing or cancelling twice has no second
// effect, so asking again is always safe.

// decide is the saga's transition function.
func decide(o Order, typ string, d saga.Outcome) []step {
	log := step{typ: typ, data: d}
	if Terminal(o.Status) {
		switch typ {
		case saga.StockReserved, saga.StockCommitted:
			if o.Status == Cancelled {
				return []step{log, request(saga.StockReleaseRequested, o.ID)}
			}
		case saga.PaymentAuthorized, saga.PaymentCaptured:
			if o.Status == Cancelled {
				return []step{log, request(saga.PaymentCancelRequested, o.ID)}
			}
		}
		return []step{log}
	}
	switch typ {
	case saga.StockReserved:
		if o.Status == Placed {
			return []step{log, {typ: saga.PaymentRequested, data: saga.PaymentRequestedData{OrderID: o.ID, CustomerID: o.CustomerID, Amount: o.Total, PaymentMethod: o.PaymentMethod}, publish: true}}
		}
	case saga.ReservationFailed:
		if o.Status == Placed {
			reason := saga.ReasonOutOfStock
			if d.Reason != saga.ReasonOutOfStock {
				reason = d.Reason
			}
			return append([]step{log}, cancel(o, reason)...)
		}
	case saga.PaymentAuthorized:
		if o.Status == AwaitingPayment {
			return []step{log, request(saga.StockCommitRequested, o.ID), request(saga.PaymentCaptureRequested, o.ID)}
		}
	case saga.PaymentDeclined:
		if o.Status == AwaitingPayment {
			reason := saga.ReasonPayment
			if d.Reason == saga.ReasonDeclined || d.Reason == saga.ReasonNoMethod {
				reason = d.Reason
			}
			return append([]step{log}, cancel(o, reason)...)
		}
	case saga.StockCommitted:
		if o.Status == Confirming && o.captured {
			return []step{log, confirm(o.ID)}
		}
	case saga.PaymentCaptured:
		if o.Status == Confirming && o.committed {
			return []step{log, confirm(o.ID)}
		}
	case saga.StockCommitFailed:
		if o.Status == Confirming {
			return append([]step{log}, cancel(o, saga.ReasonStock)...)
		}
	case saga.PaymentCaptureFailed:
		if o.Status == Confirming {
			return append([]step{log}, cancel(o, saga.ReasonPayment)...)
		}
	}
	return []step{log}
}

func request(typ, orderID string) step {
	return step{typ: typ, data: saga.OrderRef{OrderID: orderID}, publish: true}
}

func confirm(orderID string) step {
	return step{typ: saga.OrderConfirmed, data: saga.OrderRef{OrderID: orderID}, publish: true}
}

// cancel ends an unfinished order and undoes what may have been done, in
// reverse: the payment, then the stock. Asking to undo what was never done
// is safe, and makes a late request fail.
func cancel(o Order, reason string) []step {
	steps := []step{{typ: saga.OrderCancelled, data: saga.Outcome{OrderID: o.ID, Reason: reason}, publish: true}}
	if o.paymentAsked {
		steps = append(steps, request(saga.PaymentCancelRequested, o.ID))
	}
	if reason != saga.ReasonOutOfStock {
		steps = append(steps, request(saga.StockReleaseRequested, o.ID))
	}
	return steps
}
