package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/store"
)

var long = flag.Bool("long", false, "run the long variants: each crash point 20 times")

// env is one producer service's database and outbox, a consumer database,
// and a broker, all fresh.
type env struct {
	db      *store.DB
	js      jetstream.JetStream
	nc      *nats.Conn
	outbox  *Outbox
	service string
	typ     string // the event type the tests publish
}

// forEachEngine runs fn on every database engine with every broker.
func forEachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, db := range testenv.Databases() {
		for _, b := range testenv.Brokers() {
			t.Run(db.Name+"+"+b.Name, func(t *testing.T) {
				fn(t, newEnv(t, db, b))
			})
		}
	}
}

// forEachBroker runs fn on SQLite with each broker, for what the broker
// decides.
func forEachBroker(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range testenv.Brokers() {
		t.Run(b.Name, func(t *testing.T) { fn(t, newEnv(t, testenv.Databases()[0], b)) })
	}
}

// migrated opens a fresh database of dbe with the outbox and inbox.
func migrated(t *testing.T, dbe testenv.Database) *store.DB {
	ctx := context.Background()
	db, err := store.Open(ctx, dbe.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := Migrate(ctx, db, "test", testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	return db
}

func newEnv(t *testing.T, dbe testenv.Database, b testenv.Broker) *env {
	ctx := context.Background()
	db := migrated(t, dbe)
	if _, err := db.ExecContext(ctx, `CREATE TABLE effects (event_id TEXT NOT NULL, subject TEXT NOT NULL, n BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	nc := b.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, js: js, nc: nc, outbox: NewOutbox(db), service: testenv.Name("t")}
	e.typ = "souk." + e.service + ".v1.Thing"
	cfg := DefaultStreamConfig()
	if err := EnsureStream(ctx, js, e.service, cfg); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDeadLetterStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = js.DeleteStream(ctx, StreamName(e.service))
		if s, err := js.Stream(ctx, DeadLetterStream); err == nil {
			_ = s.Purge(ctx, jetstream.WithPurgeSubject(DeadLetterSubject(e.consumerName())))
		}
	})
	return e
}

func (e *env) consumerName() string { return e.service + "-effects" }

// write commits n events, tx events to a transaction, about subjects
// s0..s(aggregates-1) in turn, numbered from first.
func (e *env) write(t *testing.T, first, n, perTx, aggregates int) {
	t.Helper()
	ctx := context.Background()
	for i := first; i < first+n; i += perTx {
		err := e.outbox.Do(ctx, func(tx *sql.Tx) error {
			for j := i; j < min(i+perTx, first+n); j++ {
				if err := e.outbox.Emit(ctx, tx, e.typ, fmt.Sprint("s", j%aggregates), map[string]int{"n": j}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// effectHandler records each event's effect; it does not dedupe, so that a
// doubled effect shows as two rows.
func effectHandler(ctx context.Context, tx *sql.Tx, ev Event) error {
	var d struct{ N *int64 }
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.N == nil {
		return Permanent(fmt.Errorf("data %s: want {\"n\": <int>}", ev.Data))
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, subject, n) VALUES ($1, $2, $3)`, ev.ID, ev.Subject, *d.N)
	return err
}

// rawHandler is a test's handler: it reads the event itself.
type rawHandler func(ctx context.Context, tx *sql.Tx, ev Event) error

func (h rawHandler) handler() Handler {
	return On(func(ctx context.Context, tx *sql.Tx, ev Event, _ json.RawMessage) error { return h(ctx, tx, ev) })
}

func (e *env) consumer(t *testing.T, h rawHandler, tune func(*ConsumerConfig)) *Consumer {
	return e.consumerOf(t, h.handler(), tune)
}

func (e *env) consumerOf(t *testing.T, h Handler, tune func(*ConsumerConfig)) *Consumer {
	cfg := ConsumerConfig{
		Name:       e.consumerName(),
		Handlers:   map[string]Handler{e.typ: h},
		AckWait:    time.Second,
		MaxDeliver: 3,
		Backoff:    []time.Duration{10 * time.Millisecond},
	}
	if tune != nil {
		tune(&cfg)
	}
	c, err := NewConsumer(e.db, e.js, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run starts fn in the background until the test ends or stop is called;
// stop returns fn's error.
func run(t *testing.T, fn func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once atomic.Bool
	stop = func() error {
		if once.Swap(true) {
			return nil
		}
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("did not stop in 10s")
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

func (e *env) startRelay(t *testing.T) (stop func() error) {
	r := NewRelay(e.outbox, e.js, e.service, RelayConfig{}, testenv.Logger(t))
	return run(t, func(ctx context.Context) error { r.Run(ctx); return nil })
}

// effects counts the rows in effects per event number.
func (e *env) effects(t *testing.T) map[int64]int {
	t.Helper()
	rows, err := e.db.Query(`SELECT n FROM effects`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]int{}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got[n]++
	}
	return got
}

// waitEffects waits until events 0..n-1 each have an effect, then checks
// that none has two and nothing else has one.
func (e *env) waitEffects(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got map[int64]int
	for {
		got = e.effects(t)
		if len(got) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.waitDrained(t, within)
	got = e.effects(t)
	lost, doubled := 0, 0
	for i := range int64(n) {
		switch got[i] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	if lost > 0 || doubled > 0 || len(got) != n {
		t.Fatalf("of %d events: %d lost, %d with more than one effect, %d distinct effects", n, lost, doubled, len(got))
	}
}

// waitDrained waits until the consumer has nothing pending or unacked, so
// that no redelivery still to come could add an effect after the check.
func (e *env) waitDrained(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := e.js.Consumer(context.Background(), StreamName(e.service), e.consumerName())
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer not drained after %s: %d pending, %d unacked, %d redelivered", within, info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamCount is how many messages the producer's stream holds.
func (e *env) streamCount(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), StreamName(e.service))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestEnvelope(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithRemoteSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	ev, err := New(ctx, "souk.users.v1.UserRegistered", "u1", map[string]string{"email": "a@b.c"})
	if err != nil {
		t.Fatal(err)
	}
	m := ev.Msg()
	if m.Subject != ev.Type || m.Header.Get(nats.MsgIdHdr) != ev.ID || ev.Source != "/souk/users" {
		t.Fatalf("message %s %v for %+v", m.Subject, m.Header, ev)
	}
	got, err := Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.Type != ev.Type || got.Subject != "u1" || !got.Time.Equal(ev.Time) || string(got.Data) != string(ev.Data) {
		t.Fatalf("Decode = %+v, want %+v", got, ev)
	}
	if sc := trace.SpanContextFromContext(got.Context(context.Background())); sc.TraceID() != tid {
		t.Fatalf("trace id after the trip: %s, want %s (traceparent %q)", sc.TraceID(), tid, got.TraceParent)
	}

	if _, err := New(ctx, "users.UserRegistered", "u1", nil); err == nil {
		t.Error("New accepted an unversioned type")
	}
	// What Decode refuses: TestCloudEventsDecodeMalformed.
}

// TestOutboxToConsumer runs the happy path: events written in transactions
// arrive once each, in order per aggregate, with the trace context.
func TestOutboxToConsumer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.startRelay(t)
		var order []string
		var outOfOrder atomic.Int64
		last := map[string]int64{}
		h := func(ctx context.Context, tx *sql.Tx, ev Event) error {
			var d struct{ N int64 }
			json.Unmarshal(ev.Data, &d)
			if d.N < last[ev.Subject] {
				outOfOrder.Add(1)
			}
			last[ev.Subject] = d.N
			order = append(order, ev.Subject)
			return effectHandler(ctx, tx, ev)
		}
		run(t, e.consumer(t, h, nil).Run)
		e.write(t, 0, 500, 7, 10)
		e.waitEffects(t, 500, 10*time.Second)
		if n := outOfOrder.Load(); n > 0 {
			t.Fatalf("%d events arrived before an earlier event of the same aggregate", n)
		}
		if got := e.streamCount(t); got != 500 {
			t.Fatalf("stream holds %d messages for 500 events", got)
		}
		// The relay marks a batch sent after the broker acks it, which may
		// be after the consumer has already applied it.
		var unsent int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if e.db.QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent); unsent == 0 {
				break
			}
		}
		if unsent != 0 {
			t.Fatalf("%d outbox rows still unsent 5s after their effects", unsent)
		}
	})
}

// TestReplicatedRelays runs three relays on one outbox, as three replicas
// of a service would, and checks that the stream gets each event once.
func TestReplicatedRelays(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		for range 3 {
			e.startRelay(t)
		}
		run(t, e.consumer(t, effectHandler, nil).Run)
		for i := range 10 {
			e.write(t, i*100, 100, 3, 7)
			e.outbox.Wake()
		}
		e.waitEffects(t, 1000, 10*time.Second)
		if got := e.streamCount(t); got != 1000 {
			t.Fatalf("the stream holds %d messages for 1000 events", got)
		}
	})
}

// TestRelaysInOtherSchemas runs a service's relay in one PostgreSQL schema
// while another deployment of the same service, in another schema of the
// same database, is in the middle of relaying: replicas of one outbox take
// turns, other outboxes do not wait for them.
// holdTurn starts a relay of e's outbox that publishes the pending rows
// and then holds its turn, in its transaction, until release is called;
// release returns that relay's error. The turn is released at the test's
// end whatever happens, so that a failure cannot leave the schema locked.
func holdTurn(t *testing.T, e *env) (release func() error) {
	t.Helper()
	held, free := make(chan struct{}), make(chan struct{})
	r := NewRelay(e.outbox, e.js, e.service, RelayConfig{}, testenv.Logger(t))
	r.afterPublish = func() error { close(held); <-free; return nil }
	done := make(chan error, 1)
	go func() { _, err := r.Flush(context.Background()); done <- err }()
	var once sync.Once
	var err error
	release = func() error {
		once.Do(func() { close(free); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = release() })
	select {
	case <-held:
		return release
	case err := <-done:
		once.Do(func() {}) // nothing to release
		t.Fatalf("the relay ended before publishing: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not publish in 10s")
	}
	return nil
}

func TestRelaysInOtherSchemas(t *testing.T) {
	ctx := context.Background()
	pg, broker := testenv.Databases()[1], testenv.Brokers()[0]
	a, b := newEnv(t, pg, broker), newEnv(t, pg, broker) // two schemas
	a.write(t, 0, 1, 1, 1)
	release := holdTurn(t, a)
	// A replica of a's relay finds the turn taken: it publishes nothing,
	// though a row waits, and says why.
	a.write(t, 1, 1, 1, 1)
	if n, err := NewRelay(a.outbox, a.js, a.service, RelayConfig{}, testenv.Logger(t)).Flush(ctx); n != 0 || !errors.Is(err, ErrTurnTaken) {
		t.Fatalf("a replica of a's relay published %d rows (%v) while a's relayed, want 0 and ErrTurnTaken", n, err)
	}
	// b's events are a's service's too, so that its relay is that
	// service's.
	for i := range 3 {
		err := b.outbox.Do(ctx, func(tx *sql.Tx) error {
			return b.outbox.Emit(ctx, tx, a.typ, "s0", map[string]int{"n": 100 + i})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := NewRelay(b.outbox, a.js, a.service, RelayConfig{}, testenv.Logger(t)).Flush(ctx)
	if aerr := release(); aerr != nil {
		t.Fatalf("a's relay: %v", aerr)
	}
	if err != nil || n != 3 {
		t.Fatalf("the relay of another schema published %d of 3 rows (%v) while a's relayed", n, err)
	}
	if got := a.streamCount(t); got != 4 {
		t.Fatalf("the stream holds %d messages, want 4", got)
	}
	if n, err := NewRelay(a.outbox, a.js, a.service, RelayConfig{}, testenv.Logger(t)).Flush(ctx); n != 1 || err != nil {
		t.Fatalf("after the turn, a's relay published %d of the row that waited (%v)", n, err)
	}
}

// A relay's transaction, which only marks rows sent, commits without
// waiting for the WAL's flush; the service's own transactions still wait.
func TestRelayCommitsWithoutWaiting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testenv.Databases()[1], testenv.Brokers()[0])
	r := NewRelay(e.outbox, e.js, e.service, RelayConfig{}, testenv.Logger(t))
	setting := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) string {
		var got string
		if err := q.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	err := e.db.InTx(ctx, func(tx *sql.Tx) error {
		if before := setting(tx); before != "on" {
			return fmt.Errorf("synchronous_commit %q before the relay's statement, want on", before)
		}
		if _, mine, err := r.pending(ctx, tx); err != nil || !mine {
			return fmt.Errorf("pending: turn %v, %v", mine, err)
		}
		if got := setting(tx); got != "off" {
			return fmt.Errorf("synchronous_commit %q in the relay's transaction, want off", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := setting(e.db); got != "on" {
		t.Errorf("synchronous_commit %q after the relay's transaction, want on", got)
	}
}

// TestRelayTurnTakenComesBack checks that a row written by one replica
// while another relays goes out once the turn is free, not at the next
// sweep: the replica that found the turn taken tries again soon.
func TestRelayTurnTakenComesBack(t *testing.T) {
	pg, broker := testenv.Databases()[1], testenv.Brokers()[0]
	a := newEnv(t, pg, broker)
	a.write(t, 0, 1, 1, 1)
	release := holdTurn(t, a)
	// This replica's relay sweeps once a minute: only a retry can publish
	// the row within the test's bound.
	r := NewRelay(a.outbox, a.js, a.service, RelayConfig{Sweep: time.Minute}, testenv.Logger(t))
	defer run(t, func(ctx context.Context) error { r.Run(ctx); return nil })()
	a.write(t, 1, 1, 1, 1) // wakes r, which finds the turn taken
	time.Sleep(100 * time.Millisecond)
	if got := a.streamCount(t); got != 1 {
		t.Fatalf("the stream holds %d messages while the other relay holds the turn, want 1", got)
	}
	if err := release(); err != nil {
		t.Fatalf("the other relay: %v", err)
	}
	freed := time.Now()
	for a.streamCount(t) < 2 {
		if time.Since(freed) > 5*time.Second {
			t.Fatal("the row written while the turn was taken was not published within 5s of the turn's end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCrashPoints stops the relay or the consumer, as a kill would, at each
// point where a crash could lose or double an event, and checks that after
// a restart every event has exactly one effect.
func TestCrashPoints(t *testing.T) {
	rounds := 3
	if *long {
		rounds = 20
	}
	points := []struct {
		name  string
		crash func(t *testing.T, e *env, first, n int)
	}{
		{"after the business commit, before publish", func(t *testing.T, e *env, first, n int) {
			e.write(t, first, n, 5, 4) // committed; the process dies before any relay runs
			stop := e.startRelay(t)    // the restarted process
			defer stop()
			defer run(t, e.consumer(t, effectHandler, nil).Run)()
			e.waitEffects(t, first+n, 10*time.Second)
		}},
		{"after the publish ack, before marking sent", func(t *testing.T, e *env, first, n int) {
			e.write(t, first, n, 5, 4)
			r := NewRelay(e.outbox, e.js, e.service, RelayConfig{}, testenv.Logger(t))
			r.afterPublish = func() error { return errCrash }
			if _, err := r.Flush(context.Background()); !errors.Is(err, errCrash) {
				t.Fatalf("Flush with a crash after publish = %v", err)
			}
			stop := e.startRelay(t) // republishes every row; the broker drops the copies
			defer stop()
			defer run(t, e.consumer(t, effectHandler, nil).Run)()
			e.waitEffects(t, first+n, 10*time.Second)
			if got := e.streamCount(t); got != uint64(first+n) {
				t.Fatalf("the stream holds %d messages for %d events: the broker let a copy through", got, first+n)
			}
		}},
		{"after the consumer's effect, before its inbox commit", func(t *testing.T, e *env, first, n int) {
			e.crashConsumer(t, first, n, func(c *Consumer) *func() error { return &c.afterEffects })
		}},
		{"after the inbox commit, before the ack", func(t *testing.T, e *env, first, n int) {
			e.crashConsumer(t, first, n, func(c *Consumer) *func() error { return &c.afterCommit })
		}},
	}
	for _, p := range points {
		t.Run(p.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e *env) {
				const n = 40
				for round := range rounds {
					p.crash(t, e, round*n, n)
				}
			})
		})
	}
}

// crashConsumer writes events first..first+n-1, runs a consumer that
// crashes at the hook point names, then a fresh one, and checks that every
// event has exactly one effect.
func (e *env) crashConsumer(t *testing.T, first, n int, point func(*Consumer) *func() error) {
	stop := e.startRelay(t)
	defer stop()
	e.write(t, first, n, 5, 4)
	c := e.consumer(t, effectHandler, nil)
	crashed := make(chan struct{})
	*point(c) = func() error { close(crashed); return errCrash }
	stopC := run(t, c.Run)
	waitCrash(t, crashed)
	if err := stopC(); !errors.Is(err, errCrash) {
		t.Fatalf("consumer stopped with %v, want the simulated crash", err)
	}
	defer run(t, e.consumer(t, effectHandler, nil).Run)()
	e.waitEffects(t, first+n, 10*time.Second)
}

func waitCrash(t *testing.T, crashed chan struct{}) {
	t.Helper()
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		t.Fatal("the crash point was not reached in 10s")
	}
}

// TestRedelivery publishes every event of a 10k batch three times under
// different message ids, so the broker keeps all three, and checks that the
// consumer's inbox lets exactly one effect through per event.
func TestRedelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("30k messages")
	}
	const n = 10_000
	forEachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var futures []jetstream.PubAckFuture
		for i := range n {
			ev, _ := New(ctx, e.typ, fmt.Sprint("s", i%16), map[string]int{"n": i})
			for copy := range 3 {
				// 30,000 publishes outrun the broker's acks: past the
				// client's limit of outstanding ones a publish waits, up to
				// 10 s rather than the default 200 ms, which a busy
				// machine's broker once missed.
				f, err := e.js.PublishMsgAsync(ev.Msg(), jetstream.WithMsgID(fmt.Sprintf("%s-%d", ev.ID, copy)),
					jetstream.WithStallWait(10*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				futures = append(futures, f)
			}
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
		if got := e.streamCount(t); got != 3*n {
			t.Fatalf("stream holds %d, want %d", got, 3*n)
		}
		run(t, e.consumer(t, effectHandler, func(c *ConsumerConfig) { c.AckWait = 30 * time.Second }).Run)
		e.waitEffects(t, n, 60*time.Second)
		var inbox int
		e.db.QueryRow(`SELECT COUNT(*) FROM inbox`).Scan(&inbox)
		if inbox != n {
			t.Fatalf("inbox holds %d ids, want %d", inbox, n)
		}
	})
}

// TestDeadLetters checks that a failing event, an unknown type and a
// malformed payload end in the dead-letter stream with their reason, that
// the consumer carries on, and that a replayed dead letter has its effect
// once.
func TestDeadLetters(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var broken atomic.Bool
		broken.Store(true)
		h := func(ctx context.Context, tx *sql.Tx, ev Event) error {
			if ev.Subject == "poison" && broken.Load() {
				return errors.New("the warehouse is on fire")
			}
			return effectHandler(ctx, tx, ev)
		}
		wide := func(c *ConsumerConfig) { c.Subjects = []string{"souk." + e.service + ".>"} }
		run(t, e.consumer(t, h, wide).Run)
		e.startRelay(t)

		publish := func(m *nats.Msg) {
			if _, err := e.js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		poison, _ := New(ctx, e.typ, "poison", map[string]int{"n": 0})
		publish(poison.Msg())
		unknown, _ := New(ctx, "souk."+e.service+".v9.Thing", "x", map[string]int{"n": 99})
		publish(unknown.Msg())
		bad, _ := New(ctx, e.typ, "bad", map[string]string{"n": "not a number"})
		publish(bad.Msg())
		garbage := nats.NewMsg(e.typ)
		garbage.Data = []byte("\x00\x01 not an event")
		publish(garbage)
		e.write(t, 1, 5, 1, 1) // good events after the bad ones still flow

		deadline := time.Now().Add(10 * time.Second)
		var mine []DeadLetter
		for len(mine) < 4 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			all, err := ListDeadLetters(ctx, e.js, e.consumerName(), 100)
			if err != nil {
				t.Fatal(err)
			}
			mine = mine[:0]
			for _, d := range all {
				if d.Consumer == e.consumerName() {
					mine = append(mine, d)
				}
			}
		}
		reasons := map[string]DeadLetter{}
		for _, d := range mine {
			reasons[d.Reason] = d
		}
		want := []struct{ reason, id string }{
			{"failed 3 times; last error: the warehouse is on fire", poison.ID},
			{"unknown event type", unknown.ID},
			{"want {\"n\": <int>}", bad.ID},
			{"malformed event", ""},
		}
		var poisonDL DeadLetter
		for _, w := range want {
			found := false
			for reason, d := range reasons {
				if strings.Contains(reason, w.reason) && (w.id == "" || d.EventID == w.id) {
					found = true
					if w.id == poison.ID {
						poisonDL = d
					}
				}
			}
			if !found {
				t.Errorf("no dead letter with reason %q (id %s) among %v", w.reason, w.id, reasons)
			}
		}
		if poisonDL.Seq == 0 {
			t.FailNow()
		}
		if poisonDL.Deliveries != 3 {
			t.Errorf("the poison event was delivered %d times, want 3 (MaxDeliver)", poisonDL.Deliveries)
		}
		if got := e.effects(t); len(got) != 5 || got[0] != 0 {
			t.Fatalf("effects before replay: %v, want 1..5 only", got)
		}

		broken.Store(false) // the fire is out
		if _, err := ReplayDeadLetter(ctx, e.js, poisonDL.Seq); err != nil {
			t.Fatal(err)
		}
		e.waitEffects(t, 6, 5*time.Second)
		if _, err := ReplayDeadLetter(ctx, e.js, poisonDL.Seq); err == nil {
			t.Fatal("a replayed dead letter could be replayed again")
		}
	})
}

func TestInboxPrune(t *testing.T) {
	dbs := testenv.Databases()
	e := newEnv(t, dbs[0], testenv.Brokers()[0])
	old, recent := time.Now().UTC().Add(-2*time.Hour), time.Now().UTC()
	for id, at := range map[string]time.Time{"old": old, "recent": recent} {
		if _, err := e.db.ExecContext(context.Background(), `INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3)`, e.consumerName(), id, at); err != nil {
			t.Fatal(err)
		}
	}
	c := e.consumer(t, effectHandler, func(c *ConsumerConfig) { c.InboxRetention = time.Hour })
	stop := run(t, c.Run)
	deadline := time.Now().Add(5 * time.Second)
	var ids []string
	for time.Now().Before(deadline) {
		ids = ids[:0]
		rows, _ := e.db.Query(`SELECT event_id FROM inbox ORDER BY event_id`)
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		if len(ids) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if len(ids) != 1 || ids[0] != "recent" {
		t.Fatalf("inbox after pruning with 1h retention: %v, want [recent]", ids)
	}
}

// TestCalls checks that an OnAfterCall handler's call runs outside the
// transaction, that its typed result and the decoded data reach the
// handler, and that a failing call is retried like a failing handler.
func TestCalls(t *testing.T) {
	dbs := testenv.Databases()
	e := newEnv(t, dbs[0], testenv.Brokers()[0])
	var calls atomic.Int64
	type data struct{ N int64 }
	call := func(ctx context.Context, ev Event, d data) (int64, error) {
		if calls.Add(1) == 1 {
			return 0, errors.New("the provider hiccuped") // the first try fails
		}
		return d.N * 10, nil
	}
	h := OnAfterCall(call, func(ctx context.Context, tx *sql.Tx, ev Event, d data, got int64) error {
		if got != d.N*10 {
			return fmt.Errorf("the call returned %d for %d", got, d.N)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, subject, n) VALUES ($1, $2, $3)`, ev.ID, ev.Subject, got)
		return err
	})
	run(t, e.consumerOf(t, h, nil).Run)
	e.startRelay(t)
	e.write(t, 1, 3, 1, 1)
	if !testenv.Eventually(5*time.Second, func() bool { return len(e.effects(t)) == 3 }) {
		t.Fatalf("effects: %v", e.effects(t))
	}
	for n := range e.effects(t) {
		if n != 10 && n != 20 && n != 30 {
			t.Fatalf("an effect recorded %d: the call's result did not reach the handler", n)
		}
	}
	if calls.Load() < 4 {
		t.Fatalf("%d calls for 3 events and one failure", calls.Load())
	}
}

// TestHandlerDecodes checks that data that does not decode into the
// handler's type, or does not validate, is dead-lettered at once, without
// a try of the handler.
func TestHandlerDecodes(t *testing.T) {
	applied := 0
	h := On(func(ctx context.Context, tx *sql.Tx, ev Event, d checked) error { applied++; return nil })
	for _, c := range []struct {
		data string
		ok   bool
	}{
		{`{"n": 1}`, true},
		{`{"n": "one"}`, false}, // does not decode
		{`{"n": -1}`, false},    // does not validate
		{`[1]`, false},
	} {
		ap, err := h.prepare(context.Background(), Event{Type: "souk.test.v1.T", Data: json.RawMessage(c.data)})
		_, permanentErr := errors.AsType[permanent](err)
		if c.ok != (err == nil) || (err != nil && !permanentErr) {
			t.Errorf("data %s: %v; want ok %v, or a permanent error", c.data, err, c.ok)
		}
		if err == nil {
			if err := ap(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if applied != 1 {
		t.Fatalf("applied %d times, want once", applied)
	}
}

type checked struct{ N int64 }

func (c checked) Validate() error {
	if c.N < 0 {
		return errors.New("n must not be negative")
	}
	return nil
}

func TestPerType(t *testing.T) {
	h := rawHandler(func(context.Context, *sql.Tx, Event) error { return nil }).handler()
	cfg := ConsumerConfig{Name: "inv", Handlers: map[string]Handler{
		"souk.orders.v1.OrderPlaced": h, "souk.orders.v1.StockReleaseRequested": h,
	}}
	got := PerType(cfg)
	if len(got) != 2 || got[0].Name != "inv-OrderPlaced" || got[1].Name != "inv-StockReleaseRequested" || len(got[0].Handlers) != 1 {
		t.Fatalf("PerType = %+v", got)
	}
	if p, err := cfg.Producer(); p != "orders" || err != nil {
		t.Fatalf("Producer() = %q, %v; want orders", p, err)
	}
	cfg.Handlers["souk.users.v1.UserRegistered"] = h
	if _, err := cfg.Producer(); err == nil {
		t.Fatal("a consumer of two services' events has a producer")
	}
}

// TestStopHandsBackUnprocessed stops a consumer while events it has
// received wait to be processed, and checks that a new consumer gets them
// at once, not after AckWait: a service restarted in the middle of a saga
// must not hold the saga up for half a minute.
func TestStopHandsBackUnprocessed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.startRelay(t)
		slow := func(ctx context.Context, tx *sql.Tx, ev Event) error {
			time.Sleep(2 * time.Millisecond)
			return effectHandler(ctx, tx, ev)
		}
		ackWait, within := 30*time.Second, 5*time.Second
		if v := e.nc.ConnectedServerVersion(); !serverAtLeast(v, 2, 10) {
			// NATS 2.9 still sends a pull request's messages after its
			// subscriber has gone; those come back after AckWait only.
			t.Logf("NATS %s: checking that nothing is lost, not how soon it comes back", v)
			ackWait, within = 2*time.Second, 10*time.Second
		}
		tune := func(c *ConsumerConfig) { c.AckWait, c.Batch = ackWait, 8 }
		const n = 400
		e.write(t, 0, n, 10, 10)
		for round := range 3 { // stop it a few times, in mid-stream
			stop := run(t, e.consumer(t, slow, tune).Run)
			time.Sleep(time.Duration(30+20*round) * time.Millisecond)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
		if len(e.effects(t)) == n {
			t.Fatal("every event was processed before the last stop: nothing tested")
		}
		run(t, e.consumer(t, slow, tune).Run)
		e.waitEffects(t, n, within)
	})
}

// serverAtLeast reports whether the NATS server version v is major.minor
// or later.
func serverAtLeast(v string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(v, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// TestDeadConsumersEventsComeBackFast: the events a consumer held when it
// died reach another consumer within the default AckWait (5 s), not the
// half minute the saga's order deadline was once exposed to. It is the
// broker's doing: each broker, on one database.
func TestDeadConsumersEventsComeBackFast(t *testing.T) {
	forEachBroker(t, func(t *testing.T, e *env) {
		stop := e.startRelay(t)
		defer stop()
		e.write(t, 0, 20, 5, 4)
		defaultWait := func(c *ConsumerConfig) { c.AckWait = 0 } // the default
		c := e.consumer(t, effectHandler, defaultWait)
		crashed := make(chan struct{})
		c.afterEffects = func() error { close(crashed); return errCrash }
		stopC := run(t, c.Run)
		waitCrash(t, crashed)
		if err := stopC(); !errors.Is(err, errCrash) {
			t.Fatalf("consumer stopped with %v, want the simulated crash", err)
		}
		died := time.Now()
		defer run(t, e.consumer(t, effectHandler, defaultWait).Run)()
		e.waitEffects(t, 20, 10*time.Second)
		took := time.Since(died)
		t.Logf("a dead consumer's events applied by another %s after it died", took.Round(time.Millisecond))
		if took > 7*time.Second {
			t.Fatalf("the dead consumer's events came back after %s, want within ~5 s", took)
		}
	})
}

// TestProgressAcks: work that takes longer than AckWait (a slow provider,
// a long queue behind a slow batch) is not delivered a second time while
// the consumer lives: each event's call runs once.
func TestProgressAcks(t *testing.T) {
	dbs := testenv.Databases()
	e := newEnv(t, dbs[0], testenv.Brokers()[0])
	e.startRelay(t)
	var calls atomic.Int64
	type data struct{ N int64 }
	slow := OnAfterCall(func(ctx context.Context, ev Event, d data) (int64, error) {
		calls.Add(1)
		time.Sleep(700 * time.Millisecond) // over two AckWaits for the batch
		return d.N, nil
	}, func(ctx context.Context, tx *sql.Tx, ev Event, d data, n int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, subject, n) VALUES ($1, $2, $3)`, ev.ID, ev.Subject, n)
		return err
	})
	// One event at a time: the ninth waits 8 × 0.7 s in the buffer.
	run(t, e.consumerOf(t, slow, func(c *ConsumerConfig) { c.AckWait, c.Batch = 300*time.Millisecond, 1 }).Run)
	e.write(t, 0, 9, 9, 1)
	e.waitEffects(t, 9, 20*time.Second)
	time.Sleep(time.Second) // a late redelivery would show here
	if n := calls.Load(); n != 9 {
		t.Fatalf("9 events, each slower than AckWait, were called %d times: the broker delivered some again", n)
	}
}

// TestKeyedBatches runs two consumers side by side on PostgreSQL whose
// streams name the same aggregates in opposite orders, each locking the
// aggregate's row: batches applied in stream order would lock the rows in
// opposite orders and deadlock; keyed batches lock them in one order.
func TestKeyedBatches(t *testing.T) {
	dbe := testenv.Databases()[len(testenv.Databases())-1]
	if dbe.Name != "postgres" {
		t.Skip("deadlocks between batches are PostgreSQL's: set " + testenv.PostgresEnv)
	}
	e := newEnv(t, dbe, testenv.Brokers()[0])
	ctx := context.Background()
	const aggregates, rounds = 20, 40
	if _, err := e.db.ExecContext(ctx, `CREATE TABLE aggregates (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range aggregates {
		if _, err := e.db.ExecContext(ctx, `INSERT INTO aggregates (id, n) VALUES ($1, 0)`, fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	up, down := e.typ, "souk."+e.service+".v1.Other"
	var deadlocks atomic.Int64
	lock := func(ctx context.Context, tx *sql.Tx, ev Event) error {
		_, err := tx.ExecContext(ctx, `UPDATE aggregates SET n = n + 1 WHERE id = $1`, ev.Subject)
		if err != nil && strings.Contains(err.Error(), "deadlock") {
			deadlocks.Add(1)
		}
		return err
	}
	for _, typ := range []string{up, down} {
		c, err := NewConsumer(e.db, e.js, ConsumerConfig{
			Name: e.service + "-" + typ[strings.LastIndexByte(typ, '.')+1:], Handlers: map[string]Handler{typ: rawHandler(lock).handler()},
			Keyed: true, AckWait: 5 * time.Second,
		}, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		run(t, c.Run)
	}
	// The events first, then the relay: the consumers meet full batches.
	for range rounds {
		err := e.outbox.Do(ctx, func(tx *sql.Tx) error {
			for i := range aggregates {
				if err := e.outbox.Emit(ctx, tx, up, fmt.Sprint("s", i), map[string]int{"n": i}); err != nil {
					return err
				}
				if err := e.outbox.Emit(ctx, tx, down, fmt.Sprint("s", aggregates-1-i), map[string]int{"n": i}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.startRelay(t)
	want := int64(2 * rounds)
	if !testenv.Eventually(30*time.Second, func() bool {
		var min int64
		e.db.QueryRow(`SELECT MIN(n) FROM aggregates`).Scan(&min)
		return min == want
	}) {
		t.Fatalf("the aggregates did not all reach %d", want)
	}
	var max int64
	e.db.QueryRow(`SELECT MAX(n) FROM aggregates`).Scan(&max)
	if max != want {
		t.Errorf("an aggregate reached %d, want %d: an effect was applied twice", max, want)
	}
	if n := deadlocks.Load(); n > 0 {
		t.Errorf("%d deadlocks between the two consumers' batches", n)
	}
}

// TestChange writes rows of two statements and their events in one
// Change, on every engine, and reads them back.
func TestChange(t *testing.T) {
	for _, dbe := range testenv.Databases() {
		t.Run(dbe.Name, func(t *testing.T) {
			ctx := context.Background()
			db := migrated(t, dbe)
			if _, err := db.ExecContext(ctx, `CREATE TABLE things (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO things (id, n) VALUES ('a', 1)`); err != nil {
				t.Fatal(err)
			}
			ob := NewOutbox(db)
			var evs []Event
			for _, n := range []int{1, 2} {
				e, err := New(ctx, "souk.test.v1.Thing", "a", map[string]int{"n": n})
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, e)
			}
			var affected int64
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				res, err := ob.Change(ctx, tx, evs,
					Statement{SQL: `INSERT INTO things (id, n) VALUES ($1, $2), ($3, $4)`, Args: []any{"b", 2, "c", 3}},
					Statement{SQL: `UPDATE things SET n = n + $1 WHERE id = $2`, Args: []any{10, "a"}})
				if err != nil {
					return err
				}
				affected, err = res.RowsAffected()
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			if err := db.QueryRowContext(ctx, `SELECT SUM(n) FROM things`).Scan(&sum); err != nil || sum != 16 || affected != 1 {
				t.Fatalf("sum %d (%v), last statement affected %d; want 16 and 1", sum, err, affected)
			}
			if got := testenv.OutboxTypes(t, db); len(got) != 2 {
				t.Fatalf("outbox %v, want the two events", got)
			}
		})
	}
}

func TestRenumber(t *testing.T) {
	if got, want := renumber(`UPDATE t SET a = $1, b = $12 WHERE id = $2`, 3), `UPDATE t SET a = $4, b = $15 WHERE id = $5`; got != want {
		t.Fatalf("renumber = %q, want %q", got, want)
	}
}
