package events

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/souk-shop/souk/platform/store"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates the outbox and inbox tables in a service's database. They
// have a version table of their own (<service>_events_schema_version), apart
// from the service's migrations.
func Migrate(ctx context.Context, db *store.DB, service string, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(db.Dialect))
	if err != nil {
		return err
	}
	return db.Migrate(ctx, service+"_events", sub, log)
}

// Outbox is a service's table of events waiting to be published.
type Outbox struct {
	db   *store.DB
	wake chan struct{}
}

// NewOutbox returns the outbox in db, which must be migrated.
func NewOutbox(db *store.DB) *Outbox {
	return &Outbox{db: db, wake: make(chan struct{}, 1)}
}

// Write adds events to the outbox within tx, the transaction that makes the
// change they describe: both commit, or neither does. Call Wake after the
// commit. The rows go in one statement per writeChunk events.
func (o *Outbox) Write(ctx context.Context, tx *sql.Tx, evs ...Event) error {
	for len(evs) > 0 {
		n := min(len(evs), writeChunk)
		if err := o.write(ctx, tx, evs[:n]); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// writeChunk bounds the rows of one insert: 8 parameters a row, well under
// either engine's limit on a statement's parameters.
const writeChunk = 500

func (o *Outbox) write(ctx context.Context, tx *sql.Tx, evs []Event) error {
	q, args := OutboxInsert(evs, 1)
	_, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		if len(evs) == 1 {
			return fmt.Errorf("outbox: write %s: %w", evs[0].Type, err)
		}
		return fmt.Errorf("outbox: write %d events: %w", len(evs), err)
	}
	return nil
}

// OutboxInsert returns the statement that adds evs to the outbox and its
// arguments, numbered from first: for a statement of a service's own that
// writes its rows too, on PostgreSQL as one of a WITH's data-modifying
// parts, so that a change and its events are one round trip. Write is the
// plain way.
func OutboxInsert(evs []Event, first int) (string, []any) {
	args := make([]any, 0, 8*len(evs))
	for _, e := range evs {
		args = append(args, e.ID, e.Type, e.Source, e.Subject, e.Time, []byte(e.Data), e.TraceParent, e.TraceState)
	}
	return `INSERT INTO outbox (id, type, source, subject, time, data, trace_parent, trace_state) VALUES ` +
		store.ValuesFrom(first, len(evs), 8), args
}

// Emit writes an event of type typ about subject, with data as its JSON
// payload and the trace context of ctx, within tx: the one way a service
// publishes an event, from a handler or a request.
func (o *Outbox) Emit(ctx context.Context, tx *sql.Tx, typ, subject string, data any) error {
	e, err := New(ctx, typ, subject, data)
	if err != nil {
		return err
	}
	return o.Write(ctx, tx, e)
}

// Do runs fn in a transaction, in which fn makes its change and Emits the
// events it implies; after the commit it wakes the relay.
func (o *Outbox) Do(ctx context.Context, fn func(tx *sql.Tx) error) error {
	err := o.db.InTx(ctx, fn)
	if err == nil {
		o.Wake()
	}
	return err
}

// Wake tells the relay that events were committed, so it publishes them now
// rather than at its next sweep.
func (o *Outbox) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}
