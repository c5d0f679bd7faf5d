package payments

import (
	"context"
	"database/sql"
	"errors"
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
			in(func(tx *sql.Tx) error { return exec(ctx, tx, record(o, Authorized, amount, "ref-1", "", t0)) })
			p, ok, err := st.Get(ctx, o)
			want := Payment{OrderID: o, Status: Authorized, Amount: amount, Reference: "ref-1", CreatedAt: t0, UpdatedAt: t0}
			if err != nil || !ok || p != want {
				t.Fatalf("Get = %+v, %v, %v; want %+v", p, ok, err, want)
			}
		})

		t.Run("capture moves only an authorized payment", func(t *testing.T) {
			o := server.NewID()
			in(func(tx *sql.Tx) error { return exec(ctx, tx, record(o, Authorized, amount, "ref", "", t0)) })
			in(func(tx *sql.Tx) error { return exec(ctx, tx, setStatus(o, Refunded, "", t0)) })
			in(func(tx *sql.Tx) error { return exec(ctx, tx, setStatus(o, Captured, Authorized, t0)) })
			if got := status(o); got != Refunded {
				t.Fatalf("a capture after a refund left it %s, want refunded", got)
			}
		})

		t.Run("the simulated provider lets a capture or a void of one authorization win, never both", func(t *testing.T) {
			sim := NewSimulated(db, SimulatedConfig{})
			for range 20 {
				o := server.NewID()
				ref, err := sim.Authorize(ctx, "authorize:"+o, o, amount, "4242424242424242")
				if err != nil {
					t.Fatal(err)
				}
				start := make(chan struct{})
				errs := make(chan error, 2)
				for _, op := range []func() error{
					func() error { return sim.Capture(ctx, "capture:"+o, o, ref) },
					func() error { return sim.Void(ctx, "void:"+o, o, ref) },
				} {
					go func() { <-start; errs <- op() }()
				}
				close(start)
				capture, void := <-errs, <-errs
				if capture == nil && void == nil {
					t.Fatalf("order %s: the provider both captured and voided one authorization", o)
				}
			}
		})

		t.Run("the simulated provider answers a key used again as the first time", func(t *testing.T) {
			sim := NewSimulated(db, SimulatedConfig{})
			o := server.NewID()
			ref, err := sim.Authorize(ctx, "authorize:"+o, o, amount, "4242424242424242")
			if err != nil {
				t.Fatal(err)
			}
			if again, err := sim.Authorize(ctx, "authorize:"+o, o, amount, "4242424242424242"); again != ref || err != nil {
				t.Fatalf("authorized again: %q, %v; want %q, the first reference", again, err, ref)
			}
			if _, err := sim.Authorize(ctx, "authorize:d"+o, o, amount, DeclineCard); !errors.Is(err, ErrDeclined) {
				t.Fatalf("the decline card: %v", err)
			}
			if _, err := sim.Authorize(ctx, "authorize:d"+o, o, amount, "4242424242424242"); !errors.Is(err, ErrDeclined) {
				t.Fatalf("its key again, with a good card: %v; want the first answer, declined", err)
			}
			if err := sim.Void(ctx, "void:"+o, o, ref); err != nil {
				t.Fatal(err)
			}
			if err := sim.Capture(ctx, "capture:"+o, o, ref); !errors.Is(err, ErrVoided) {
				t.Fatalf("a capture after the void: %v", err)
			}
			if err := sim.Void(ctx, "void:"+o, o, ref); err != nil {
				t.Fatalf("the void's key again: %v", err)
			}
			if err := sim.Capture(ctx, "capture:"+o, o, ref); !errors.Is(err, ErrVoided) {
				t.Fatalf("the capture's key again: %v; want the first answer, voided", err)
			}
			if err := sim.Capture(ctx, "capture:x"+o, o, "sim_none"); err == nil {
				t.Fatal("a capture of no authorization succeeded")
			}
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM simulated_provider_operations WHERE order_id = $1`, o).Scan(&n); err != nil || n != 4 {
				t.Fatalf("%d operations recorded (%v), want 4: two authorizations, the void and the refused capture", n, err)
			}
		})

		t.Run("a tombstone marks a payment never asked for, and never replaces one", func(t *testing.T) {
			cancelledFirst, paid := server.NewID(), server.NewID()
			in(func(tx *sql.Tx) error { return exec(ctx, tx, tombstone(cancelledFirst, t0)) })
			if got := status(cancelledFirst); got != Cancelled {
				t.Fatalf("tombstone: %s", got)
			}
			// An authorization that raced the cancellation replaces the
			// tombstone: it exists at the provider and must be voided.
			in(func(tx *sql.Tx) error {
				return exec(ctx, tx, record(cancelledFirst, Authorized, amount, "ref", "", t0))
			})
			if got := status(cancelledFirst); got != Authorized {
				t.Fatalf("an authorization over a tombstone: %s", got)
			}
			in(func(tx *sql.Tx) error { return exec(ctx, tx, record(paid, Captured, amount, "ref", "", t0)) })
			in(func(tx *sql.Tx) error { return exec(ctx, tx, tombstone(paid, t0)) })
			if got := status(paid); got != Captured {
				t.Fatalf("a tombstone over a captured payment: %s", got)
			}
		})
	})
}

// TestMethodStore is the contract of the payment methods' table, on every
// database engine.
func TestMethodStore(t *testing.T) {
	testenv.ForEachDatabase(t, Name, Config{}.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		st := NewStore(db, nil)
		t0 := time.Now().UTC().Truncate(time.Microsecond)
		ada, bob := server.NewID(), server.NewID()
		first := Method{Token: newToken(), CustomerID: ada, Brand: "visa", Last4: "4242", CreatedAt: t0}
		second := Method{Token: newToken(), CustomerID: ada, Brand: "amex", Last4: "0005", CreatedAt: t0.Add(time.Second)}
		for _, m := range []Method{first, second} {
			if err := st.AddMethod(ctx, m, "sealed-"+m.Token); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := st.Methods(ctx, ada)
		if err != nil || len(ms) != 2 || ms[0] != second || ms[1] != first {
			t.Fatalf("Methods(ada) = %+v, %v; want the two, newest first", ms, err)
		}
		if ms, err := st.Methods(ctx, bob); err != nil || len(ms) != 0 {
			t.Errorf("Methods(bob) = %+v, %v; want none", ms, err)
		}
		if n, err := st.CountMethods(ctx, ada); err != nil || n != 2 {
			t.Errorf("CountMethods(ada) = %d, %v", n, err)
		}
		owner, sealed, ok, err := st.sealedCard(ctx, first.Token)
		if err != nil || !ok || owner != ada || sealed != "sealed-"+first.Token {
			t.Errorf("sealedCard = %q, %q, %v, %v", owner, sealed, ok, err)
		}
		if _, _, ok, err := st.sealedCard(ctx, newToken()); ok || err != nil {
			t.Errorf("sealedCard of an unknown token: %v, %v", ok, err)
		}
		if ok, err := st.DeleteMethod(ctx, first.Token, bob); ok || err != nil {
			t.Errorf("bob deleting ada's method: %v, %v; want nothing deleted", ok, err)
		}
		if ok, err := st.DeleteMethod(ctx, first.Token, ada); !ok || err != nil {
			t.Errorf("ada deleting her method: %v, %v", ok, err)
		}
		if ok, err := st.DeleteMethod(ctx, second.Token, ""); !ok || err != nil {
			t.Errorf("an admin deleting ada's method: %v, %v", ok, err)
		}
		if n, _ := st.CountMethods(ctx, ada); n != 0 {
			t.Errorf("after the deletes ada has %d methods", n)
		}
	})
}

// exec runs a store's statement in tx, as a handler's Change would.
func exec(ctx context.Context, tx *sql.Tx, st events.Statement) error {
	_, err := tx.ExecContext(ctx, st.SQL, st.Args...)
	return err
}
