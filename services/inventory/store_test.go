package inventory

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

// TestStore is the store's contract, run against every database engine:
// stock never goes negative, a reservation is all or nothing, and each
// request of the saga is answered, once per effect, whatever came before.
func TestStore(t *testing.T) {
	testenv.ForEachDatabase(t, Name, Config{}.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := events.Migrate(ctx, db, Name, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		st := NewStore(db, events.NewOutbox(db), time.Minute)
		lamp, vase := server.NewID(), server.NewID()
		for id, n := range map[string]int64{lamp: 5, vase: 1} {
			if _, err := st.SetAvailable(ctx, id, n); err != nil {
				t.Fatal(err)
			}
		}
		// in applies fn as a consumer's handler would, in a transaction,
		// and returns the types it answered with.
		in := func(fn func(tx *sql.Tx) error) []string {
			t.Helper()
			before := len(testenv.OutboxTypes(t, db))
			if err := db.InTx(ctx, fn); err != nil {
				t.Fatal(err)
			}
			return testenv.OutboxTypes(t, db)[before:]
		}
		stock := func(id string) Stock {
			t.Helper()
			s, err := st.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		placed := func(order string, deadline time.Time, items ...saga.Item) saga.OrderPlacedData {
			return saga.OrderPlacedData{OrderID: order, Items: items, Deadline: deadline}
		}

		t.Run("set available keeps what is reserved and sold; negative is refused", func(t *testing.T) {
			if _, err := st.SetAvailable(ctx, lamp, -1); problem.CodeOf(err) != problem.Invalid {
				t.Fatalf("SetAvailable(-1) = %v, want invalid", err)
			}
			if got := stock(server.NewID()); got.Available != 0 || got.Reserved != 0 {
				t.Fatalf("a product never stocked: %+v", got)
			}
		})

		t.Run("a reservation is all or nothing", func(t *testing.T) {
			o := server.NewID()
			got := in(func(tx *sql.Tx) error {
				return st.reserve(ctx, tx, placed(o, time.Now(), saga.Item{ProductID: lamp, Quantity: 2}, saga.Item{ProductID: vase, Quantity: 2}))
			})
			if !slices.Equal(got, []string{saga.ReservationFailed}) || stock(lamp).Available != 5 || stock(vase).Available != 1 {
				t.Fatalf("answered %v; lamp %+v, vase %+v: the lamps were taken though the vases were short", got, stock(lamp), stock(vase))
			}
		})

		o := server.NewID()
		t.Run("reserve, then commit: sold", func(t *testing.T) {
			got := in(func(tx *sql.Tx) error {
				return st.reserve(ctx, tx, placed(o, time.Now(), saga.Item{ProductID: lamp, Quantity: 2}))
			})
			if !slices.Equal(got, []string{saga.StockReserved}) || stock(lamp) != (Stock{ProductID: lamp, Available: 3, Reserved: 2}) {
				t.Fatalf("reserve answered %v; stock %+v", got, stock(lamp))
			}
			for range 2 { // a commit asked for twice answers twice, sells once
				if got := in(func(tx *sql.Tx) error { return st.commit(ctx, tx, saga.OrderRef{OrderID: o}) }); !slices.Equal(got, []string{saga.StockCommitted}) {
					t.Fatalf("commit answered %v", got)
				}
			}
			if s := stock(lamp); s != (Stock{ProductID: lamp, Available: 3, Sold: 2}) {
				t.Fatalf("after commit: %+v", s)
			}
		})

		t.Run("release of a sale restocks it, once", func(t *testing.T) {
			for range 2 {
				if got := in(func(tx *sql.Tx) error { return st.release(ctx, tx, saga.OrderRef{OrderID: o}, Released) }); !slices.Equal(got, []string{saga.StockReleased}) {
					t.Fatalf("release answered %v", got)
				}
			}
			if s := stock(lamp); s != (Stock{ProductID: lamp, Available: 5}) {
				t.Fatalf("after release: %+v", s)
			}
		})

		t.Run("a release before the reservation tombstones it: the late reservation fails", func(t *testing.T) {
			late := server.NewID()
			in(func(tx *sql.Tx) error { return st.release(ctx, tx, saga.OrderRef{OrderID: late}, Released) })
			got := in(func(tx *sql.Tx) error {
				return st.reserve(ctx, tx, placed(late, time.Now(), saga.Item{ProductID: lamp, Quantity: 1}))
			})
			if !slices.Equal(got, []string{saga.ReservationFailed}) || stock(lamp).Available != 5 {
				t.Fatalf("the late reservation answered %v; stock %+v", got, stock(lamp))
			}
			if got := in(func(tx *sql.Tx) error { return st.commit(ctx, tx, saga.OrderRef{OrderID: late}) }); !slices.Equal(got, []string{saga.StockCommitFailed}) {
				t.Fatalf("a commit of it answered %v", got)
			}
		})

		t.Run("a commit and a release at once move the stock once", func(t *testing.T) {
			// On PostgreSQL consumers run side by side: a commit and a
			// release (or the expiry sweep) may reach one reservation at once.
			// The release starts while the commit's transaction is open, and
			// must decide from what the commit left, not from what was before.
			if _, err := st.SetAvailable(ctx, vase, stock(vase).Available+10); err != nil {
				t.Fatal(err)
			}
			o, other := server.NewID(), server.NewID() // other keeps stock reserved, above the table's floor of zero
			for _, id := range []string{o, other} {
				in(func(tx *sql.Tx) error {
					return st.reserve(ctx, tx, placed(id, time.Now(), saga.Item{ProductID: vase, Quantity: 2}))
				})
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.commit(ctx, tx, saga.OrderRef{OrderID: o}); err != nil {
				t.Fatal(err)
			}
			released := make(chan error, 1)
			go func() {
				released <- db.InTx(ctx, func(tx *sql.Tx) error { return st.release(ctx, tx, saga.OrderRef{OrderID: o}, Released) })
			}()
			time.Sleep(200 * time.Millisecond) // the release is waiting now
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-released; err != nil {
				t.Fatal(err)
			}
			s := stock(vase)
			var received, held int64
			if err := db.QueryRowContext(ctx, `SELECT received FROM stock WHERE product_id = $1`, vase).Scan(&received); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(ctx, `SELECT COALESCE(SUM(i.quantity), 0) FROM reservation_items i
				JOIN reservations r ON r.order_id = i.order_id WHERE r.status = 'reserved' AND i.product_id = $1`, vase).Scan(&held); err != nil {
				t.Fatal(err)
			}
			if s.Reserved != held || held != 2 || s.Available+s.Reserved+s.Sold != received {
				t.Fatalf("a commit and a release at once: %+v, received %d, open reservations hold %d; want 2 reserved, what they hold, and the stock adding up",
					s, received, held)
			}
			in(func(tx *sql.Tx) error { return st.release(ctx, tx, saga.OrderRef{OrderID: other}, Released) })
		})

		t.Run("a reservation lasts its TTL, and at least until its order's deadline", func(t *testing.T) {
			short := NewStore(db, events.NewOutbox(db), time.Millisecond)
			early, patient := server.NewID(), server.NewID()
			in(func(tx *sql.Tx) error {
				return short.reserve(ctx, tx, placed(early, time.Now(), saga.Item{ProductID: lamp, Quantity: 1}))
			})
			in(func(tx *sql.Tx) error {
				return short.reserve(ctx, tx, placed(patient, time.Now().Add(time.Hour), saga.Item{ProductID: lamp, Quantity: 1}))
			})
			// The first outlives its order's deadline by the clock skew allowed.
			time.Sleep(50 * time.Millisecond)
			if n, err := short.ExpireReservations(ctx, 100); n != 0 || err != nil {
				t.Fatalf("expired %d (%v) within the clock skew of the deadline", n, err)
			}
			var expires time.Time
			if err := db.QueryRowContext(ctx, `SELECT expires_at FROM reservations WHERE order_id = $1`, patient).Scan(&expires); err != nil {
				t.Fatal(err)
			}
			if time.Until(expires) < 59*time.Minute {
				t.Fatalf("an order with an hour left has its stock held until %s only", expires)
			}
			if _, err := db.ExecContext(ctx, `UPDATE reservations SET expires_at = $1 WHERE order_id = $2`, time.Now().Add(-time.Second).UTC(), early); err != nil {
				t.Fatal(err)
			}
			if n, err := short.ExpireReservations(ctx, 100); n != 1 || err != nil {
				t.Fatalf("expired %d (%v), want the one past its time", n, err)
			}
			if s := stock(lamp); s.Available != 4 || s.Reserved != 1 {
				t.Fatalf("after expiry: %+v, want one lamp back and one still held", s)
			}
			if got := in(func(tx *sql.Tx) error { return st.commit(ctx, tx, saga.OrderRef{OrderID: early}) }); !slices.Equal(got, []string{saga.StockCommitFailed}) {
				t.Fatalf("a commit of the expired reservation answered %v", got)
			}
		})
	})
}
