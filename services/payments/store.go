package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/store"
)

// Store keeps payments, one per order.
//
// One reader besides the service: souk check (internal/check) reads the
// payments and simulated_provider_operations tables, read-only, to audit the saga across the services'
// databases. A change of those tables' shape is a change for it too.
type Store struct {
	db     *store.DB
	outbox *events.Outbox
}

// NewStore returns a store over db, publishing through outbox.
func NewStore(db *store.DB, outbox *events.Outbox) *Store { return &Store{db: db, outbox: outbox} }

// querier is a database or a transaction.
type querier interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// Get returns an order's payment, reading outside any transaction.
func (s *Store) Get(ctx context.Context, orderID string) (Payment, bool, error) {
	return get(ctx, s.db, orderID)
}

func get(ctx context.Context, q querier, orderID string) (Payment, bool, error) {
	p := Payment{OrderID: orderID}
	err := q.QueryRowContext(ctx, `SELECT status, amount, currency, reference, reason, created_at, updated_at FROM payments WHERE order_id = $1`, orderID).
		Scan(&p.Status, &p.Amount.Amount, &p.Amount.Currency, &p.Reference, &p.Reason, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("get payment of %s: %w", orderID, err)
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, true, nil
}

// record writes the outcome of an authorization. A tombstone written while
// the provider was answering is replaced: the authorization exists, and
// orders, already cancelled, will ask for it to be voided.
func record(ctx context.Context, tx *sql.Tx, orderID, status string, amount money.Money, ref, reason string, t time.Time) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO payments (order_id, status, amount, currency, reference, reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT (order_id) DO UPDATE SET status = $2, reference = $5, reason = $6, updated_at = $7`,
		orderID, status, amount.Amount, amount.Currency, ref, reason, t)
	if err != nil {
		return fmt.Errorf("record the authorization of %s: %w", orderID, err)
	}
	return nil
}

// setStatus moves a payment to status; if from is not empty, only a
// payment in status from moves.
func setStatus(ctx context.Context, tx *sql.Tx, orderID, status, from string, t time.Time) error {
	q, args := `UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3`, []any{status, t, orderID}
	if from != "" {
		q, args = q+` AND status = $4`, append(args, from)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("set payment of %s %s: %w", orderID, status, err)
	}
	return nil
}

// tombstone marks an order's payment cancelled before it was ever asked
// for, so that a late authorization request fails; an existing payment
// stays.
func tombstone(ctx context.Context, tx *sql.Tx, orderID string, t time.Time) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO payments (order_id, status, amount, currency, reference, reason, created_at, updated_at) VALUES ($1, $2, 0, '', '', 'cancelled', $3, $3)
		ON CONFLICT (order_id) DO NOTHING`, orderID, Cancelled, t)
	if err != nil {
		return fmt.Errorf("tombstone the payment of %s: %w", orderID, err)
	}
	return nil
}
