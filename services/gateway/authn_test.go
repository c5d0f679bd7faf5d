package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
