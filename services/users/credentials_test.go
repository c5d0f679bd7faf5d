package users

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/store"
)

func TestCredentials(t *testing.T) {
	testenv.ForEachDatabase(t, Name, Config{}.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := events.Migrate(ctx, db, Name, testenv.Logger(t)); err != nil {
			t.Fatal(err)
		}
		st := NewStore(db, events.NewOutbox(db), testKeyring(t))
		hasher := auth.NewHasher(2)

		t.Run("signing keys are sealed at rest, and those stored in clear before get sealed", func(t *testing.T) {
			k, err := st.ActiveKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var stored string
			if err := db.QueryRowContext(ctx, `SELECT private_key FROM signing_keys WHERE kid = $1`, k.ID).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(stored, "souk1.") || strings.Contains(stored, base64.StdEncoding.EncodeToString(k.Private.Seed())) {
				t.Fatalf("signing key %s stored as %q: not sealed", k.ID, stored)
			}
			// A key as a version before sealing stored it.
			old := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
			if _, err := db.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, created_at, activates_at) VALUES ('legacy', $1, $2, $2)`,
				base64.StdEncoding.EncodeToString(old.Seed()), time.Now().UTC()); err != nil {
				t.Fatal(err)
			}
			if n, err := st.SealKeys(ctx); err != nil || n != 1 {
				t.Fatalf("SealKeys = %d, %v; want the one legacy key", n, err)
			}
			if n, err := st.SealKeys(ctx); err != nil || n != 0 {
				t.Fatalf("SealKeys again = %d, %v; want none", n, err)
			}
			db.QueryRowContext(ctx, `SELECT private_key FROM signing_keys WHERE kid = 'legacy'`).Scan(&stored)
			if raw, err := st.openSeed("legacy", stored); err != nil || !bytes.Equal(raw, old.Seed()) || !strings.HasPrefix(stored, "souk1.") {
				t.Fatalf("the legacy key after SealKeys: %q, %v", stored, err)
			}
			if _, err := db.ExecContext(ctx, `DELETE FROM signing_keys WHERE kid = 'legacy'`); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("the first signing key is made on demand and published", func(t *testing.T) {
			k1, err := st.ActiveKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := st.ActiveKey(ctx)
			if again.ID != k1.ID {
				t.Fatalf("a second key appeared without rotation: %s, %s", k1.ID, again.ID)
			}
			set, err := st.PublicKeys(ctx)
			if err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != k1.ID {
				t.Fatalf("JWKS = %+v, %v", set, err)
			}
			x, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
			if !ed25519.PublicKey(x).Equal(k1.Private.Public()) {
				t.Fatal("the JWKS key is not the signing key's public half")
			}

			// A key rotated in with a lead is published at once but signs
			// only from its activation.
			pending, _, err := st.RotateKey(ctx, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			set, _ = st.PublicKeys(ctx)
			if k, _ := st.ActiveKey(ctx); k.ID != k1.ID || len(set.Keys) != 2 {
				t.Fatalf("during the lead: active %s (want the old %s), JWKS has %d keys, want 2", k.ID, k1.ID, len(set.Keys))
			}
			kid, _, err := st.RotateKey(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			k2, _ := st.ActiveKey(ctx)
			set, _ = st.PublicKeys(ctx)
			if k2.ID != kid || len(set.Keys) != 3 {
				t.Fatalf("after rotation: active %s (want %s), JWKS has %d keys, want the new and the two retired", k2.ID, kid, len(set.Keys))
			}
			if _, err := db.ExecContext(ctx, `DELETE FROM signing_keys WHERE kid = $1`, pending); err != nil {
				t.Fatal(err)
			}
			// A key retired longer ago than a token lives leaves the JWKS.
			old := time.Now().UTC().Add(-auth.TokenTTL - 2*time.Minute)
			if _, err := db.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE kid = $2`, old, k1.ID); err != nil {
				t.Fatal(err)
			}
			set, _ = st.PublicKeys(ctx)
			if len(set.Keys) != 1 || set.Keys[0].KeyID != kid {
				t.Fatalf("JWKS after the old key's tokens expired: %+v", set)
			}
		})

		ada := newUser("Ada", "ada@example.com")
		if err := st.Create(ctx, ada, ""); err != nil {
			t.Fatal(err)
		}

		t.Run("api keys: created once, listed without secret, revoked with an event", func(t *testing.T) {
			k, err := st.CreateAPIKey(ctx, ada.ID, "ci")
			if err != nil {
				t.Fatal(err)
			}
			prefix, secret, ok := auth.ParseAPIKey(k.Key)
			if !ok || prefix != k.Prefix || k.Role != auth.RoleCustomer {
				t.Fatalf("created key %+v does not parse", k)
			}
			var hash string
			db.QueryRowContext(ctx, `SELECT secret_hash FROM api_keys WHERE id = $1`, k.ID).Scan(&hash)
			if !auth.APIKeyMatches(secret, hash) || hash == secret {
				t.Fatal("the stored hash does not match the key's secret")
			}
			list, err := st.APIKeys(ctx, ada.ID)
			if err != nil || len(list) != 1 || list[0].Key != "" || list[0].RevokedAt != nil {
				t.Fatalf("APIKeys = %+v, %v", list, err)
			}
			other := newUser("Eve", "eve@example.com")
			st.Create(ctx, other, "")
			if err := st.RevokeAPIKey(ctx, k.ID, other.ID, false); problem.CodeOf(err) != problem.NotFound {
				t.Fatalf("another user revoking ada's key: %v, want not found", err)
			}
			if err := st.RevokeAPIKey(ctx, k.ID, ada.ID, false); err != nil {
				t.Fatal(err)
			}
			list, _ = st.APIKeys(ctx, ada.ID)
			if list[0].RevokedAt == nil {
				t.Fatal("revoked key not shown revoked")
			}
			types := testenv.OutboxTypes(t, db)
			if n := len(types); !slices.Contains(types, usersv1.APIKeyCreated) || types[n-1] != usersv1.APIKeyRevoked {
				t.Fatalf("outbox holds %v, want an APIKeyCreated and, last, an APIKeyRevoked", types)
			}
		})

		t.Run("a role change revokes the user's keys", func(t *testing.T) {
			if _, err := st.CreateAPIKey(ctx, ada.ID, "second"); err != nil {
				t.Fatal(err)
			}
			if err := st.SetRole(ctx, ada.Email, auth.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			for _, k := range must(st.APIKeys(ctx, ada.ID)) {
				if k.RevokedAt == nil {
					t.Fatalf("key %s survived a role change", k.Name)
				}
			}
			if u, _ := st.Get(ctx, ada.ID); u.Role != auth.RoleAdmin {
				t.Fatalf("role after SetRole: %s", u.Role)
			}
			if err := st.SetRole(ctx, ada.Email, "emperor"); problem.CodeOf(err) != problem.Invalid {
				t.Fatalf("SetRole(emperor) = %v", err)
			}
		})

		t.Run("BootstrapAdmin creates once, with a random password if none is given", func(t *testing.T) {
			pw, err := st.BootstrapAdmin(ctx, hasher, "root@example.com", "")
			if err != nil || len(pw) < 16 {
				t.Fatalf("first BootstrapAdmin = %q, %v; want a generated password", pw, err)
			}
			_, hash, role, _ := st.credentials(ctx, "root@example.com")
			if ok, _ := hasher.Verify(ctx, pw, hash); !ok || role != auth.RoleAdmin {
				t.Fatalf("the generated password does not work, or role %s", role)
			}
			if again, err := st.BootstrapAdmin(ctx, hasher, "root@example.com", ""); err != nil || again != "" {
				t.Fatalf("second BootstrapAdmin = %q, %v; want nothing generated", again, err)
			}
			if _, err := st.BootstrapAdmin(ctx, hasher, "root@example.com", "correct horse battery"); err != nil {
				t.Fatal(err)
			}
			_, hash, _, _ = st.credentials(ctx, "root@example.com")
			if ok, _ := hasher.Verify(ctx, "correct horse battery", hash); !ok {
				t.Fatal("an explicit password did not replace the generated one")
			}
			if ok, _ := hasher.Verify(ctx, pw, hash); ok {
				t.Fatal("the old password still works")
			}
			// Every instance bootstraps at its start: the same password
			// again leaves the admin's sessions alone.
			admin, _, _, _ := st.credentials(ctx, "root@example.com")
			sess, err := st.StartSession(ctx, admin, auth.RoleAdmin)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.BootstrapAdmin(ctx, hasher, "root@example.com", "correct horse battery"); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Refresh(ctx, sess.Refresh); err != nil {
				t.Fatalf("a restart with the same admin password ended the admin's session: %v", err)
			}
		})

		t.Run("login throttle", func(t *testing.T) { testThrottle(t, st, db) })

		t.Run("outbox", func(t *testing.T) {
			if got := testenv.OutboxTypes(t, db); !slices.Contains(got, usersv1.UserRegistered) {
				t.Fatalf("no UserRegistered in %v", got)
			}
		})
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// testKeyring is a keyring of its own for a test.
func testKeyring(t *testing.T) *secrets.Keyring {
	t.Helper()
	k, err := secrets.Ensure(filepath.Join(t.TempDir(), "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
