package orders

import (
	"context"
	"database/sql"
	"time"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/events"
)

// Consumers apply inventory's and payments' answers to the orders they
// name, one consumer per answer type.
func (s *Service) Consumers() []events.ConsumerConfig {
	answer := events.On(func(ctx context.Context, tx *sql.Tx, e events.Event, d saga.Outcome) error {
		return s.store.act(ctx, tx, d.OrderID, func(o Order) []step { return decide(o, e.Type, d) })
	})
	handlers := map[string]events.Handler{}
	for _, typ := range []string{
		saga.StockReserved, saga.ReservationFailed, saga.StockCommitted, saga.StockCommitFailed, saga.StockReleased,
		saga.PaymentAuthorized, saga.PaymentDeclined, saga.PaymentCaptured, saga.PaymentCaptureFailed, saga.PaymentCancelled,
	} {
		handlers[typ] = answer
	}
	// Each answer locks and writes its own order only: batches of them
	// share PostgreSQL without deadlocks.
	return events.PerType(events.ConsumerConfig{Name: "orders", Handlers: handlers, Outbox: s.store.outbox, Keyed: true})
}

// RunDeadlines cancels unfinished orders past their deadline, twice a
// second, until ctx ends.
func (s *Service) RunDeadlines(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := s.store.overdue(ctx, 200)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("finding overdue orders", "err", err)
		}
		for _, id := range ids {
			err := s.store.Act(ctx, id, func(o Order) []step {
				if Terminal(o.Status) || time.Now().Before(o.Deadline) {
					return nil
				}
				return cancel(o, saga.ReasonDeadline)
			})
			if err != nil && ctx.Err() == nil {
				s.log.Warn("cancelling an overdue order", "order", id, "err", err)
			}
		}
	}
}
