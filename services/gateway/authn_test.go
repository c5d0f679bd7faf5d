package gateway

import (
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/auth"
)

// TestRevokedTokens: a token whose session ended, or whose user's earlier
// sessions did, is refused from the next request on, though it was
// verified and cached before; other sessions are not.
func TestRevokedTokens(t *testing.T) {
	const session = "01900000-0000-7000-8000-000000000001" // the fixture's token's
	for _, c := range []struct {
		name, key string
		entry     auth.Revocation
		refused   bool
	}{
		{"another session ended", auth.SessionRevocationKey("01900000-0000-7000-8000-000000000002"), auth.Revocation{}, false},
		{"its session ended (a logout, a reused refresh token)", auth.SessionRevocationKey(session), auth.Revocation{}, true},
		{"its user's sessions ended (a password or role change)", auth.UserRevocationKey("u1"), auth.Revocation{SessionsBefore: "01900000-0000-7000-8000-000000000002"}, true},
		{"its user's sessions before it ended", auth.UserRevocationKey("u1"), auth.Revocation{SessionsBefore: session}, false},
		{"another user's sessions ended", auth.UserRevocationKey("u2"), auth.Revocation{SessionsBefore: "01900000-0000-7000-8000-000000000002"}, false},
	} {
		fx := newFixture(t)
		get := func() int {
			r := httptest.NewRequest(http.MethodGet, benchUser, nil)
			r.Header.Set("Authorization", "Bearer "+fx.token)
			w := httptest.NewRecorder()
			fx.router.ServeHTTP(w, r)
			fx.upstream.take()
			return w.Code
		}
		if code := get(); code != 200 {
			t.Fatalf("%s: before the entry: %d", c.name, code)
		}
		c.entry.At = time.Now()
		v, _ := json.Marshal(c.entry)
		if err := fx.authn.revoked.Put(c.key, v); err != nil {
			t.Fatal(err)
		}
		want := 200
		if c.refused {
			want = 401
		}
		if code := get(); code != want {
			t.Errorf("%s: the cached token after the entry %s: %d, want %d", c.name, c.key, code, want)
		}
		fx.authn.tokens = tokenCache{entries: map[string]cachedToken{}}
		if code := get(); code != want {
			t.Errorf("%s: the token verified afresh after the entry %s: %d, want %d", c.name, c.key, code, want)
		}
	}
}

// TestNewKeyFoundBySlowRefresh: a token signed with a key the JWK Set did
// not have when the gateway last read it is verified once a refresh finds
// the key, though the users service takes a while to answer; a token with
// a key id that no refresh finds is refused at once, but for one every
// 2 s, which waits for the limiter's turn and the refresh (refreshWait).
func TestNewKeyFoundBySlowRefresh(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	var mu sync.Mutex
	set := auth.JWKS{Keys: []auth.JWK{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // a users service on a busy machine
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	kf, err := jwks(t.Context(), srv.URL, srv.Client(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The users service makes a key after the gateway read the set.
	mu.Lock()
	set.Keys = append(set.Keys, auth.PublicJWK("k2", pub))
	mu.Unlock()
	key := auth.SigningKey{ID: "k2", Private: priv}
	raw, err := key.Sign("u1", auth.RoleCustomer, "01900000-0000-7000-8000-000000000001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Parser().Parse(raw, kf); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	forged, err := auth.SigningKey{ID: "nobody", Private: priv}.Sign("u1", auth.RoleCustomer, "01900000-0000-7000-8000-000000000001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 20 {
		if _, err := auth.Parser().Parse(forged, kf); err == nil {
			t.Fatal("a token of an unknown key id was verified")
		}
	}
	if took := time.Since(start); took > refreshWait+500*time.Millisecond {
		t.Fatalf("20 tokens with an unknown key id took %s to refuse", took)
	}
}
