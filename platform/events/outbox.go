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
// commit.
func (o *Outbox) Write(ctx context.Context, tx *sql.Tx, evs ...Event) error {
	for _, e := range evs {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO outbox (id, type, source, subject, time, data, trace_parent, trace_state)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.ID, e.Type, e.Source, e.Subject, e.Time, []byte(e.Data), e.TraceParent, e.TraceState)
		if err != nil {
			return fmt.Errorf("outbox: write %s: %w", e.Type, err)
		}
	}
	return nil
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
