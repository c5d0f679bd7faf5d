package users

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
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
		testStore(t, NewStore(db, events.NewOutbox(db), testKeyring(t)), db)
	})
}

func newUser(name, email string) User {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return User{ID: server.NewID(), Name: name, Email: email, Role: auth.RoleCustomer, CreatedAt: now, UpdatedAt: now}
}

func wantCode(t *testing.T, call string, err error, want problem.Code) {
	t.Helper()
	if got := problem.CodeOf(err); err == nil || got != want {
		t.Fatalf("%s: err = %v (code %s), want code %s", call, err, got, want)
	}
}

func testStore(t *testing.T, st *Store, db *store.DB) {
	ctx := context.Background()
	ada := newUser("Ada", "ada@example.com")
	if err := st.Create(ctx, ada, ""); err != nil {
		t.Fatalf("Create(ada): %v", err)
	}

	t.Run("create publishes UserRegistered; a failed create nothing", func(t *testing.T) {
		_ = st.Create(ctx, newUser("Ada twin", "ada@example.com"), "")
		if got := testenv.OutboxTypes(t, db); !slices.Equal(got, []string{usersv1.UserRegistered}) {
			t.Fatalf("outbox after one create and one duplicate: %v", got)
		}
	})

	t.Run("get returns what was created", func(t *testing.T) {
		got, err := st.Get(ctx, ada.ID)
		if err != nil {
			t.Fatalf("Get(%s): %v", ada.ID, err)
		}
		if got != ada {
			t.Fatalf("Get(%s) = %+v, want %+v", ada.ID, got, ada)
		}
	})

	t.Run("duplicate email is a conflict", func(t *testing.T) {
		err := st.Create(ctx, newUser("Other Ada", "ada@example.com"), "")
		wantCode(t, "Create(same email)", err, problem.Conflict)
	})

	t.Run("two spellings of one address are one account", func(t *testing.T) {
		nfc := newUser("José", norm.NFC.String("josé@example.com"))
		if err := st.Create(ctx, nfc, ""); err != nil {
			t.Fatal(err)
		}
		for _, other := range []string{norm.NFD.String("josé@example.com"), "JOSÉ@EXAMPLE.COM", "josé@Example.com"} {
			err := st.Create(ctx, newUser("José twin", other), "")
			wantCode(t, fmt.Sprintf("Create(%q) beside %q", other, nfc.Email), err, problem.Conflict)
			key, _ := emailKey(other)
			if id, _, _, _ := st.credentials(ctx, key); id != nfc.ID {
				t.Fatalf("credentials(%q) = %q, want %s", other, id, nfc.ID)
			}
		}
		if err := st.Delete(ctx, nfc.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unknown id is not found", func(t *testing.T) {
		_, err := st.Get(ctx, server.NewID())
		wantCode(t, "Get(unknown)", err, problem.NotFound)
		wantCode(t, "Delete(unknown)", st.Delete(ctx, server.NewID()), problem.NotFound)
		_, err = st.Update(ctx, server.NewID(), func(*User) error { return nil })
		wantCode(t, "Update(unknown)", err, problem.NotFound)
	})

	t.Run("update stores the change", func(t *testing.T) {
		got, err := st.Update(ctx, ada.ID, func(u *User) error { u.Name = "Ada Lovelace"; return nil })
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		stored, err := st.Get(ctx, ada.ID)
		if err != nil || stored != got || stored.Name != "Ada Lovelace" || !stored.UpdatedAt.After(ada.UpdatedAt) {
			t.Fatalf("after Update, Get = %+v, %v; Update returned %+v", stored, err, got)
		}
	})

	t.Run("update to a taken email is a conflict and changes nothing", func(t *testing.T) {
		bob := newUser("Bob", "bob@example.com")
		if err := st.Create(ctx, bob, ""); err != nil {
			t.Fatal(err)
		}
		_, err := st.Update(ctx, bob.ID, func(u *User) error { u.Email = "ada@example.com"; return nil })
		wantCode(t, "Update(bob's email to ada's)", err, problem.Conflict)
		if got, _ := st.Get(ctx, bob.ID); got.Email != "bob@example.com" {
			t.Fatalf("bob's email is %q after a failed update", got.Email)
		}
	})

	t.Run("an error from the update function aborts", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := st.Update(ctx, ada.ID, func(u *User) error { u.Name = "changed"; return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want boom", err)
		}
		if got, _ := st.Get(ctx, ada.ID); got.Name == "changed" {
			t.Fatal("the aborted update was stored")
		}
	})

	t.Run("rows from before email keys get theirs; the older of two equal ones keeps the address", func(t *testing.T) {
		legacy := func(email string) string {
			u := newUser("Legacy", email)
			_, err := db.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
				u.ID, u.Name, u.Email, u.Role, u.CreatedAt, u.UpdatedAt)
			if err != nil {
				t.Fatal(err)
			}
			return u.ID
		}
		older := legacy(norm.NFD.String("zoë@example.com"))
		newer := legacy(norm.NFC.String("zoë@example.com"))
		lookalike := legacy("\u0430dmin@example.com")
		plain := legacy("legacy@example.com")
		left, err := st.FillEmailKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(left, []string{newer, lookalike}) {
			t.Fatalf("left out %v, want the newer twin %s and the lookalike %s", left, newer, lookalike)
		}
		for email, want := range map[string]string{"zoë@example.com": older, "LEGACY@example.com": plain} {
			key, _ := emailKey(email)
			if id, _, _, _ := st.credentials(ctx, key); id != want {
				t.Errorf("after filling keys, %q finds %q, want %s", email, id, want)
			}
		}
		if again, err := st.FillEmailKeys(ctx); err != nil || len(again) != 0 {
			t.Fatalf("a second FillEmailKeys = %v, %v; want nothing left to do", again, err)
		}
		for _, id := range []string{older, newer, lookalike, plain} {
			if err := st.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("list pages through every user in id order", func(t *testing.T) {
		for i := range 5 {
			if err := st.Create(ctx, newUser(fmt.Sprint("user ", i), fmt.Sprintf("u%d@example.com", i)), ""); err != nil {
				t.Fatal(err)
			}
		}
		var all []User
		after := ""
		for {
			page, err := st.List(ctx, after, 3)
			if err != nil {
				t.Fatalf("List(%q, 3): %v", after, err)
			}
			all = append(all, page...)
			if len(page) < 3 {
				break
			}
			after = page[len(page)-1].ID
		}
		if len(all) != 7 {
			t.Fatalf("listed %d users, want 7", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i-1].ID >= all[i].ID {
				t.Fatalf("not in id order at %d: %s then %s", i, all[i-1].ID, all[i].ID)
			}
		}
	})

	t.Run("delete removes", func(t *testing.T) {
		if err := st.Delete(ctx, ada.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		_, err := st.Get(ctx, ada.ID)
		wantCode(t, "Get(deleted)", err, problem.NotFound)
		if err := st.Create(ctx, newUser("Ada again", "ada@example.com"), ""); err != nil {
			t.Fatalf("the email of a deleted user is free again, but Create = %v", err)
		}
	})
}
