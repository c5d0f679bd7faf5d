package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
)

// Service serves the inventory API and answers the order saga.
type Service struct {
	store *Store
	log   *slog.Logger
}

// New returns the service over st.
func New(st *Store, log *slog.Logger) *Service { return &Service{store: st, log: log} }

// Routes registers every route of the inventory API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("GET /inventory/{productId}", s.get)
	rt.Handle("PUT /inventory/{productId}", s.put)
}

// Consumers answer the saga's requests: one consumer per request type.
func (s *Service) Consumers() []events.ConsumerConfig {
	return events.PerType(events.ConsumerConfig{
		Name:   "inventory",
		Stream: events.StreamName("orders"),
		Outbox: s.store.outbox,
		Handlers: map[string]events.Handler{
			saga.OrderPlaced: func(ctx context.Context, tx *sql.Tx, e events.Event) error {
				var d saga.OrderPlacedData
				if err := decode(e, &d); err != nil {
					return err
				}
				return s.store.reserve(ctx, tx, e, d)
			},
			saga.StockCommitRequested: func(ctx context.Context, tx *sql.Tx, e events.Event) error {
				var d saga.OrderRef
				if err := decode(e, &d); err != nil {
					return err
				}
				return s.store.commit(ctx, tx, d)
			},
			saga.StockReleaseRequested: func(ctx context.Context, tx *sql.Tx, e events.Event) error {
				var d saga.OrderRef
				if err := decode(e, &d); err != nil {
					return err
				}
				return s.store.release(ctx, tx, d, Released)
			},
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

// decode reads an event's payload; one that does not parse can never be
// processed, so it goes to the dead letters at once.
func decode(e events.Event, v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return events.Permanent(fmt.Errorf("%s payload: %w", e.Type, err))
	}
	return nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathID(r, "productId")
	if err != nil {
		return err
	}
	st, err := s.store.Get(r.Context(), id)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, st)
	return nil
}

type putRequest struct {
	Available *int64 `json:"available"`
}

func (s *Service) put(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	id, err := server.PathID(r, "productId")
	if err != nil {
		return err
	}
	var req putRequest
	if err := server.Decode(w, r, &req); err != nil {
		return err
	}
	if req.Available == nil {
		return problem.Field("available", "is required")
	}
	st, err := s.store.SetAvailable(r.Context(), id, *req.Available)
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, st)
	return nil
}
