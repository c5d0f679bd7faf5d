package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/catalogv1"
	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

// TestStore is the store's contract, run against every database engine.
func TestStore(t *testing.T) {
	testenv.ForEachDatabase(t, Name, Config{}.Migrations(), func(t *testing.T, db *store.DB) {
		if err := events.Migrate(context.Background(), db, Name, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		testStore(t, NewStore(db, events.NewOutbox(db)), db)
	})
}

func newProduct(name string, cents int64) Product {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return Product{ID: server.NewID(), Name: name, Description: "a " + name, Price: money.Money{Amount: cents, Currency: "EUR"}, CreatedAt: now, UpdatedAt: now}
}

func testStore(t *testing.T, st *Store, db *store.DB) {
	ctx := context.Background()
	lamp := newProduct("Brass Lamp", 4999)
	if err := st.Create(ctx, lamp); err != nil {
		t.Fatalf("Create(lamp): %v", err)
	}

	t.Run("get returns what was created", func(t *testing.T) {
		got, err := st.Get(ctx, lamp.ID)
		if err != nil || got != lamp {
			t.Fatalf("Get(%s) = %+v, %v; want %+v", lamp.ID, got, err, lamp)
		}
	})

	t.Run("unknown id is not found", func(t *testing.T) {
		if _, err := st.Get(ctx, server.NewID()); problem.CodeOf(err) != problem.NotFound {
			t.Fatalf("Get(unknown) = %v, want not found", err)
		}
		if err := st.Delete(ctx, server.NewID()); problem.CodeOf(err) != problem.NotFound {
			t.Fatalf("Delete(unknown) = %v, want not found", err)
		}
	})

	t.Run("the database refuses a negative price", func(t *testing.T) {
		if err := st.Create(ctx, newProduct("Broken", -1)); err == nil {
			t.Fatal("Create with price -1 succeeded")
		}
	})

	t.Run("every change publishes what it changed, and only if it committed", func(t *testing.T) {
		want := []string{catalogv1.ProductCreated}
		check := func(step string) {
			t.Helper()
			if got := testenv.OutboxTypes(t, db); !slices.Equal(got, want) {
				t.Fatalf("after %s the outbox holds %v, want %v", step, got, want)
			}
		}
		check("create")
		if _, err := st.Update(ctx, lamp.ID, func(p *Product) error { p.Name = "Brass Lamp II"; return nil }); err != nil {
			t.Fatal(err)
		}
		want = append(want, catalogv1.ProductUpdated)
		check("a rename")
		if _, err := st.Update(ctx, lamp.ID, func(p *Product) error { return nil }); err != nil {
			t.Fatal(err)
		}
		check("an update that changes nothing")
		if _, err := st.Update(ctx, lamp.ID, func(p *Product) error { p.Price.Amount = 1; return errors.New("no") }); err == nil {
			t.Fatal("want the update function's error")
		}
		check("an aborted update")
		if err := st.Delete(ctx, server.NewID()); err == nil {
			t.Fatal("deleted an unknown product")
		}
		check("a failed delete")
		if _, err := st.Update(ctx, lamp.ID, func(p *Product) error { p.Price.Amount = 4500; return nil }); err != nil {
			t.Fatal(err)
		}
		want = append(want, catalogv1.ProductUpdated, catalogv1.PriceChanged)
		check("a price change")
	})

	t.Run("update changes the price", func(t *testing.T) {
		got, err := st.Update(ctx, lamp.ID, func(p *Product) error { p.Price.Amount = 3999; return nil })
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		stored, _ := st.Get(ctx, lamp.ID)
		if stored != got || stored.Price.Amount != 3999 {
			t.Fatalf("after Update, Get = %+v; Update returned %+v", stored, got)
		}
		boom := errors.New("boom")
		if _, err := st.Update(ctx, lamp.ID, func(p *Product) error { p.Price.Amount = 1; return boom }); !errors.Is(err, boom) {
			t.Fatalf("Update with failing fn = %v, want boom", err)
		}
		if stored, _ := st.Get(ctx, lamp.ID); stored.Price.Amount != 3999 {
			t.Fatalf("an aborted update was stored: price %d", stored.Price.Amount)
		}
	})

	names := []string{"Copper Kettle", "Silk Rug", "Wool rug", "Rug_50%", "Cedar Box"}
	for _, n := range names {
		if err := st.Create(ctx, newProduct(n, 1000)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("search matches names in any case, wildcards literally", func(t *testing.T) {
		cases := []struct {
			q    string
			want int
		}{
			{"rug", 3}, {"RUG", 3}, {"kettle", 1}, {"_50%", 1}, {"%", 1}, {"_", 1}, {"zebra", 0}, {"", 6},
		}
		for _, c := range cases {
			got, err := st.List(ctx, "", c.q, 100)
			if err != nil || len(got) != c.want {
				t.Errorf("List(q=%q) = %d products, %v; want %d", c.q, len(got), err, c.want)
			}
		}
	})

	t.Run("search pages with the cursor", func(t *testing.T) {
		first, err := st.List(ctx, "", "rug", 2)
		if err != nil || len(first) != 2 {
			t.Fatalf("first page: %d, %v", len(first), err)
		}
		rest, err := st.List(ctx, first[1].ID, "rug", 2)
		if err != nil || len(rest) != 1 || rest[0].ID <= first[1].ID {
			t.Fatalf("second page = %v, %v", rest, err)
		}
	})

	t.Run("delete removes", func(t *testing.T) {
		if err := st.Delete(ctx, lamp.ID); err != nil {
			t.Fatal(err)
		}
		if types := testenv.OutboxTypes(t, db); types[len(types)-1] != catalogv1.ProductDeleted {
			t.Fatalf("outbox after delete ends with %s", types[len(types)-1])
		}
		all, _ := st.List(ctx, "", "", 100)
		if len(all) != len(names) {
			t.Fatalf("%d products after deleting one of %d", len(all), len(names)+1)
		}
		for _, p := range all {
			if p.ID == lamp.ID {
				t.Fatal(fmt.Sprint("deleted product still listed: ", p))
			}
		}
	})
}
