package users

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/store"
)

// TestSessions is the sessions' contract on every engine: refresh tokens
// rotate, a reused one ends its session, logout and password and role
// changes end sessions and say so in SessionsRevoked, and no refresh token
// is stored in clear.
func TestSessions(t *testing.T) {
	testenv.ForEachDatabase(t, Name, Config{}.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := events.Migrate(ctx, db, Name, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		st := NewStore(db, events.NewOutbox(db), testKeyring(t))
		ada := newUser("Ada", "ada@example.com")
		if err := st.Create(ctx, ada, ""); err != nil {
			t.Fatal(err)
		}
		start := func() Session {
			t.Helper()
			s, err := st.StartSession(ctx, ada.ID, ada.Role)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		refused := func(what string, err error) {
			t.Helper()
			if problem.CodeOf(err) != problem.Unauthorized {
				t.Fatalf("%s: %v, want 401", what, err)
			}
		}

		t.Run("refresh tokens rotate; a reused one ends the session", func(t *testing.T) {
			s := start()
			next, err := st.Refresh(ctx, s.Refresh)
			if err != nil || next.ID != s.ID || next.UserID != ada.ID || next.Refresh == s.Refresh || next.Role != auth.RoleCustomer {
				t.Fatalf("Refresh = %+v, %v", next, err)
			}
			// The thief replays the first token: refused, and the owner's
			// current one dies with the session.
			_, err = st.Refresh(ctx, s.Refresh)
			refused("the first refresh token again", err)
			_, err = st.Refresh(ctx, next.Refresh)
			refused("the owner's refresh token after the reuse", err)
			if got := lastRevocation(t, db); got.SessionID != s.ID || got.UserID != ada.ID {
				t.Fatalf("after the reuse, the last SessionsRevoked is %+v, want session %s", got, s.ID)
			}
		})

		t.Run("two exchanges of one token at once: one wins, the session ends", func(t *testing.T) {
			s := start()
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := 0
			for range 2 {
				wg.Go(func() {
					if _, err := st.Refresh(ctx, s.Refresh); err == nil {
						mu.Lock()
						won++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if won != 1 {
				t.Fatalf("%d of two simultaneous exchanges succeeded, want 1", won)
			}
			if got := lastRevocation(t, db); got.SessionID != s.ID {
				t.Fatalf("the last SessionsRevoked is %+v, want session %s", got, s.ID)
			}
		})

		t.Run("unknown and empty tokens are refused and end nothing", func(t *testing.T) {
			_, err := st.Refresh(ctx, "no-such-token")
			refused("an unknown token", err)
			if err := st.EndSession(ctx, "no-such-token"); err != nil {
				t.Fatalf("logging out with an unknown token: %v", err)
			}
		})

		t.Run("logout ends the session", func(t *testing.T) {
			s := start()
			if err := st.EndSession(ctx, s.Refresh); err != nil {
				t.Fatal(err)
			}
			_, err := st.Refresh(ctx, s.Refresh)
			refused("a refresh after logout", err)
			if got := lastRevocation(t, db); got.SessionID != s.ID {
				t.Fatalf("the last SessionsRevoked is %+v, want session %s", got, s.ID)
			}
		})

		t.Run("a password change ends every session begun before it", func(t *testing.T) {
			a, b := start(), start()
			if err := st.SetPassword(ctx, ada.ID, "new hash"); err != nil {
				t.Fatal(err)
			}
			after := start()
			for _, s := range []Session{a, b} {
				_, err := st.Refresh(ctx, s.Refresh)
				refused("a session from before the change", err)
			}
			if _, err := st.Refresh(ctx, after.Refresh); err != nil {
				t.Fatalf("a session begun after the change: %v", err)
			}
			cut := lastRevocation(t, db)
			if cut.UserID != ada.ID || cut.SessionID != "" || !(a.ID < cut.SessionsBefore && b.ID < cut.SessionsBefore && cut.SessionsBefore < after.ID) {
				t.Fatalf("the cut %+v does not fall between sessions %s, %s and %s", cut, a.ID, b.ID, after.ID)
			}
		})

		t.Run("a role change ends the sessions, and refreshes carry the new role", func(t *testing.T) {
			s := start()
			if _, err := st.Update(ctx, ada.ID, func(u *User) error { u.Role = auth.RoleAdmin; return nil }); err != nil {
				t.Fatal(err)
			}
			_, err := st.Refresh(ctx, s.Refresh)
			refused("a session from before the role change", err)
			if got := lastRevocation(t, db); got.SessionsBefore <= s.ID {
				t.Fatalf("the last SessionsRevoked is %+v, want a cut after %s", got, s.ID)
			}
		})

		t.Run("refresh tokens are stored hashed, never in clear", func(t *testing.T) {
			s := start()
			next, err := st.Refresh(ctx, s.Refresh)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := db.QueryContext(ctx, `SELECT hash, session_id FROM refresh_tokens`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var hash, session string
				rows.Scan(&hash, &session)
				for _, tok := range []string{s.Refresh, next.Refresh} {
					if strings.Contains(hash, tok) || strings.Contains(session, tok) {
						t.Fatalf("a refresh token is in the database in clear")
					}
				}
			}
		})

		t.Run("deleting the user ends their sessions", func(t *testing.T) {
			eve := newUser("Eve", "eve@example.com")
			if err := st.Create(ctx, eve, ""); err != nil {
				t.Fatal(err)
			}
			s, err := st.StartSession(ctx, eve.ID, eve.Role)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Delete(ctx, eve.ID); err != nil {
				t.Fatal(err)
			}
			_, err = st.Refresh(ctx, s.Refresh)
			refused("a session of a deleted user", err)
			if got := lastRevocation(t, db); got.UserID != eve.ID || got.SessionsBefore <= s.ID {
				t.Fatalf("the last SessionsRevoked is %+v, want a cut of %s after %s", got, eve.ID, s.ID)
			}
		})

		t.Run("what cannot be used is forgotten", func(t *testing.T) {
			if err := st.forgetSessions(ctx, time.Now().UTC().Add(SessionTTL+time.Hour)); err != nil {
				t.Fatal(err)
			}
			var n int
			db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM refresh_tokens)`).Scan(&n)
			if n != 0 {
				t.Fatalf("%d sessions and refresh tokens left after every session expired", n)
			}
		})
	})
}

// lastRevocation is the payload of the last SessionsRevoked in the outbox.
func lastRevocation(t *testing.T, db *store.DB) usersv1.SessionsRevokedData {
	t.Helper()
	var data []byte
	err := db.QueryRowContext(context.Background(),
		`SELECT data FROM outbox WHERE type = $1 ORDER BY seq DESC LIMIT 1`, usersv1.SessionsRevoked).Scan(&data)
	if err == sql.ErrNoRows {
		t.Fatal("no SessionsRevoked in the outbox")
	}
	if err != nil {
		t.Fatal(err)
	}
	var d usersv1.SessionsRevokedData
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("SessionsRevoked %s: %v", data, err)
	}
	return d
}
