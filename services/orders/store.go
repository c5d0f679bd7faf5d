package orders

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/store"
)

// Store keeps orders as logs of events.
//
// One reader besides the service: souk check (internal/check) reads the
// orders and order_events tables, read-only, to audit the saga across the services'
// databases. A change of those tables' shape is a change for it too.
type Store struct {
	db     *store.DB
	outbox *events.Outbox
}

// NewStore returns a store over db, publishing through outbox.
func NewStore(db *store.DB, outbox *events.Outbox) *Store { return &Store{db: db, outbox: outbox} }

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// ErrKeyReused means an Idempotency-Key came back with another request.
var ErrKeyReused = problem.New(problem.Unprocessable, "this Idempotency-Key was used for a different request")

// existing returns the order a customer placed with key, if any, and the
// hash of the request that placed it.
func (s *Store) existing(ctx context.Context, customerID, key string) (id, hash string, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT id, request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2`,
		customerID, key).Scan(&id, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	return id, hash, err
}

// Place stores a new order and publishes OrderPlaced, which starts the
// saga. If the customer already placed an order with key, it returns that
// order, or ErrKeyReused if that order came from another request.
func (s *Store) Place(ctx context.Context, o Order, key, hash string) (Order, bool, error) {
	data, err := json.Marshal(placedData{CustomerID: o.CustomerID, Lines: o.Lines, Total: o.Total, PaymentMethod: o.PaymentMethod, Deadline: o.Deadline})
	if err != nil {
		return Order{}, false, err
	}
	first := Event{Seq: 1, Type: saga.OrderPlaced, Data: data, At: o.CreatedAt}
	placed := Order{ID: o.ID}
	placed.apply(first)
	state, err := json.Marshal(foldedOf(placed, first.Seq))
	if err != nil {
		return Order{}, false, err
	}
	items := make([]saga.Item, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = saga.Item{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	ev, err := events.New(ctx, saga.OrderPlaced, o.ID, saga.OrderPlacedData{
		OrderID: o.ID, CustomerID: o.CustomerID, Items: items, Total: o.Total, Deadline: o.Deadline,
	})
	if err != nil {
		return Order{}, false, err
	}
	err = s.outbox.Do(ctx, func(tx *sql.Tx) error {
		// A unique violation is checked below.
		return s.write(ctx, tx, o.ID, []Event{first}, []events.Event{ev}, `
			INSERT INTO orders (id, customer_id, idempotency_key, request_hash, status, deadline_at, created_at, state)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			o.ID, o.CustomerID, key, hash, Placed, o.Deadline, o.CreatedAt, string(state))
	})
	if store.IsUniqueViolation(err) { // the same key, at the same time
		id, prev, err := s.existing(ctx, o.CustomerID, key)
		if err != nil {
			return Order{}, false, err
		}
		if prev != hash {
			return Order{}, false, ErrKeyReused
		}
		got, _, err := s.Load(ctx, id)
		return got, false, err
	}
	if err != nil {
		return Order{}, false, fmt.Errorf("place order: %w", err)
	}
	return placed, true, nil
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// Load returns an order's state and its log.
func (s *Store) Load(ctx context.Context, id string) (Order, []Event, error) {
	return load(ctx, s.db, id)
}

func load(ctx context.Context, q querier, id string) (Order, []Event, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, type, data, at FROM order_events WHERE order_id = $1 ORDER BY seq`, id)
	if err != nil {
		return Order{}, nil, err
	}
	defer rows.Close()
	var log []Event
	for rows.Next() {
		var e Event
		var data string
		if err := rows.Scan(&e.Seq, &e.Type, &data, &e.At); err != nil {
			return Order{}, nil, err
		}
		e.Data, e.At = json.RawMessage(data), e.At.UTC()
		log = append(log, e)
	}
	if err := rows.Err(); err != nil {
		return Order{}, nil, err
	}
	if len(log) == 0 {
		return Order{}, nil, problem.New(problem.NotFound, "order %s not found", id)
	}
	return fold(id, log), log, nil
}

// step is one thing the saga does to an order: an entry in its log and,
// for orders' own events, a message to the other services.
type step struct {
	typ     string
	data    any
	publish bool
}

// act locks an order's row inside tx against its other writers, lets
// decide choose the steps from the state the row keeps, and appends them
// to the log, publishes those that go out and writes the new state: on
// PostgreSQL two statements, whatever the log's length.
func (s *Store) act(ctx context.Context, tx *sql.Tx, id string, decide func(Order) []step) error {
	lock := `SELECT state FROM orders WHERE id = $1`
	if s.db.Dialect == store.Postgres {
		lock += ` FOR UPDATE` // replies about one order are applied one at a time
	}
	var state string
	if err := tx.QueryRowContext(ctx, lock, id).Scan(&state); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return events.Permanent(fmt.Errorf("no order %s", id))
		}
		return err
	}
	var f folded
	if state == "" { // written before orders kept their state: fold the log
		o, log, err := load(ctx, tx, id)
		if err != nil {
			return err
		}
		f = foldedOf(o, log[len(log)-1].Seq)
	} else if err := json.Unmarshal([]byte(state), &f); err != nil {
		return fmt.Errorf("order %s: reading its state: %w", id, err)
	}
	o := f.order()
	steps := decide(o)
	if len(steps) == 0 {
		return nil
	}
	t := now()
	entries := make([]Event, len(steps))
	var out []events.Event
	for i, st := range steps {
		b, err := json.Marshal(st.data)
		if err != nil {
			return err
		}
		entries[i] = Event{Seq: f.Seq + int64(i) + 1, Type: st.typ, Data: b, At: t}
		o.apply(entries[i])
		if st.publish {
			e, err := events.New(ctx, st.typ, id, json.RawMessage(b)) // marshalled once, for the log
			if err != nil {
				return err
			}
			out = append(out, e)
		}
	}
	// The status column follows the state, for the deadline sweep.
	after, err := json.Marshal(foldedOf(o, entries[len(entries)-1].Seq))
	if err != nil {
		return err
	}
	return s.write(ctx, tx, id, entries, out, `UPDATE orders SET status = $1, state = $2 WHERE id = $3`, o.Status, string(after), id)
}

// write makes a change of an order: row, a statement on its row with
// rowArgs as $1…, then entries appended to its log and out to the outbox,
// on PostgreSQL in one statement (Outbox.Change).
func (s *Store) write(ctx context.Context, tx *sql.Tx, id string, entries []Event, out []events.Event, row string, rowArgs ...any) error {
	logArgs := make([]any, 0, 5*len(entries))
	for _, e := range entries {
		logArgs = append(logArgs, id, e.Seq, e.Type, string(e.Data), e.At)
	}
	_, err := s.outbox.Change(ctx, tx, out,
		events.Statement{SQL: row, Args: rowArgs},
		events.Statement{SQL: `INSERT INTO order_events (order_id, seq, type, data, at) VALUES ` + store.Values(len(entries), 5), Args: logArgs})
	return err
}

// Act applies decide to an order in a transaction of its own.
func (s *Store) Act(ctx context.Context, id string, decide func(Order) []step) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error { return s.act(ctx, tx, id, decide) })
}

// overdue lists up to limit unfinished orders past their deadline.
func (s *Store) overdue(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id FROM orders WHERE status NOT IN ('confirmed', 'cancelled') AND deadline_at < $1 ORDER BY deadline_at LIMIT $2`, now(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// List returns up to limit orders, newest first, placed before the order
// before ("" for the newest): the customer's, or everyone's if customerID
// is "". Their logs are read in one query.
func (s *Store) List(ctx context.Context, customerID, before string, limit int) ([]Order, error) {
	q := `SELECT id FROM orders WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3`
	rows, err := s.db.QueryContext(ctx, q, customerID, before, limit)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return []Order{}, err
	}
	args := make([]any, len(ids))
	marks := make([]string, len(ids))
	for i, id := range ids {
		args[i], marks[i] = id, fmt.Sprintf("$%d", i+1)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT order_id, seq, type, data, at FROM order_events WHERE order_id IN (`+
		strings.Join(marks, ", ")+`) ORDER BY order_id, seq`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	logs := map[string][]Event{}
	for rows.Next() {
		var id, data string
		var e Event
		if err := rows.Scan(&id, &e.Seq, &e.Type, &data, &e.At); err != nil {
			return nil, err
		}
		e.Data, e.At = json.RawMessage(data), e.At.UTC()
		logs[id] = append(logs[id], e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Order, 0, len(ids))
	for _, id := range ids {
		if log := logs[id]; len(log) > 0 {
			out = append(out, fold(id, log))
		}
	}
	return out, nil
}
