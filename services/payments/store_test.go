package payments

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

// TestStore is the store's contract, run against every database engine.
func TestStore(t *testing.T) {
	testenv.ForEachDatabase(t, Name, Config{}.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := events.Migrate(ctx, db, Name, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		st := NewStore(db, events.NewOutbox(db))
		in := func(fn func(tx *sql.Tx) error) {
			t.Helper()
			if err := db.InTx(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
		status := func(order string) string {
			t.Helper()
			p, ok, err := st.Get(ctx, order)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return "none"
			}
			return p.Status
		}
		amount := money.Money{Amount: 998, Currency: "EUR"}
		t0 := time.Now().UTC().Truncate(time.Microsecond)

		t.Run("an authorization is recorded and read back", func(t *testing.T) {
			o := server.NewID()
			if status(o) != "none" {
				t.Fatal("a payment that was never made exists")
			}
			in(func(tx *sql.Tx) error { return record(ctx, tx, o, Authorized, amount, "ref-1", "", t0) })
			p, ok, err := st.Get(ctx, o)
			want := Payment{OrderID: o, Status: Authorized, Amount: amount, Reference: "ref-1", CreatedAt: t0, UpdatedAt: t0}
			if err != nil || !ok || p != want {
				t.Fatalf("Get = %+v, %v, %v; want %+v", p, ok, err, want)
			}
		})

		t.Run("capture moves only an authorized payment", func(t *testing.T) {
			o := server.NewID()
			in(func(tx *sql.Tx) error { return record(ctx, tx, o, Authorized, amount, "ref", "", t0) })
			in(func(tx *sql.Tx) error { return setStatus(ctx, tx, o, Refunded, "", t0) })
			in(func(tx *sql.Tx) error { return setStatus(ctx, tx, o, Captured, Authorized, t0) })
			if got := status(o); got != Refunded {
				t.Fatalf("a capture after a refund left it %s, want refunded", got)
			}
		})

		t.Run("a tombstone marks a payment never asked for, and never replaces one", func(t *testing.T) {
			cancelledFirst, paid := server.NewID(), server.NewID()
			in(func(tx *sql.Tx) error { return tombstone(ctx, tx, cancelledFirst, t0) })
			if got := status(cancelledFirst); got != Cancelled {
				t.Fatalf("tombstone: %s", got)
			}
			// An authorization that raced the cancellation replaces the
			// tombstone: it exists at the provider and must be voided.
			in(func(tx *sql.Tx) error { return record(ctx, tx, cancelledFirst, Authorized, amount, "ref", "", t0) })
			if got := status(cancelledFirst); got != Authorized {
				t.Fatalf("an authorization over a tombstone: %s", got)
			}
			in(func(tx *sql.Tx) error { return record(ctx, tx, paid, Captured, amount, "ref", "", t0) })
			in(func(tx *sql.Tx) error { return tombstone(ctx, tx, paid, t0) })
			if got := status(paid); got != Captured {
				t.Fatalf("a tombstone over a captured payment: %s", got)
			}
		})
	})
}
