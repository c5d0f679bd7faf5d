package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/store"
)

// Store keeps stock and reservations.
//
// One reader besides the service: souk check (internal/check) reads the
// stock, reservations and reservation_items tables, read-only, to audit the saga across the services'
// databases. A change of those tables' shape is a change for it too.
type Store struct {
	db     *store.DB
	outbox *events.Outbox
	// ttl is how long a reservation waits to be committed.
	ttl time.Duration
}

// NewStore returns a store over db whose reservations expire after ttl.
func NewStore(db *store.DB, outbox *events.Outbox, ttl time.Duration) *Store {
	return &Store{db: db, outbox: outbox, ttl: ttl}
}

// Get returns a product's stock; a product never stocked has none.
func (s *Store) Get(ctx context.Context, productID string) (Stock, error) {
	st := Stock{ProductID: productID}
	err := s.db.QueryRowContext(ctx, `SELECT available, reserved, sold FROM stock WHERE product_id = $1`, productID).
		Scan(&st.Available, &st.Reserved, &st.Sold)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Stock{}, fmt.Errorf("get stock: %w", err)
	}
	return st, nil
}

// SetAvailable sets how many of a product are available to sell, as an
// admin counting the shelves would; what is reserved or sold stays.
func (s *Store) SetAvailable(ctx context.Context, productID string, available int64) (Stock, error) {
	if available < 0 {
		return Stock{}, problem.Field("available", "must not be negative")
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO stock (product_id, available, reserved, sold, received, updated_at) VALUES ($1, $2, 0, 0, $2, $3)
			ON CONFLICT (product_id) DO UPDATE SET
				received = stock.received + ($2 - stock.available), available = $2, updated_at = $3`,
			productID, available, now())
		return err
	})
	if err != nil {
		return Stock{}, fmt.Errorf("set stock: %w", err)
	}
	return s.Get(ctx, productID)
}

// clockSkew is how far the clocks of orders' and inventory's machines may
// disagree: a reservation outlives its order's deadline by that much.
const clockSkew = 5 * time.Second

// reserve handles OrderPlaced: it reserves every item or none, until the
// later of the store's TTL and the order's own deadline, so that no live
// order loses its stock whatever the two services are told.
func (s *Store) reserve(ctx context.Context, tx *sql.Tx, d saga.OrderPlacedData) error {
	status, err := s.reservationStatus(ctx, tx, d.OrderID)
	if err != nil {
		return err
	}
	if status != "" { // a tombstone: the order was cancelled before its stock was asked for
		return s.answer(ctx, tx, saga.ReservationFailed, saga.Outcome{OrderID: d.OrderID, Reason: "cancelled"})
	}
	items := slices.Clone(d.Items)
	// The same order on every reservation keeps two from waiting on each
	// other's rows on PostgreSQL.
	slices.SortFunc(items, func(a, b saga.Item) int { return strings.Compare(a.ProductID, b.ProductID) })
	t := now()
	// With more than one item, a short one undoes those taken before it;
	// a single item's update either takes it or changes nothing.
	undo := len(items) > 1
	if undo {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT reserve`); err != nil {
			return err
		}
	}
	for _, it := range items {
		res, err := tx.ExecContext(ctx,
			`UPDATE stock SET available = available - $1, reserved = reserved + $1, updated_at = $2
			 WHERE product_id = $3 AND available >= $1`, it.Quantity, t, it.ProductID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if undo {
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT reserve`); err != nil {
					return err
				}
			}
			return s.answer(ctx, tx, saga.ReservationFailed, saga.Outcome{OrderID: d.OrderID, Reason: saga.ReasonOutOfStock, ProductID: it.ProductID},
				reservation(d.OrderID, Failed, t, t))
		}
	}
	if undo {
		if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT reserve`); err != nil {
			return err
		}
	}
	expires := t.Add(s.ttl)
	if floor := d.Deadline.Add(clockSkew); floor.After(expires) {
		expires = floor
	}
	args := make([]any, 0, 3*len(items))
	for _, it := range items {
		args = append(args, d.OrderID, it.ProductID, it.Quantity)
	}
	return s.answer(ctx, tx, saga.StockReserved, saga.Outcome{OrderID: d.OrderID},
		reservation(d.OrderID, Reserved, expires, t),
		events.Statement{SQL: `INSERT INTO reservation_items (order_id, product_id, quantity) VALUES ` + store.Values(len(items), 3), Args: args})
}

// commit handles StockCommitRequested: the reserved items are sold.
func (s *Store) commit(ctx context.Context, tx *sql.Tx, d saga.OrderRef) error {
	status, err := s.reservationStatus(ctx, tx, d.OrderID)
	if err != nil {
		return err
	}
	switch status {
	case Committed:
		return s.answer(ctx, tx, saga.StockCommitted, saga.Outcome{OrderID: d.OrderID})
	case Reserved:
	default:
		reason := status
		if reason == "" {
			reason = "no reservation"
		}
		return s.answer(ctx, tx, saga.StockCommitFailed, saga.Outcome{OrderID: d.OrderID, Reason: reason})
	}
	return s.answer(ctx, tx, saga.StockCommitted, saga.Outcome{OrderID: d.OrderID},
		move(d.OrderID, `reserved = reserved - ri.quantity, sold = sold + ri.quantity`), setStatus(d.OrderID, Committed))
}

// release handles StockReleaseRequested, the saga's compensation: reserved
// stock becomes available again, sold stock is put back, and a
// reservation that never came is tombstoned so that it cannot come later.
func (s *Store) release(ctx context.Context, tx *sql.Tx, d saga.OrderRef, final string) error {
	status, err := s.reservationStatus(ctx, tx, d.OrderID)
	if err != nil {
		return err
	}
	released := saga.Outcome{OrderID: d.OrderID, Reason: "nothing"}
	switch status {
	case Reserved:
		released.Reason = "released"
		return s.answer(ctx, tx, saga.StockReleased, released,
			move(d.OrderID, `reserved = reserved - ri.quantity, available = available + ri.quantity`), setStatus(d.OrderID, final))
	case Committed:
		released.Reason = "restocked"
		return s.answer(ctx, tx, saga.StockReleased, released,
			move(d.OrderID, `sold = sold - ri.quantity, available = available + ri.quantity`), setStatus(d.OrderID, final))
	case "":
		t := now()
		return s.answer(ctx, tx, saga.StockReleased, released, reservation(d.OrderID, Tombstone, t, t))
	default: // failed, released, expired, tombstone: nothing is held
		return s.answer(ctx, tx, saga.StockReleased, released)
	}
}

// ExpireReservations releases up to limit reservations past their expiry
// and returns how many it released.
func (s *Store) ExpireReservations(ctx context.Context, limit int) (int, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT order_id FROM reservations WHERE status = 'reserved' AND expires_at < $1 ORDER BY expires_at LIMIT $2`, now(), limit)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		err := s.outbox.Do(ctx, func(tx *sql.Tx) error {
			// Stock first, as every batch of saga requests takes it.
			if err := s.lockStock(ctx, tx, []string{id}, nil); err != nil {
				return err
			}
			// Checked again inside the transaction, with the reservation
			// held: a commit may have won, and a committed sale is not
			// expired (release would restock it).
			status, err := s.reservationStatus(ctx, tx, id)
			if err != nil || status != Reserved {
				return err
			}
			var expires time.Time
			if err := tx.QueryRowContext(ctx, `SELECT expires_at FROM reservations WHERE order_id = $1`, id).Scan(&expires); err != nil {
				return fmt.Errorf("get reservation of %s: %w", id, err)
			}
			if !expires.Before(now()) {
				return nil
			}
			return s.release(ctx, tx, saga.OrderRef{OrderID: id}, Expired)
		})
		if err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// move applies set, in which ri.quantity is an item's quantity, to the
// stock of each item of the order's reservation, in one statement.
func move(orderID, set string) events.Statement {
	return events.Statement{SQL: `UPDATE stock SET ` + set + `, updated_at = $1
		FROM reservation_items ri WHERE ri.order_id = $2 AND stock.product_id = ri.product_id`, Args: []any{now(), orderID}}
}

// reservationStatus reads an order's reservation, "" if it has none, and
// holds it for tx: every change of a reservation decides from its status
// and moves stock by it, so two of them at once (a commit and a release
// from two consumers, the expiry sweep) must take turns, or both move the
// stock. SQLite's transactions take turns anyway; on PostgreSQL the row
// is locked.
func (s *Store) reservationStatus(ctx context.Context, tx *sql.Tx, orderID string) (string, error) {
	q := `SELECT status FROM reservations WHERE order_id = $1`
	if s.db.Dialect == store.Postgres {
		q += ` FOR UPDATE`
	}
	var status string
	err := tx.QueryRowContext(ctx, q, orderID).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reservation of %s: %w", orderID, err)
	}
	return status, nil
}

// reservation inserts an order's reservation.
func reservation(orderID, status string, expires, t time.Time) events.Statement {
	return events.Statement{SQL: `INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`,
		Args: []any{orderID, status, expires, t}}
}

// setStatus moves an order's reservation to status.
func setStatus(orderID, status string) events.Statement {
	return events.Statement{SQL: `UPDATE reservations SET status = $1, updated_at = $2 WHERE order_id = $3`, Args: []any{status, now(), orderID}}
}

// answer makes a change, stmts, and writes the saga's answer to it in tx,
// on PostgreSQL in one statement (Outbox.Change).
func (s *Store) answer(ctx context.Context, tx *sql.Tx, typ string, data saga.Outcome, stmts ...events.Statement) error {
	e, err := events.New(ctx, typ, data.OrderID, data)
	if err != nil {
		return err
	}
	_, err = s.outbox.Change(ctx, tx, []events.Event{e}, stmts...)
	return err
}

// lockStock locks, on PostgreSQL, the stock rows that work on these orders
// will move: the products named, and those reserved for the orders. It
// locks them all at once, in product order, before any reservation: every
// transaction that moves stock for more than one product does so, a batch
// of saga requests as the expiry sweep, so none waits for another in a
// cycle. SQLite's transactions take turns anyway.
func (s *Store) lockStock(ctx context.Context, tx *sql.Tx, orders, products []string) error {
	if s.db.Dialect != store.Postgres {
		return nil
	}
	ids := slices.Clone(products)
	if len(orders) > 0 {
		rows, err := tx.QueryContext(ctx, `SELECT product_id FROM reservation_items WHERE order_id IN (`+placeholders(len(orders))+`)`, anys(orders)...)
		if err != nil {
			return fmt.Errorf("products of the reservations: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT product_id FROM stock WHERE product_id IN (`+placeholders(len(ids))+`) ORDER BY product_id FOR UPDATE`, anys(ids)...)
	if err != nil {
		return fmt.Errorf("lock stock: %w", err)
	}
	rows.Close()
	return rows.Err()
}

// lockBatch is the consumers' Lock: the stock of a batch's orders.
func (s *Store) lockBatch(ctx context.Context, tx *sql.Tx, evs []events.Event) error {
	var orders, products []string
	for _, e := range evs {
		if e.Type == saga.OrderPlaced {
			var d saga.OrderPlacedData
			if json.Unmarshal(e.Data, &d) == nil {
				for _, it := range d.Items {
					products = append(products, it.ProductID)
				}
			}
			continue
		}
		var d saga.OrderRef
		if json.Unmarshal(e.Data, &d) == nil && d.OrderID != "" {
			orders = append(orders, d.OrderID)
		}
	}
	return s.lockStock(ctx, tx, orders, products)
}

// placeholders is "$1, $2, …, $n".
func placeholders(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
	}
	return b.String()
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
