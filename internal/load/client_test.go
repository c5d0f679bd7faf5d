package load

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokensRenew: a client whose access token is about to expire gets new
// tokens from its refresh token before its next operation, once however
// many operations want them at the same time (two exchanges of one refresh
// token would end the session), and logs in again if the session has
// ended.
func TestTokensRenew(t *testing.T) {
	var refreshes, logins atomic.Int32
	sessionOver := atomic.Bool{}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		switch r.URL.Path {
		case "/api/auth/refresh":
			refreshes.Add(1)
			if sessionOver.Load() || body["refresh_token"] != "r1" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			time.Sleep(20 * time.Millisecond) // while others ask too
			json.NewEncoder(w).Encode(tokens{AccessToken: "a2", RefreshToken: "r2"})
		case "/api/auth/login":
			logins.Add(1)
			json.NewEncoder(w).Encode(tokens{AccessToken: "a3", RefreshToken: "r3"})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(gw.Close)
	s := &shop{base: gw.URL, cfg: Config{Timeout: time.Second}}
	c := &client{http: gw.Client(), email: "e", password: "p"}

	c.setTokens(tokens{AccessToken: "a1", RefreshToken: "r1"})
	if got := s.bearer(t.Context(), c); got != "a1" || refreshes.Load() != 0 {
		t.Fatalf("a fresh token: bearer %q after %d refreshes; want a1 and none", got, refreshes.Load())
	}

	c.mu.Lock()
	c.renewed = time.Now().Add(-renewAfter)
	c.mu.Unlock()
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() { got[i] = s.bearer(t.Context(), c) })
	}
	wg.Wait()
	for _, g := range got {
		if g != "a2" {
			t.Fatalf("bearer during the renewal: %v, want a2 for all", got)
		}
	}
	if n := refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes for 8 operations at once, want 1", n)
	}

	sessionOver.Store(true)
	c.mu.Lock()
	c.renewed = time.Now().Add(-renewAfter)
	c.mu.Unlock()
	if got := s.bearer(t.Context(), c); got != "a3" || logins.Load() != 1 {
		t.Fatalf("with the session over: bearer %q after %d logins; want a3 after one", got, logins.Load())
	}
}
