// Package payments is the payments service: it authorizes, captures,
// voids and refunds the order saga's payments through a Provider, every
// call with an idempotency key. The provider shipped is Simulated.
package payments

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "payments"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the service's goose migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

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
	OrderID   string     `json:"order_id"`
	Status    string     `json:"status"`
	Amount    saga.Money `json:"amount"`
	Reference string     `json:"reference,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// Service serves the payments API and answers the order saga.
type Service struct {
	db       *store.DB
	outbox   *events.Outbox
	provider Provider
	retry    failsafe.Executor[any]
	log      *slog.Logger
}

// New returns the service over db, paying through provider.
func New(db *store.DB, outbox *events.Outbox, provider Provider, log *slog.Logger) *Service {
	policy := retrypolicy.NewBuilder[any]().
		HandleErrors(ErrUnavailable, context.DeadlineExceeded).
		WithMaxRetries(2).
		WithBackoff(50*time.Millisecond, 500*time.Millisecond).
		WithJitterFactor(0.5).
		ReturnLastFailure().
		Build()
	return &Service{db: db, outbox: outbox, provider: provider, retry: failsafe.With(policy), log: log}
}

// Routes registers every route of the payments API.
func (s *Service) Routes(rt *server.Router) {
	rt.Handle("GET /payments/{orderId}", s.get)
}

// call runs a provider call with a timeout per try and up to two retries
// of ErrUnavailable.
func (s *Service) call(ctx context.Context, fn func(context.Context) error) error {
	return s.retry.WithContext(ctx).Run(func() error {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return fn(tctx)
	})
}

// Consumers answer the saga's requests. Provider calls are Calls, made
// before the transaction; the handlers record what they did. Cancellation
// is a compensation: it is retried for as long as the stream keeps it,
// never dead-lettered after five tries.
func (s *Service) Consumers() []events.ConsumerConfig {
	cs := events.PerType(events.ConsumerConfig{
		Name:   "payments",
		Stream: events.StreamName("orders"),
		Outbox: s.outbox,
		Handlers: map[string]events.Handler{
			saga.PaymentRequested:        s.authorized,
			saga.PaymentCaptureRequested: s.captured,
			saga.PaymentCancelRequested:  s.cancelled,
		},
		Calls: map[string]events.Call{
			saga.PaymentRequested:        s.authorize,
			saga.PaymentCaptureRequested: s.capture,
			saga.PaymentCancelRequested:  s.cancel,
		},
	})
	for i := range cs {
		if _, ok := cs[i].Handlers[saga.PaymentCancelRequested]; ok {
			cs[i].MaxDeliver = 1000
		}
	}
	return cs
}

// result is what a Call learned from the provider.
type result struct {
	outcome string // authorized, declined, failed, captured, voided, refunded, nothing, skip
	ref     string
	reason  string
}

func (s *Service) payment(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, orderID string) (Payment, bool, error) {
	p := Payment{OrderID: orderID}
	err := q.QueryRowContext(ctx, `SELECT status, amount, currency, reference, reason, created_at, updated_at FROM payments WHERE order_id = $1`, orderID).
		Scan(&p.Status, &p.Amount.Amount, &p.Amount.Currency, &p.Reference, &p.Reason, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err == nil, err
}

func decode(e events.Event, v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return events.Permanent(fmt.Errorf("%s payload: %w", e.Type, err))
	}
	return nil
}

// authorize asks the provider, unless the payment already has a status
// (a tombstone, or a request delivered again).
func (s *Service) authorize(ctx context.Context, e events.Event) (any, error) {
	var d saga.PaymentRequestedData
	if err := decode(e, &d); err != nil {
		return nil, err
	}
	if _, ok, err := s.payment(ctx, s.db, d.OrderID); err != nil || ok {
		return result{outcome: "skip"}, err
	}
	var ref string
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ref, err = s.provider.Authorize(ctx, "authorize:"+d.OrderID, d.OrderID, d.Amount, d.Card)
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
	return nil, err
}

func (s *Service) authorized(ctx context.Context, tx *sql.Tx, e events.Event) error {
	var d saga.PaymentRequestedData
	if err := decode(e, &d); err != nil {
		return err
	}
	r := events.Called(ctx).(result)
	p, exists, err := s.payment(ctx, tx, d.OrderID)
	if err != nil {
		return err
	}
	switch {
	case r.outcome == "skip" && exists && p.Status == Cancelled:
		return s.reply(ctx, tx, saga.PaymentDeclined, saga.Outcome{OrderID: d.OrderID, Reason: "cancelled"})
	case r.outcome == "skip" && exists:
		return s.answer(ctx, tx, p)
	case r.outcome == "skip":
		return errors.New("payment vanished between the call and the handler")
	}
	t := now()
	status := Authorized
	if r.outcome != "authorized" {
		status = Declined
	}
	// A tombstone written while the provider was answering is replaced: the
	// authorization exists, and orders, already cancelled, will ask for
	// it to be voided.
	_, err = tx.ExecContext(ctx, `
		INSERT INTO payments (order_id, status, amount, currency, reference, reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT (order_id) DO UPDATE SET status = $2, reference = $5, reason = $6, updated_at = $7`,
		d.OrderID, status, d.Amount.Amount, d.Amount.Currency, r.ref, r.reason, t)
	if err != nil {
		return err
	}
	return s.answer(ctx, tx, Payment{OrderID: d.OrderID, Status: status, Reason: r.reason})
}

// answer tells orders where the payment stands.
func (s *Service) answer(ctx context.Context, tx *sql.Tx, p Payment) error {
	switch p.Status {
	case Authorized, Captured:
		return s.reply(ctx, tx, saga.PaymentAuthorized, saga.Outcome{OrderID: p.OrderID})
	default:
		return s.reply(ctx, tx, saga.PaymentDeclined, saga.Outcome{OrderID: p.OrderID, Reason: p.Reason})
	}
}

func (s *Service) capture(ctx context.Context, e events.Event) (any, error) {
	var d saga.OrderRef
	if err := decode(e, &d); err != nil {
		return nil, err
	}
	p, ok, err := s.payment(ctx, s.db, d.OrderID)
	if err != nil {
		return nil, err
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
	return nil, err
}

func (s *Service) captured(ctx context.Context, tx *sql.Tx, e events.Event) error {
	var d saga.OrderRef
	if err := decode(e, &d); err != nil {
		return err
	}
	r := events.Called(ctx).(result)
	if r.outcome != "captured" {
		return s.reply(ctx, tx, saga.PaymentCaptureFailed, saga.Outcome{OrderID: d.OrderID, Reason: r.reason})
	}
	// Only an authorized payment becomes captured: if a cancellation got
	// here first and refunded it, it stays refunded.
	if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3 AND status = $4`,
		Captured, now(), d.OrderID, Authorized); err != nil {
		return err
	}
	return s.reply(ctx, tx, saga.PaymentCaptured, saga.Outcome{OrderID: d.OrderID})
}

// cancel voids an authorization, refunds a capture, or does nothing if
// there is nothing to undo.
func (s *Service) cancel(ctx context.Context, e events.Event) (any, error) {
	var d saga.OrderRef
	if err := decode(e, &d); err != nil {
		return nil, err
	}
	p, ok, err := s.payment(ctx, s.db, d.OrderID)
	if err != nil {
		return nil, err
	}
	if !ok || p.Status == Declined || p.Status == Cancelled {
		return result{outcome: "nothing"}, nil
	}
	if p.Status == Voided || p.Status == Refunded {
		return result{outcome: p.Status}, nil
	}
	refund := func() (any, error) {
		err := s.call(ctx, func(ctx context.Context) error {
			return s.provider.Refund(ctx, "refund:"+d.OrderID, d.OrderID, p.Reference)
		})
		if err != nil {
			return nil, err // tried again on redelivery: a compensation never gives up
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
		return nil, err
	}
	return result{outcome: Voided}, nil
}

func (s *Service) cancelled(ctx context.Context, tx *sql.Tx, e events.Event) error {
	var d saga.OrderRef
	if err := decode(e, &d); err != nil {
		return err
	}
	r := events.Called(ctx).(result)
	t := now()
	switch r.outcome {
	case Voided, Refunded:
		if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3`, r.outcome, t, d.OrderID); err != nil {
			return err
		}
	case "nothing":
		// Nothing to undo; if nothing was ever asked for, a tombstone makes
		// a late authorization request fail.
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO payments (order_id, status, amount, currency, reference, reason, created_at, updated_at) VALUES ($1, $2, 0, '', '', 'cancelled', $3, $3)
			ON CONFLICT (order_id) DO NOTHING`, d.OrderID, Cancelled, t); err != nil {
			return err
		}
	}
	return s.reply(ctx, tx, saga.PaymentCancelled, saga.Outcome{OrderID: d.OrderID, Reason: r.outcome})
}

func (s *Service) reply(ctx context.Context, tx *sql.Tx, typ string, data saga.Outcome) error {
	ev, err := events.New(ctx, typ, data.OrderID, data)
	if err != nil {
		return err
	}
	return s.outbox.Write(ctx, tx, ev)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	if err := auth.FromRequest(r).RequireAdmin(); err != nil {
		return err
	}
	id, err := server.PathID(r, "orderId")
	if err != nil {
		return err
	}
	p, ok, err := s.payment(r.Context(), s.db, id)
	if err != nil {
		return err
	}
	if !ok {
		return problem.New(problem.NotFound, "no payment for order %s", id)
	}
	server.WriteJSON(w, http.StatusOK, p)
	return nil
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
