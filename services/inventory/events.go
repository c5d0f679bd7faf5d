package inventory

import (
	"context"
	"database/sql"
	"time"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/events"
)

// Consumers answer the saga's requests: one consumer per request type.
func (s *Service) Consumers() []events.ConsumerConfig {
	return events.PerType(events.ConsumerConfig{
		Name:   "inventory",
		Outbox: s.store.outbox,
		// A request changes its order's reservation, and the stock of its
		// products, which Lock takes first for the whole batch, in product
		// order: batches of them share PostgreSQL without deadlocks.
		Keyed: true,
		Lock:  s.store.lockBatch,
		Handlers: map[string]events.Handler{
			saga.OrderPlaced: events.On(func(ctx context.Context, tx *sql.Tx, _ events.Event, d saga.OrderPlacedData) error {
				return s.store.reserve(ctx, tx, d)
			}),
			saga.StockCommitRequested: events.On(func(ctx context.Context, tx *sql.Tx, _ events.Event, d saga.OrderRef) error {
				return s.store.commit(ctx, tx, d)
			}),
			saga.StockReleaseRequested: events.On(func(ctx context.Context, tx *sql.Tx, _ events.Event, d saga.OrderRef) error {
				return s.store.release(ctx, tx, d, Released)
			}),
		},
	})
}

// RunExpiry releases expired reservations every second until ctx ends.
func (s *Service) RunExpiry(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := s.store.ExpireReservations(ctx, 100)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("expiring reservations", "err", err)
			}
			if n > 0 {
				s.log.Info("reservations expired", "count", n)
			}
			if err != nil || n < 100 {
				break
			}
		}
	}
}
