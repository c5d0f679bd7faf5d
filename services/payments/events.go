package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/events"
)

// Consumers answer the saga's requests. Provider calls are made before the
// transaction (events.OnAfterCall); the handlers record what they did.
// Cancellation is a compensation: it is retried for as long as the stream
// keeps it, never dead-lettered after five tries.
func (s *Service) Consumers() []events.ConsumerConfig {
	cs := events.PerType(events.ConsumerConfig{
		Name:   "payments",
		Outbox: s.store.outbox,
		// Each request touches its own order's payment and provider
		// operations only: batches of them share PostgreSQL without
		// deadlocks.
		Keyed: true,
		Handlers: map[string]events.Handler{
			saga.PaymentRequested:        events.OnAfterCall(s.authorize, s.authorized),
			saga.PaymentCaptureRequested: events.OnAfterCall(s.capture, s.captured),
			saga.PaymentCancelRequested:  events.OnAfterCall(s.cancel, s.cancelled),
		},
	})
	for i := range cs {
		if _, ok := cs[i].Handlers[saga.PaymentCancelRequested]; ok {
			cs[i].MaxDeliver = 1000
		}
	}
	return cs
}

// authorize asks the provider, unless the payment already has a status
// (a tombstone, or a request delivered again).
func (s *Service) authorize(ctx context.Context, _ events.Event, d saga.PaymentRequestedData) (result, error) {
	if _, ok, err := s.store.Get(ctx, d.OrderID); err != nil || ok {
		return result{outcome: "skip"}, err
	}
	card, err := s.card(ctx, d.PaymentMethod, d.CustomerID)
	if errors.Is(err, errNoMethod) {
		return result{outcome: "declined", reason: saga.ReasonNoMethod}, nil
	}
	if err != nil {
		return result{}, err
	}
	var ref string
	err = s.call(ctx, func(ctx context.Context) error {
		var err error
		ref, err = s.provider.Authorize(ctx, "authorize:"+d.OrderID, d.OrderID, d.Amount, card)
		return err
	})
	switch {
	case err == nil:
		return result{outcome: "authorized", ref: ref}, nil
	case errors.Is(err, ErrDeclined):
		return result{outcome: "declined", reason: saga.ReasonDeclined}, nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return result{outcome: "declined", reason: "provider_unavailable"}, nil
	}
	return result{}, err
}

func (s *Service) authorized(ctx context.Context, tx *sql.Tx, _ events.Event, d saga.PaymentRequestedData, r result) error {
	if r.outcome == "skip" { // the payment had a status already: say it again
		p, exists, err := get(ctx, tx, d.OrderID)
		switch {
		case err != nil:
			return err
		case !exists:
			return errors.New("payment vanished between the call and the handler")
		case p.Status == Cancelled:
			return s.reply(ctx, tx, saga.PaymentDeclined, saga.Outcome{OrderID: d.OrderID, Reason: "cancelled"})
		}
		return s.answer(ctx, tx, p)
	}
	status := Authorized
	if r.outcome != "authorized" {
		status = Declined
	}
	return s.answer(ctx, tx, Payment{OrderID: d.OrderID, Status: status, Reason: r.reason},
		record(d.OrderID, status, d.Amount, r.ref, r.reason, now()))
}

// answer tells orders where the payment stands, after the change stmts.
func (s *Service) answer(ctx context.Context, tx *sql.Tx, p Payment, stmts ...events.Statement) error {
	switch p.Status {
	case Authorized, Captured:
		return s.reply(ctx, tx, saga.PaymentAuthorized, saga.Outcome{OrderID: p.OrderID}, stmts...)
	default:
		return s.reply(ctx, tx, saga.PaymentDeclined, saga.Outcome{OrderID: p.OrderID, Reason: p.Reason}, stmts...)
	}
}

func (s *Service) capture(ctx context.Context, _ events.Event, d saga.OrderRef) (result, error) {
	p, ok, err := s.store.Get(ctx, d.OrderID)
	if err != nil {
		return result{}, err
	}
	switch {
	case !ok:
		return result{outcome: "failed", reason: "not authorized"}, nil
	case p.Status == Captured || p.Status == Refunded:
		return result{outcome: "captured"}, nil
	case p.Status != Authorized:
		return result{outcome: "failed", reason: p.Status}, nil
	}
	err = s.call(ctx, func(ctx context.Context) error {
		return s.provider.Capture(ctx, "capture:"+d.OrderID, d.OrderID, p.Reference)
	})
	switch {
	case err == nil:
		return result{outcome: "captured"}, nil
	case errors.Is(err, ErrVoided):
		return result{outcome: "failed", reason: Voided}, nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return result{outcome: "failed", reason: "provider_unavailable"}, nil
	}
	return result{}, err
}

func (s *Service) captured(ctx context.Context, tx *sql.Tx, _ events.Event, d saga.OrderRef, r result) error {
	if r.outcome != "captured" {
		return s.reply(ctx, tx, saga.PaymentCaptureFailed, saga.Outcome{OrderID: d.OrderID, Reason: r.reason})
	}
	// Only an authorized payment becomes captured: if a cancellation got
	// here first and refunded it, it stays refunded.
	return s.reply(ctx, tx, saga.PaymentCaptured, saga.Outcome{OrderID: d.OrderID}, setStatus(d.OrderID, Captured, Authorized, now()))
}

// cancel voids an authorization, refunds a capture, or does nothing if
// there is nothing to undo.
func (s *Service) cancel(ctx context.Context, _ events.Event, d saga.OrderRef) (result, error) {
	p, ok, err := s.store.Get(ctx, d.OrderID)
	if err != nil {
		return result{}, err
	}
	if !ok || p.Status == Declined || p.Status == Cancelled {
		return result{outcome: "nothing"}, nil
	}
	if p.Status == Voided || p.Status == Refunded {
		return result{outcome: p.Status}, nil
	}
	refund := func() (result, error) {
		err := s.call(ctx, func(ctx context.Context) error {
			return s.provider.Refund(ctx, "refund:"+d.OrderID, d.OrderID, p.Reference)
		})
		if err != nil {
			return result{}, err // tried again on redelivery: a compensation never gives up
		}
		return result{outcome: Refunded}, nil
	}
	if p.Status == Captured {
		return refund()
	}
	err = s.call(ctx, func(ctx context.Context) error {
		return s.provider.Void(ctx, "void:"+d.OrderID, d.OrderID, p.Reference)
	})
	if errors.Is(err, ErrCaptured) { // a capture got there first
		return refund()
	}
	if err != nil {
		return result{}, err
	}
	return result{outcome: Voided}, nil
}

func (s *Service) cancelled(ctx context.Context, tx *sql.Tx, _ events.Event, d saga.OrderRef, r result) error {
	var change []events.Statement
	switch r.outcome {
	case Voided, Refunded:
		change = append(change, setStatus(d.OrderID, r.outcome, "", now()))
	case "nothing":
		// Nothing to undo; if nothing was ever asked for, a tombstone makes
		// a late authorization request fail.
		change = append(change, tombstone(d.OrderID, now()))
	}
	return s.reply(ctx, tx, saga.PaymentCancelled, saga.Outcome{OrderID: d.OrderID, Reason: r.outcome}, change...)
}

// reply makes a change, stmts, and writes the saga's answer to it in tx,
// on PostgreSQL in one statement (Outbox.Change).
func (s *Service) reply(ctx context.Context, tx *sql.Tx, typ string, data saga.Outcome, stmts ...events.Statement) error {
	e, err := events.New(ctx, typ, data.OrderID, data)
	if err != nil {
		return err
	}
	if _, err := s.store.outbox.Change(ctx, tx, []events.Event{e}, stmts...); err != nil {
		return fmt.Errorf("payment of %s: %w", data.OrderID, err)
	}
	return nil
}
