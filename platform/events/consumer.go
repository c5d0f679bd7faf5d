package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/store"
)

// permanent marks an error that no redelivery can fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent marks err as one that retrying cannot fix (a payload the
// handler cannot parse, say): the event goes to the dead-letter stream at
// once.
func Permanent(err error) error { return permanent{err} }

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	// Name is the durable consumer's name and the consumer's key in the
	// inbox: two consumers never share one.
	Name string
	// Handlers maps each event type the consumer processes to its
	// handler (On, OnAfterCall). The types are one service's: the
	// consumer reads that service's stream.
	Handlers map[string]Handler
	// Outbox, if the handlers write events to it, is woken after each
	// commit so that the answers go out at once.
	Outbox *Outbox
	// Tracer records a span per event handled, a child of the span that
	// wrote the event (its trace context travels in the event).
	Tracer trace.Tracer
	// Metrics, if set, count what the consumer does.
	Metrics *ConsumerMetrics
	// Subjects filters what the consumer receives; by default exactly the
	// handlers' types. A wider filter (souk.users.>) makes events of types
	// without a handler arrive, and they are dead-lettered as unknown.
	Subjects []string
	// MaxDeliver is how many times an event is tried before it is
	// dead-lettered; 5.
	MaxDeliver int
	// Backoff is the wait before the nth redelivery after a failure (the
	// last entry repeats); 100ms, 1s, 5s, 30s.
	Backoff []time.Duration
	// AckWait is how long the broker waits for an ack before it delivers
	// again: how soon the events a consumer held when it died go to
	// another; 5s. Events the consumer holds longer, waiting in its buffer
	// or in slow work, are kept from redelivery by progress acks.
	AckWait time.Duration
	// Batch is how many events at most share one database transaction.
	// By default 256 on SQLite, where one writer at a time is the rule
	// anyway. On PostgreSQL consumers run their transactions side by side,
	// a batch takes its row locks in the order of its events, and two
	// batches that lock the same rows in different orders deadlock
	// (PostgreSQL breaks the tie after a second): there the default is 256
	// for a Keyed consumer, whose batches lock in one order, and 1 for the
	// others.
	Batch int
	// Keyed says that each handler writes only rows of the aggregate its
	// event's subject names (the order an answer is about, say) and locks
	// none of another's, but for what Lock locks first. A keyed consumer
	// applies a batch in the order of its subjects (each subject's events
	// in the order they came), so every keyed batch, of any consumer, takes
	// its row locks in one order and none waits for another in a cycle.
	Keyed bool
	// Lock, if set, runs first in each batch's transaction: it locks the
	// rows the batch's handlers will change beyond their subjects' own (the
	// products an order reserves, say), all at once and in one global
	// order (SELECT … ORDER BY key FOR UPDATE), so that a keyed consumer
	// whose handlers share such rows can batch on PostgreSQL too.
	Lock func(ctx context.Context, tx *sql.Tx, evs []Event) error
	// InboxRetention is how long processed ids are kept; 35 days. It must
	// outlast any way an event can come back: the stream's max age (7
	// days) and a replay from the dead letters (kept 30 days).
	InboxRetention time.Duration
}

// Producer is the service whose events the consumer handles, from the
// handlers' types: the consumer reads its stream.
func (c ConsumerConfig) Producer() (string, error) {
	producer := ""
	for typ := range c.Handlers {
		service, _, err := parseType(typ)
		if err != nil {
			return "", fmt.Errorf("consumer %s: %w", c.Name, err)
		}
		if producer != "" && service != producer {
			return "", fmt.Errorf("consumer %s handles events of %s and of %s: one consumer reads one service's stream", c.Name, producer, service)
		}
		producer = service
	}
	if producer == "" {
		return "", fmt.Errorf("consumer %s has no handlers", c.Name)
	}
	return producer, nil
}

func (c *ConsumerConfig) defaults(dialect store.Dialect) {
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second}
	}
	if c.AckWait <= 0 {
		c.AckWait = 5 * time.Second
	}
	if c.Batch <= 0 {
		c.Batch = 256
		if dialect == store.Postgres && !c.Keyed {
			c.Batch = 1
		}
	}
	if c.InboxRetention <= 0 {
		c.InboxRetention = 35 * 24 * time.Hour
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer("")
	}
}

// Consumer is a durable JetStream pull consumer whose effects are
// idempotent: each event's effect commits together with the event's id in
// the inbox table, and an id already there is acknowledged without effect.
type Consumer struct {
	db     *store.DB
	js     jetstream.JetStream
	cfg    ConsumerConfig
	stream string
	log    *slog.Logger

	// held are the messages received and not yet settled (acked, nacked
	// or terminated), with when each arrived, for the progress acks.
	heldMu sync.Mutex
	held   map[jetstream.Msg]time.Time

	// Test hooks that abandon a batch as a crash would: afterEffects runs
	// after the handlers and before the commit, afterCommit after the
	// commit and before the acks.
	afterEffects func() error
	afterCommit  func() error
}

// NewConsumer returns a consumer over db, whose inbox must be migrated.
func NewConsumer(db *store.DB, js jetstream.JetStream, cfg ConsumerConfig, log *slog.Logger) (*Consumer, error) {
	producer, err := cfg.Producer()
	if err != nil {
		return nil, err
	}
	cfg.defaults(db.Dialect)
	stream := StreamName(producer)
	if cfg.Metrics != nil {
		cfg.Metrics.add(cfg.Name, stream)
	}
	return &Consumer{db: db, js: js, cfg: cfg, stream: stream, log: log.With("consumer", cfg.Name), held: map[jetstream.Msg]time.Time{}}, nil
}

// pullExpiry bounds how long a pull request waits for messages; its
// heartbeats come at half of it. A lost request is noticed when it expires
// or its heartbeats stop: after 7 s rather than the default 30 s, for a few
// idle requests more. Not 5 s: expiring together with the default AckWait,
// the requests missed a dead consumer's redelivered events about once in
// sixteen tries, and they waited another AckWait (TestDeadConsumersEventsComeBackFast).
const pullExpiry = 7 * time.Second

// Run consumes until ctx ends. Until the stream exists (only its producer
// makes it, and may start later) it waits, asking four times a second;
// other failures it retries every second.
func (c *Consumer) Run(ctx context.Context) error {
	cons, err := c.ensure(ctx)
	for waited := time.Duration(0); err != nil; {
		if ctx.Err() != nil {
			return nil
		}
		wait := time.Second
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			wait = 250 * time.Millisecond
			if waited >= 30*time.Second {
				c.log.Warn("the stream is still missing: has its producer started?", "stream", c.stream)
				waited = 0
			}
			waited += wait
		} else {
			c.log.Warn("consumer not ready; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		cons, err = c.ensure(ctx)
	}
	msgs := make(chan jetstream.Msg, 2*c.cfg.Batch)
	stopping := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		c.hold(m)
		select {
		case msgs <- m:
		case <-stopping:
			_ = m.Nak() // see stop
			c.release(m)
		}
	},
		jetstream.PullMaxMessages(2*c.cfg.Batch),
		// A pull request the server loses (its consumer's leader moving,
		// as while a cluster starts or loses a node) is sent again soon.
		jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) || ctx.Err() == nil {
				c.log.Debug("consume", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.cfg.Name, err)
	}
	defer cc.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	progressDone := make(chan struct{})
	defer close(progressDone)
	go c.keepProgress(progressDone)
	c.prune(ctx)
	batch := make([]jetstream.Msg, 0, c.cfg.Batch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			c.stop(cc, stopping, msgs, nil)
			return nil
		case <-prune.C:
			c.prune(ctx)
			continue
		case m := <-msgs:
			batch = append(batch, m)
		}
	more:
		for len(batch) < c.cfg.Batch {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			default:
				break more
			}
		}
		if ctx.Err() != nil {
			// Stopping: a transaction begun now would only be cancelled,
			// and its failure would count as a delivery.
			c.stop(cc, stopping, msgs, batch)
			return nil
		}
		if err := c.process(ctx, batch); err != nil {
			if errors.Is(err, errCrash) {
				return err
			}
			c.log.Warn("batch failed; it will be delivered again", "events", len(batch), "err", err)
		}
	}
}

// prune forgets ids processed longer ago than the inbox retention.
func (c *Consumer) prune(ctx context.Context) {
	cutoff := time.Now().UTC().Add(-c.cfg.InboxRetention)
	if _, err := c.db.ExecContext(ctx, `DELETE FROM inbox WHERE consumer = $1 AND processed_at < $2`, c.cfg.Name, cutoff); err != nil && ctx.Err() == nil {
		c.log.Warn("inbox: prune", "err", err)
	}
}

// stop ends consumption and hands back every message received and not
// processed (batch, those in msgs, and those still in the client's buffer,
// which Drain passes to the callback), so that the broker redelivers them
// at once rather than after AckWait: a service restarted in the middle of a
// saga does not hold it up for AckWait.
func (c *Consumer) stop(cc jetstream.ConsumeContext, stopping chan struct{}, msgs chan jetstream.Msg, batch []jetstream.Msg) {
	close(stopping)
	cc.Drain()
	for _, m := range batch {
		_ = m.Nak()
	}
	c.release(batch...)
	select { // the callback never blocks now: it hands back what msgs cannot take
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
	}
	for {
		select {
		case m := <-msgs:
			_ = m.Nak()
			c.release(m)
		default:
			return
		}
	}
}

// hold notes that m arrived; release, that it was settled (acked, handed
// back or terminated).
func (c *Consumer) hold(m jetstream.Msg) {
	c.heldMu.Lock()
	c.held[m] = time.Now()
	c.heldMu.Unlock()
}

func (c *Consumer) release(ms ...jetstream.Msg) {
	c.heldMu.Lock()
	for _, m := range ms {
		delete(c.held, m)
	}
	c.heldMu.Unlock()
}

// keepProgress, until done is closed, tells the broker every third of
// AckWait that the messages held longer than that are still being worked
// on (they wait in the buffer behind a slow batch, or the batch calls a
// slow provider): AckWait is short so that a dead consumer's events come
// back fast, and progress acks keep a live one's from coming back twice.
func (c *Consumer) keepProgress(done chan struct{}) {
	t := time.NewTicker(c.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-c.cfg.AckWait / 3)
		var slow []jetstream.Msg
		c.heldMu.Lock()
		for m, at := range c.held {
			if at.Before(cutoff) {
				slow = append(slow, m)
			}
		}
		c.heldMu.Unlock()
		for _, m := range slow {
			_ = m.InProgress()
		}
	}
}

func (c *Consumer) ensure(ctx context.Context) (jetstream.Consumer, error) {
	subjects := c.cfg.Subjects
	if len(subjects) == 0 {
		for typ := range c.cfg.Handlers {
			subjects = append(subjects, typ)
		}
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       c.cfg.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1, // counted here, so that a crash on the last try still dead-letters
		MaxAckPending: 4 * c.cfg.Batch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects // needs NATS 2.10 or later
	}
	return c.js.CreateOrUpdateConsumer(ctx, c.stream, cfg)
}

// outcome is what becomes of one message of a batch.
type outcome struct {
	ack       bool  // processed now or before
	duplicate bool  // processed before: no effect now
	err       error // the handler failed: retry, or dead-letter if permanent or out of tries
	reason    string
}

// errCrash is returned by the test hooks.
var errCrash = errors.New("simulated crash")

// errHandlerFailed makes a batch start again, event by event.
var errHandlerFailed = errors.New("a handler failed")

// process applies a batch in one transaction. The fast path records every
// id in the inbox with one statement and runs the handlers of the new ones;
// if a handler fails, the transaction is rolled back and the batch runs
// again with a savepoint per event, so that the failure undoes only its own
// effect and the rest of the batch commits.
func (c *Consumer) process(ctx context.Context, batch []jetstream.Msg) error {
	outcomes := make([]outcome, len(batch))
	evs := make([]Event, len(batch))
	for i, m := range batch {
		e, err := Decode(m.Subject(), m.Headers(), m.Data())
		switch {
		case err != nil:
			outcomes[i] = outcome{reason: err.Error()}
		case c.cfg.Handlers[e.Type].prepare == nil:
			outcomes[i] = outcome{reason: "unknown event type " + e.Type}
		}
		evs[i] = e
	}
	if c.cfg.Keyed && len(batch) > 1 {
		bySubject(batch, evs, outcomes)
	}
	applies := c.prepare(ctx, evs, outcomes)
	decided := slices.Clone(outcomes)
	err := c.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := c.lock(ctx, tx, evs, outcomes); err != nil {
			return err
		}
		if err := c.applyBatch(ctx, tx, evs, applies, outcomes); err != nil {
			return err
		}
		return c.hook(c.afterEffects)
	})
	if errors.Is(err, errHandlerFailed) {
		copy(outcomes, decided)
		err = c.db.InTx(ctx, func(tx *sql.Tx) error {
			if err := c.lock(ctx, tx, evs, outcomes); err != nil {
				return err
			}
			for i := range evs {
				if outcomes[i] == (outcome{}) {
					outcomes[i] = c.applyOne(ctx, tx, evs[i], applies[i])
				}
			}
			return c.hook(c.afterEffects)
		})
	}
	if err != nil {
		if !errors.Is(err, errCrash) {
			for _, m := range batch {
				_ = m.NakWithDelay(c.cfg.Backoff[0])
			}
			c.release(batch...)
		}
		return err
	}
	if c.cfg.Outbox != nil {
		c.cfg.Outbox.Wake()
	}
	if err := c.hook(c.afterCommit); err != nil {
		return err
	}
	for i, m := range batch {
		o := outcomes[i]
		c.count(m, o)
		switch {
		case o.ack:
			_ = m.Ack()
		case o.reason != "":
			c.deadLetter(ctx, m, o.reason)
		default:
			c.retry(ctx, m, o.err)
		}
	}
	c.release(batch...)
	return nil
}

// lock runs the consumer's Lock over the batch's undecided events.
func (c *Consumer) lock(ctx context.Context, tx *sql.Tx, evs []Event, outcomes []outcome) error {
	if c.cfg.Lock == nil {
		return nil
	}
	var undecided []Event
	for i, e := range evs {
		if outcomes[i] == (outcome{}) {
			undecided = append(undecided, e)
		}
	}
	if len(undecided) == 0 {
		return nil
	}
	if err := c.cfg.Lock(ctx, tx, undecided); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// bySubject orders a batch by its events' subjects, keeping each
// subject's events in the order they came: the order a keyed consumer
// locks rows in. An event that did not decode has no subject and goes
// first, touching nothing.
func bySubject(batch []jetstream.Msg, evs []Event, outcomes []outcome) {
	idx := make([]int, len(batch))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(evs[a].Subject, evs[b].Subject) })
	ms, es, os := slices.Clone(batch), slices.Clone(evs), slices.Clone(outcomes)
	for to, from := range idx {
		batch[to], evs[to], outcomes[to] = ms[from], es[from], os[from]
	}
}

// prepare decodes the batch's undecided events and makes their handlers'
// calls, up to 16 at once, before the transaction; it returns what is left
// to apply of each. An event that fails here is decided: retried, or
// dead-lettered if the failure is permanent.
func (c *Consumer) prepare(ctx context.Context, evs []Event, outcomes []outcome) []apply {
	applies := make([]apply, len(evs))
	fail := func(i int, err error) {
		outcomes[i] = outcome{err: err}
		if _, ok := errors.AsType[permanent](err); ok {
			outcomes[i].reason = err.Error()
		}
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, 16)
	for i, e := range evs {
		if outcomes[i] != (outcome{}) {
			continue
		}
		h := c.cfg.Handlers[e.Type]
		if !h.calls {
			ap, err := h.prepare(e.Context(ctx), e)
			if err != nil {
				fail(i, err)
			}
			applies[i] = ap
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			cctx, span := c.cfg.Tracer.Start(e.Context(ctx), "call "+e.Type, trace.WithSpanKind(trace.SpanKindClient))
			ap, err := h.prepare(cctx, e)
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
				fail(i, err)
			}
			span.End()
			applies[i] = ap
		})
	}
	wg.Wait()
	return applies
}

// handle applies an event's effect in a consumer span that continues the
// event's trace.
func (c *Consumer) handle(ctx context.Context, tx *sql.Tx, e Event, ap apply) error {
	ctx, span := c.cfg.Tracer.Start(e.Context(ctx), "process "+e.Type, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.message.id", e.ID), attribute.String("messaging.consumer.group.name", c.cfg.Name)))
	defer span.End()
	err := ap(ctx, tx)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// count records an outcome in the metrics.
func (c *Consumer) count(m jetstream.Msg, o outcome) {
	if c.cfg.Metrics == nil {
		return
	}
	outcome := "applied"
	switch {
	case o.duplicate:
		outcome = "duplicate"
	case o.ack:
	case o.reason != "":
		outcome = "dead_lettered"
	default:
		outcome = "retried"
		if meta, err := m.Metadata(); err == nil && int(meta.NumDelivered) >= c.cfg.MaxDeliver {
			outcome = "dead_lettered"
		}
	}
	c.cfg.Metrics.events.WithLabelValues(c.cfg.Name, outcome).Inc()
	if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
		c.cfg.Metrics.redeliveries.WithLabelValues(c.cfg.Name).Inc()
	}
}

func (c *Consumer) hook(h func() error) error {
	if h == nil {
		return nil
	}
	return h()
}

// applyBatch records the ids of the undecided events in the inbox with one
// statement and runs the handlers of those it had not seen.
func (c *Consumer) applyBatch(ctx context.Context, tx *sql.Tx, evs []Event, applies []apply, outcomes []outcome) error {
	now := time.Now().UTC()
	var args []any
	for i, e := range evs {
		if outcomes[i] == (outcome{}) {
			args = append(args, c.cfg.Name, e.ID, now)
		}
	}
	if len(args) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `INSERT INTO inbox (consumer, event_id, processed_at) VALUES `+
		store.Values(len(args)/3, 3)+` ON CONFLICT DO NOTHING RETURNING event_id`, args...)
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	fresh := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("inbox: %w", err)
		}
		fresh[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	for i, e := range evs {
		if outcomes[i] != (outcome{}) {
			continue
		}
		if !fresh[e.ID] {
			outcomes[i] = outcome{ack: true, duplicate: true}
			continue // processed before, or earlier in this batch: no second effect
		}
		outcomes[i] = outcome{ack: true}
		delete(fresh, e.ID)
		if err := c.handle(ctx, tx, e, applies[i]); err != nil {
			return errHandlerFailed
		}
	}
	return nil
}

// applyOne runs one event's handler inside a savepoint, so that its failure
// undoes only its own effect.
func (c *Consumer) applyOne(ctx context.Context, tx *sql.Tx, e Event, ap apply) outcome {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT event`); err != nil {
		return outcome{err: err}
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		c.cfg.Name, e.ID, time.Now().UTC())
	if err != nil {
		_, _ = tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT event`)
		return outcome{err: fmt.Errorf("inbox: %w", err)}
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, _ = tx.ExecContext(ctx, `RELEASE SAVEPOINT event`)
		return outcome{ack: true, duplicate: true} // processed before: no second effect
	}
	if err := c.handle(ctx, tx, e, ap); err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT event`); rerr != nil {
			return outcome{err: errors.Join(err, rerr)}
		}
		_, _ = tx.ExecContext(ctx, `RELEASE SAVEPOINT event`)
		if _, ok := errors.AsType[permanent](err); ok {
			return outcome{err: err, reason: err.Error()}
		}
		return outcome{err: err}
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT event`); err != nil {
		return outcome{err: err}
	}
	return outcome{ack: true}
}

func (c *Consumer) retry(ctx context.Context, m jetstream.Msg, err error) {
	meta, merr := m.Metadata()
	if merr != nil {
		_ = m.Nak()
		return
	}
	n := int(meta.NumDelivered)
	if n >= c.cfg.MaxDeliver {
		c.deadLetter(ctx, m, fmt.Sprintf("failed %d times; last error: %v", n, err))
		return
	}
	c.log.Debug("event failed; will retry", "subject", m.Subject(), "delivery", n, "err", err)
	_ = m.NakWithDelay(c.cfg.Backoff[min(n-1, len(c.cfg.Backoff)-1)])
}

// Headers a dead letter carries besides the original's.
const (
	HdrDeadReason     = "Souk-Dead-Reason"
	HdrDeadConsumer   = "Souk-Dead-Consumer"
	HdrDeadStream     = "Souk-Dead-Stream"
	HdrDeadSubject    = "Souk-Dead-Subject"
	HdrDeadSequence   = "Souk-Dead-Sequence"
	HdrDeadDeliveries = "Souk-Dead-Deliveries"
	HdrDeadTime       = "Souk-Dead-Time"
)

// deadLetter copies m with the reason to the dead-letter stream, then
// terminates m. If the copy fails, m is delivered again later.
func (c *Consumer) deadLetter(ctx context.Context, m jetstream.Msg, reason string) {
	meta, err := m.Metadata()
	if err != nil {
		_ = m.Nak()
		return
	}
	dl := nats.NewMsg(DeadLetterSubject(c.cfg.Name))
	for k, v := range m.Headers() {
		if k != nats.MsgIdHdr {
			dl.Header[k] = v
		}
	}
	dl.Header.Set(HdrDeadReason, reason)
	dl.Header.Set(HdrDeadConsumer, c.cfg.Name)
	dl.Header.Set(HdrDeadStream, meta.Stream)
	dl.Header.Set(HdrDeadSubject, m.Subject())
	dl.Header.Set(HdrDeadSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
	dl.Header.Set(HdrDeadDeliveries, strconv.FormatUint(meta.NumDelivered, 10))
	dl.Header.Set(HdrDeadTime, time.Now().UTC().Format(time.RFC3339Nano))
	dl.Data = m.Data()
	msgID := fmt.Sprintf("%s-%s-%d", c.cfg.Name, meta.Stream, meta.Sequence.Stream)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(pctx, dl, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(DeadLetterStream)); err != nil {
		c.log.Error("dead-letter publish failed; the event will be delivered again", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(c.cfg.Backoff[len(c.cfg.Backoff)-1])
		return
	}
	c.log.Warn("event dead-lettered", "subject", m.Subject(), "id", eventID(m.Headers(), m.Data()), "reason", reason)
	_ = m.Term()
}

// PerType splits cfg into one consumer per handled type, each named
// <Name>-<type's last part> and filtering exactly its type: NATS servers
// before 2.10 filter a consumer by one subject only. Events of different
// types may then be applied in any order relative to each other.
func PerType(cfg ConsumerConfig) []ConsumerConfig {
	var out []ConsumerConfig
	for typ, h := range cfg.Handlers {
		c := cfg
		c.Name = cfg.Name + "-" + typ[strings.LastIndexByte(typ, '.')+1:]
		c.Handlers = map[string]Handler{typ: h}
		c.Subjects = nil
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ConsumerConfig) int { return strings.Compare(a.Name, b.Name) })
	return out
}
