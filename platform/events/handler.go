package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// Handler applies the events of one type. It decodes an event's data
// once, into the type its constructor names (data that does not decode,
// or does not validate, can never be applied: the event goes to the dead
// letters at once); then, for OnAfterCall, does the work that must not
// hold the database; then applies the effect within tx, the transaction
// that also records the event as processed. An error rolls the effect
// back; the event is delivered again later, or dead-lettered at once if
// the error is Permanent.
type Handler struct {
	prepare func(ctx context.Context, e Event) (apply, error)
	// calls says that prepare calls another system, so that a batch runs
	// those calls side by side.
	calls bool
}

// apply is an event decoded and called, if its handler calls: what is left
// is its effect.
type apply func(ctx context.Context, tx *sql.Tx) error

// Validator is data that checks itself once decoded; an error is
// permanent.
type Validator interface{ Validate() error }

// On returns a handler for events whose data is a T.
func On[T any](fn func(ctx context.Context, tx *sql.Tx, e Event, data T) error) Handler {
	return Handler{prepare: func(_ context.Context, e Event) (apply, error) {
		d, err := decodeData[T](e)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, tx *sql.Tx) error { return fn(ctx, tx, e, d) }, nil
	}}
}

// OnAfterCall returns a handler for events whose data is a T, with work
// that must not hold the database: call, a request to another system, runs
// before the transaction, outside it, and fn records what it returned.
// call may run again when the event is delivered again, even for an event
// already applied (the inbox is read inside the transaction), so it must
// be idempotent: by an idempotency key, say.
func OnAfterCall[T, R any](call func(ctx context.Context, e Event, data T) (R, error),
	fn func(ctx context.Context, tx *sql.Tx, e Event, data T, result R) error) Handler {
	return Handler{calls: true, prepare: func(ctx context.Context, e Event) (apply, error) {
		d, err := decodeData[T](e)
		if err != nil {
			return nil, err
		}
		r, err := call(ctx, e, d)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, tx *sql.Tx) error { return fn(ctx, tx, e, d, r) }, nil
	}}
}

// decodeData unmarshals an event's data into a T and validates it if it
// can.
func decodeData[T any](e Event) (T, error) {
	var d T
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return d, Permanent(fmt.Errorf("%s payload: %w", e.Type, err))
	}
	if v, ok := any(&d).(Validator); ok {
		if err := v.Validate(); err != nil {
			return d, Permanent(fmt.Errorf("%s payload: %w", e.Type, err))
		}
	}
	return d, nil
}
