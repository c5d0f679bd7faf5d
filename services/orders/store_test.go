package orders

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

// TestStore is the store's contract, run against every database engine:
// the state an order's row keeps is always the fold of its log, the saga's
// steps are logged and published together, and two answers about one order
// applied at once both count.
func TestStore(t *testing.T) {
	for _, engine := range testenv.Databases() {
		t.Run(engine.Name, func(t *testing.T) { testStore(t, engine) })
	}
}

func testStore(t *testing.T, engine testenv.Database) {
	ctx := context.Background()
	db, err := store.Open(ctx, engine.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// Its migrations touch the outbox: the events' tables come first, as
	// when the service starts.
	if err := events.Migrate(ctx, db, Name, testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, Name, Config{}.Migrations(), testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	st := NewStore(db, events.NewOutbox(db))
	place := func() Order {
		t.Helper()
		at := now()
		o := Order{ID: server.NewID(), CustomerID: "c1", PaymentMethod: "pm_1", CreatedAt: at, Deadline: at.Add(time.Minute),
			Lines: []Line{{ProductID: "p1", Quantity: 2, UnitPrice: money.Money{Amount: 250, Currency: "EUR"}}}, Total: money.Money{Amount: 500, Currency: "EUR"}}
		got, created, err := st.Place(ctx, o, server.NewID(), "h")
		if err != nil || !created {
			t.Fatalf("Place = %v, %v", created, err)
		}
		return got
	}
	// answer applies an answer of inventory or payments as the
	// consumer does, and returns the types it published.
	answer := func(id, typ string) []string {
		t.Helper()
		before := len(testenv.OutboxTypes(t, db))
		err := st.Act(ctx, id, func(o Order) []step { return decide(o, typ, saga.Outcome{OrderID: id}) })
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		return testenv.OutboxTypes(t, db)[before:]
	}
	// kept checks that the row's state is the fold of the log.
	kept := func(id string) Order {
		t.Helper()
		fromLog, log, err := st.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var state, status string
		if err := db.QueryRowContext(ctx, `SELECT state, status FROM orders WHERE id = $1`, id).Scan(&state, &status); err != nil {
			t.Fatal(err)
		}
		f := decodeFolded(t, state)
		if got := f.order(); !reflect.DeepEqual(got, fromLog) || f.Seq != log[len(log)-1].Seq || status != fromLog.Status {
			t.Fatalf("the row keeps %+v at seq %d, status %s; the log folds to %+v at seq %d", got, f.Seq, status, fromLog, log[len(log)-1].Seq)
		}
		return fromLog
	}

	t.Run("the happy path, its state kept at every step", func(t *testing.T) {
		o := place()
		if got := kept(o.ID); !reflect.DeepEqual(got, o) {
			t.Fatalf("Place returned %+v; the log folds to %+v", o, got)
		}
		for _, c := range []struct {
			answer string
			want   []string
			status string
		}{
			{saga.StockReserved, []string{saga.PaymentRequested}, AwaitingPayment},
			{saga.PaymentAuthorized, []string{saga.StockCommitRequested, saga.PaymentCaptureRequested}, Confirming},
			{saga.StockCommitted, nil, Confirming},
			{saga.PaymentCaptured, []string{saga.OrderConfirmed}, Confirmed},
			{saga.PaymentCaptured, nil, Confirmed}, // late: logged, changes nothing
		} {
			if got := answer(o.ID, c.answer); !slices.Equal(got, c.want) {
				t.Fatalf("%s published %v, want %v", c.answer, got, c.want)
			}
			if got := kept(o.ID); got.Status != c.status {
				t.Fatalf("after %s: %s, want %s", c.answer, got.Status, c.status)
			}
		}
	})

	t.Run("a key placed again returns its order, or refuses another request", func(t *testing.T) {
		at := now()
		o := Order{ID: server.NewID(), CustomerID: "c2", PaymentMethod: "pm_1", CreatedAt: at, Deadline: at.Add(time.Minute), Total: money.Money{Amount: 1, Currency: "EUR"}}
		first, created, err := st.Place(ctx, o, "k", "h1")
		if err != nil || !created {
			t.Fatalf("Place = %v, %v", created, err)
		}
		again := o
		again.ID = server.NewID()
		got, created, err := st.Place(ctx, again, "k", "h1")
		if err != nil || created || got.ID != first.ID {
			t.Fatalf("the same request again: %s, created %v, %v; want %s", got.ID, created, err, first.ID)
		}
		if _, _, err := st.Place(ctx, again, "k", "h2"); !errors.Is(err, ErrKeyReused) {
			t.Fatalf("another request with the key: %v", err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE subject = $1`, again.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("the refused orders left %d events (%v)", n, err)
		}
	})

	t.Run("a row from before the state column is folded from its log", func(t *testing.T) {
		o := place()
		if _, err := db.ExecContext(ctx, `UPDATE orders SET state = '' WHERE id = $1`, o.ID); err != nil {
			t.Fatal(err)
		}
		if got := answer(o.ID, saga.StockReserved); !slices.Equal(got, []string{saga.PaymentRequested}) {
			t.Fatalf("published %v", got)
		}
		if got := kept(o.ID); got.Status != AwaitingPayment {
			t.Fatalf("status %s", got.Status)
		}
	})

	t.Run("two answers about one order at once both count", func(t *testing.T) {
		if db.Dialect != store.Postgres {
			t.Skip("SQLite has one writer at a time")
		}
		// The last two answers of the happy path come from different
		// consumers, side by side: the second, waiting for the first's
		// lock, must decide from the state the first left.
		o := place()
		answer(o.ID, saga.StockReserved)
		answer(o.ID, saga.PaymentAuthorized)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		committed := func(o Order) []step { return decide(o, saga.StockCommitted, saga.Outcome{OrderID: o.ID}) }
		if err := st.act(ctx, tx, o.ID, committed); err != nil {
			t.Fatal(err)
		}
		captured := make(chan error, 1)
		go func() {
			captured <- st.Act(ctx, o.ID, func(o Order) []step { return decide(o, saga.PaymentCaptured, saga.Outcome{OrderID: o.ID}) })
		}()
		select {
		case err := <-captured:
			t.Fatalf("the capture did not wait for the commit's lock: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-captured; err != nil {
			t.Fatal(err)
		}
		if got := kept(o.ID); got.Status != Confirmed {
			t.Fatalf("status %s, want confirmed", got.Status)
		}
	})

	t.Run("an answer about no order fails", func(t *testing.T) {
		err := st.Act(ctx, server.NewID(), func(Order) []step { return nil })
		if err == nil || !strings.Contains(err.Error(), "no order") {
			t.Fatalf("Act on no order = %v", err)
		}
	})
}

func decodeFolded(t *testing.T, state string) folded {
	t.Helper()
	var f folded
	if err := json.Unmarshal([]byte(state), &f); err != nil {
		t.Fatalf("state %q: %v", state, err)
	}
	return f
}
