package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/store"
)

// RelayConfig tunes a Relay; the zero value takes the defaults.
type RelayConfig struct {
	Batch     int           // rows published per round trip; 500
	Sweep     time.Duration // how often to look without being woken; 1s
	Retention time.Duration // how long sent rows stay, for inspection; 1h
	Timeout   time.Duration // for the broker's acks of one batch; 5s
}

func (c *RelayConfig) defaults() {
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Sweep <= 0 {
		c.Sweep = time.Second
	}
	if c.Retention <= 0 {
		c.Retention = time.Hour
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
}

// Relay publishes an outbox's rows to JetStream in order and marks them
// sent. On PostgreSQL, replicas of a service take turns through an advisory
// lock, so only one publishes at a time and the order holds across them.
type Relay struct {
	outbox  *Outbox
	js      jetstream.JetStream
	service string
	cfg     RelayConfig
	log     *slog.Logger

	// afterPublish, if set (by tests), runs after the broker acked a batch
	// and before the rows are marked sent; an error abandons the batch as
	// a crash would.
	afterPublish func() error
}

// NewRelay returns a relay from outbox to js for service.
func NewRelay(outbox *Outbox, js jetstream.JetStream, service string, cfg RelayConfig, log *slog.Logger) *Relay {
	cfg.defaults()
	return &Relay{outbox: outbox, js: js, service: service, cfg: cfg, log: log}
}

// Run publishes until ctx ends: at once when woken, else every sweep.
func (r *Relay) Run(ctx context.Context) {
	sweep := time.NewTicker(r.cfg.Sweep)
	defer sweep.Stop()
	lastPrune := time.Now()
	failing := false
	for {
		_, err := r.Flush(ctx)
		taken := errors.Is(err, ErrTurnTaken)
		switch {
		case taken: // not a failure: another replica relays
		case err != nil && ctx.Err() == nil:
			if !failing { // log the first failure of a run of them, not each
				r.log.Warn("outbox relay failed; retrying every sweep", "err", err)
			}
			failing = true
		case err == nil && failing:
			r.log.Info("outbox relay recovered")
			failing = false
		}
		if time.Since(lastPrune) > r.cfg.Retention/10 {
			r.prune(ctx)
			lastPrune = time.Now()
		}
		if taken {
			// Another replica relays, and may have read the pending rows
			// before this one's commit woke it: look again soon rather
			// than at the next sweep, and not before, however many
			// commits wake this one meanwhile (the turn is likely still
			// taken).
			select {
			case <-ctx.Done():
				return
			case <-time.After(turnRetry):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.outbox.wake:
		case <-sweep.C:
		}
	}
}

// turnRetry is how soon a relay that found another replica's turn looks
// again: a row its service committed meanwhile waits about that long, not
// a sweep, and a contended turn costs a replica at most one empty
// transaction per turnRetry.
const turnRetry = 20 * time.Millisecond

// ErrTurnTaken is Flush's error when another replica holds the turn (on
// PostgreSQL): Flush published nothing more, and rows may be waiting for
// that replica, or for this one's next try.
var ErrTurnTaken = errors.New("another replica is relaying")

// Flush publishes every pending row and returns how many it published. On
// PostgreSQL, if another replica holds the turn when Flush looks, it
// publishes nothing more and says so with an error.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := r.flushBatch(ctx)
		total += n
		if err != nil || n < r.cfg.Batch {
			return total, err
		}
	}
}

type outboxRow struct {
	seq int64
	ev  Event
}

func (r *Relay) flushBatch(ctx context.Context) (int, error) {
	if r.outbox.db.Dialect != store.Postgres {
		// SQLite: no transaction around the publish, which would hold the
		// database's one write lock for its whole duration. Two processes
		// on one file may both publish a row; the broker drops the copy.
		return r.publishPending(ctx, r.outbox.db)
	}
	// PostgreSQL: the transaction holds the replicas' turn, taken by
	// pending, while the batch is published and marked.
	var n int
	err := r.outbox.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = r.publishPending(ctx, tx)
		return err
	})
	return n, err
}

// lockName names the advisory lock that one replica of the service holds
// while it relays; its key is hashed from it and the schema.
func (r *Relay) lockName() string { return "souk-outbox-" + r.service }

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}

func (r *Relay) publishPending(ctx context.Context, q querier) (int, error) {
	rows, mine, err := r.pending(ctx, q)
	if err != nil {
		return 0, err
	}
	if !mine {
		return 0, ErrTurnTaken
	}
	if len(rows) == 0 {
		return 0, nil
	}
	pubCtx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(rows))
	for i, row := range rows {
		f, err := r.js.PublishMsgAsync(row.ev.Msg(), jetstream.WithMsgID(row.ev.ID), jetstream.WithExpectStream(StreamName(r.service)))
		if err != nil {
			futures = futures[:i]
			break
		}
		futures[i] = f
	}
	// Mark the rows the broker acknowledged, up to the first that it did
	// not: the rest go again, in order, next time.
	acked := 0
	var pubErr error
wait:
	for _, f := range futures {
		select {
		case <-f.Ok():
			acked++
		case err := <-f.Err():
			pubErr = err
			break wait
		case <-pubCtx.Done():
			pubErr = fmt.Errorf("waiting for the broker's ack: %w", pubCtx.Err())
			break wait
		}
	}
	if pubErr == nil && acked < len(rows) {
		pubErr = fmt.Errorf("published %d of %d rows", acked, len(rows))
	}
	if acked == 0 {
		return 0, fmt.Errorf("publish to %s: %w", StreamName(r.service), pubErr)
	}
	if r.afterPublish != nil {
		if err := r.afterPublish(); err != nil {
			return 0, err
		}
	}
	if err := r.markSent(ctx, q, rows[:acked]); err != nil {
		return 0, err
	}
	return acked, pubErr
}

// pending reads the rows to publish next, and whether it is this relay's
// turn. On PostgreSQL the same statement takes the replicas' turn, an
// advisory lock held until the transaction ends; if another replica holds
// it, the statement returns one row of seq 0 (real rows start at 1) and
// nothing else. The lock's key names the outbox's schema too: advisory
// locks are the database's, and deployments kept apart by schema (as tests,
// benchmarks and souk chaos do) must not relay in turns.
//
// The same statement has the transaction commit without waiting for its
// WAL to reach the disk (synchronous_commit off, for this transaction
// only): all it changes is which rows are marked sent, and a mark lost
// with the last moments before a crash only sends its rows again, which
// the broker drops as copies (Nats-Msg-Id) and the consumers' inboxes
// after that. It spares PostgreSQL a flush it would wait for each time a
// relay publishes.
func (r *Relay) pending(ctx context.Context, q querier) (rows []outboxRow, mine bool, err error) {
	const columns = `seq, id, type, source, subject, time, data, trace_parent, trace_state`
	query := `SELECT ` + columns + ` FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1`
	args := []any{r.cfg.Batch}
	if r.outbox.db.Dialect == store.Postgres {
		// A CTE with a volatile function is evaluated once, not inlined.
		query = `WITH turn AS (SELECT pg_try_advisory_xact_lock(hashtextextended($2 || '.' || current_schema(), 0)) AS mine,
				set_config('synchronous_commit', 'off', true) AS sync)
			(SELECT ` + columns + ` FROM outbox, turn WHERE turn.mine AND sent_at IS NULL ORDER BY seq LIMIT $1)
			UNION ALL
			SELECT 0, '', '', '', '', now()::timestamp, ''::bytea, '', '' FROM turn WHERE NOT turn.mine`
		args = append(args, r.lockName())
	}
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, false, fmt.Errorf("outbox: read pending: %w", err)
	}
	defer rs.Close()
	var out []outboxRow
	for rs.Next() {
		var row outboxRow
		e := &row.ev
		var data []byte
		if err := rs.Scan(&row.seq, &e.ID, &e.Type, &e.Source, &e.Subject, &e.Time, &data, &e.TraceParent, &e.TraceState); err != nil {
			return nil, false, fmt.Errorf("outbox: read pending: %w", err)
		}
		if row.seq == 0 {
			return nil, false, rs.Err()
		}
		e.Time = e.Time.UTC()
		e.Data = data
		out = append(out, row)
	}
	return out, true, rs.Err()
}

func (r *Relay) markSent(ctx context.Context, q querier, rows []outboxRow) error {
	args := make([]any, 0, len(rows)+1)
	args = append(args, time.Now().UTC())
	var in strings.Builder
	for i, row := range rows {
		if i > 0 {
			in.WriteByte(',')
		}
		fmt.Fprintf(&in, "$%d", i+2)
		args = append(args, row.seq)
	}
	_, err := q.ExecContext(ctx, `UPDATE outbox SET sent_at = $1 WHERE seq IN (`+in.String()+`)`, args...)
	if err != nil {
		return fmt.Errorf("outbox: mark sent: %w", err)
	}
	return nil
}

// prune deletes rows sent longer ago than the retention.
func (r *Relay) prune(ctx context.Context) {
	cutoff := time.Now().UTC().Add(-r.cfg.Retention)
	if _, err := r.outbox.db.ExecContext(ctx, `DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1`, cutoff); err != nil && ctx.Err() == nil {
		r.log.Warn("outbox: prune sent rows", "err", err)
	}
}
