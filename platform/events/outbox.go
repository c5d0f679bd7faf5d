package events

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

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

// Statement is one statement of a Change, its parameters numbered from $1.
type Statement struct {
	SQL  string
	Args []any
}

// Change runs stmts, a change of a service's rows, and writes evs, the
// events it implies, within tx, in as few round trips as the engine allows.
// On PostgreSQL that is one statement: a WITH whose data-modifying parts are
// all of stmts but the last, and the outbox's insert, before the last. On
// SQLite, whose statements are calls within the process, stmts run in turn,
// then the events are written. The statements must not change the same
// rows (the parts of a WITH do not see each other's changes). It returns
// the last statement's result.
func (o *Outbox) Change(ctx context.Context, tx *sql.Tx, evs []Event, stmts ...Statement) (sql.Result, error) {
	if len(stmts) == 0 {
		return nil, o.Write(ctx, tx, evs...)
	}
	if o.db.Dialect != store.Postgres || len(evs) > writeChunk {
		var res sql.Result
		for _, st := range stmts {
			var err error
			if res, err = tx.ExecContext(ctx, st.SQL, st.Args...); err != nil {
				return nil, err
			}
		}
		return res, o.Write(ctx, tx, evs...)
	}
	var q strings.Builder
	var args []any
	part := func(name, sql string) {
		if q.Len() == 0 {
			q.WriteString("WITH ")
		} else {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "%s AS (%s)", name, sql)
	}
	for i, st := range stmts[:len(stmts)-1] {
		part(fmt.Sprintf("change%d", i), renumber(st.SQL, len(args)))
		args = append(args, st.Args...)
	}
	if len(evs) > 0 {
		insert, evArgs := OutboxInsert(evs, len(args)+1)
		part("sent", insert)
		args = append(args, evArgs...)
	}
	last := stmts[len(stmts)-1]
	if q.Len() > 0 {
		q.WriteByte(' ')
	}
	q.WriteString(renumber(last.SQL, len(args)))
	return tx.ExecContext(ctx, q.String(), append(args, last.Args...)...)
}

// renumber adds by to the number of every $n parameter of q, which holds
// no $ but in its parameters.
func renumber(q string, by int) string {
	if by == 0 {
		return q
	}
	return parameter.ReplaceAllStringFunc(q, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		return "$" + strconv.Itoa(n+by)
	})
}

var parameter = regexp.MustCompile(`\$[0-9]+`)

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
