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
func record(orderID, status string, amount money.Money, ref, reason string, t time.Time) events.Statement {
	return events.Statement{SQL: `
		INSERT INTO payments (order_id, status, amount, currency, reference, reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT (order_id) DO UPDATE SET status = $2, reference = $5, reason = $6, updated_at = $7`,
		Args: []any{orderID, status, amount.Amount, amount.Currency, ref, reason, t}}
}

// setStatus moves a payment to status; if from is not empty, only a
// payment in status from moves.
func setStatus(orderID, status, from string, t time.Time) events.Statement {
	st := events.Statement{SQL: `UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3`, Args: []any{status, t, orderID}}
	if from != "" {
		st.SQL, st.Args = st.SQL+` AND status = $4`, append(st.Args, from)
	}
	return st
}

// tombstone marks an order's payment cancelled before it was ever asked
// for, so that a late authorization request fails; an existing payment
// stays.
func tombstone(orderID string, t time.Time) events.Statement {
	return events.Statement{SQL: `
		INSERT INTO payments (order_id, status, amount, currency, reference, reason, created_at, updated_at) VALUES ($1, $2, 0, '', '', 'cancelled', $3, $3)
		ON CONFLICT (order_id) DO NOTHING`, Args: []any{orderID, Cancelled, t}}
}

// AddMethod keeps a payment method, its card sealed.
func (s *Store) AddMethod(ctx context.Context, m Method, sealedCard string) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO payment_methods (token, customer_id, brand, last4, card, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		m.Token, m.CustomerID, m.Brand, m.Last4, sealedCard, m.CreatedAt)
	if err != nil {
		return fmt.Errorf("add a payment method: %w", err)
	}
	return nil
}

// Methods lists a customer's payment methods, newest first.
func (s *Store) Methods(ctx context.Context, customerID string) ([]Method, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT token, brand, last4, created_at FROM payment_methods WHERE customer_id = $1 ORDER BY created_at DESC, token`, customerID)
	if err != nil {
		return nil, fmt.Errorf("list payment methods: %w", err)
	}
	defer rows.Close()
	ms := []Method{}
	for rows.Next() {
		m := Method{CustomerID: customerID}
		if err := rows.Scan(&m.Token, &m.Brand, &m.Last4, &m.CreatedAt); err != nil {
			return nil, fmt.Errorf("list payment methods: %w", err)
		}
		m.CreatedAt = m.CreatedAt.UTC()
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// CountMethods is how many payment methods a customer has.
func (s *Store) CountMethods(ctx context.Context, customerID string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payment_methods WHERE customer_id = $1`, customerID).Scan(&n)
	return n, err
}

// DeleteMethod removes a payment method of customerID (of anyone's, if
// customerID is empty) and reports whether there was one.
func (s *Store) DeleteMethod(ctx context.Context, token, customerID string) (bool, error) {
	q, args := `DELETE FROM payment_methods WHERE token = $1`, []any{token}
	if customerID != "" {
		q, args = q+` AND customer_id = $2`, append(args, customerID)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("delete a payment method: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// sealedCard returns a payment method's customer and its card, sealed.
func (s *Store) sealedCard(ctx context.Context, token string) (customerID, sealed string, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT customer_id, card FROM payment_methods WHERE token = $1`, token).Scan(&customerID, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("read a payment method: %w", err)
	}
	return customerID, sealed, true, nil
}
