package check

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/store"
	"github.com/souk-shop/souk/services/inventory"
	"github.com/souk-shop/souk/services/orders"
	"github.com/souk-shop/souk/services/payments"
)

// TestTotals writes orders as orders does, one total right and two wrong
// (one wrapped around, as int64 arithmetic would make it), and captures of
// the right and a wrong amount: Run reports exactly the wrong ones.
func TestTotals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(name string, migrations interface{ Migrations() fs.FS }) *store.DB {
		t.Helper()
		db, err := store.Open(ctx, filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := events.Migrate(ctx, db, name, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, name, migrations.Migrations(), testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		return db
	}
	dbs := Databases{
		Orders:    open(orders.Name, orders.Config{}),
		Inventory: open(inventory.Name, inventory.Config{}),
		Payments:  open(payments.Name, payments.Config{}),
	}
	now := time.Now().UTC()
	place := func(id string, unit, qty, total int64) {
		t.Helper()
		data := fmt.Sprintf(`{"customer_id":"c","items":[{"product_id":"p","quantity":%d,"unit_price":{"amount":%d,"currency":"EUR"}}],"total":{"amount":%d,"currency":"EUR"}}`, qty, unit, total)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO orders (id, customer_id, idempotency_key, request_hash, status, deadline_at, created_at) VALUES ($1, 'c', $1, 'h', 'confirmed', $2, $2)`, []any{id, now}},
			{`INSERT INTO order_events (order_id, seq, type, data, at) VALUES ($1, 1, 'souk.orders.v1.OrderPlaced', $2, $3)`, []any{id, data, now}},
		} {
			if _, err := dbs.Orders.ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	capture := func(id string, amount int64) {
		t.Helper()
		_, err := dbs.Payments.ExecContext(ctx, `INSERT INTO simulated_provider_operations
			(idempotency_key, operation, order_id, reference, amount, currency, outcome, created_at) VALUES ($1, 'capture', $2, 'r', $3, 'EUR', 'captured', $4)`,
			"capture:"+id, id, amount, now)
		if err != nil {
			t.Fatal(err)
		}
	}
	place("right", 499, 3, 1497)
	capture("right", 1497)
	place("wrong", 499, 3, 1000)
	capture("wrong", 1000)
	place("wrapped", 1<<62, 4, 0) // 2^62 × 4 wraps to 0 in int64
	capture("wrapped", 0)
	place("overcharged", 100, 1, 100)
	capture("overcharged", 150)

	r, err := Run(ctx, dbs, now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range r.Violations {
		got = append(got, v.Rule+": "+v.Detail)
	}
	slices.Sort(got)
	want := []string{
		CaptureAmount + ": order overcharged: captured 150 EUR of a total of 100 EUR",
		TotalMismatch + ": order wrapped: a total of 0 EUR for lines that make more than money.MaxAmount, or mix currencies",
		TotalMismatch + ": order wrong: a total of 1000 EUR for lines that make 1497",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n got  %q\n want %q", got, want)
	}
}
