package auth

import (
	"encoding/json"
	"testing"
	"time"
)

// TestRevocations: which tokens an entry ends, for how long, and that a
// later cut is never moved back by an earlier one.
func TestRevocations(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	entry := func(before string, at time.Time) []byte {
		b, _ := json.Marshal(Revocation{At: at, SessionsBefore: before})
		return b
	}
	r := NewRevocations()
	if r.Revoked("u1", "s5", t0) {
		t.Fatal("an empty list revokes")
	}
	for key, value := range map[string][]byte{
		SessionRevocationKey("s5"): entry("", t0),
		UserRevocationKey("u2"):    entry("s3", t0),
	} {
		if err := r.Put(key, value); err != nil {
			t.Fatal(err)
		}
	}
	// An earlier cut that arrives late does not undo the later one.
	if err := r.Put(UserRevocationKey("u2"), entry("s1", t0.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		user, session string
		at            time.Time
		want          bool
	}{
		{"the ended session", "u1", "s5", t0, true},
		{"another session of its user", "u1", "s6", t0, false},
		{"the ended session, a token's life later", "u1", "s5", t0.Add(RevocationTTL - time.Second), true},
		{"once no token of it can be valid", "u1", "s5", t0.Add(RevocationTTL), false},
		{"a session begun before the user's cut", "u2", "s2", t0, true},
		{"the cut itself is after every session it ends", "u2", "s3", t0, false},
		{"a session begun after it", "u2", "s4", t0, false},
		{"a token from before sessions, of a cut user", "u2", "", t0, true},
		{"a token from before sessions, of another user", "u3", "", t0, false},
	} {
		if got := r.Revoked(c.user, c.session, c.at); got != c.want {
			t.Errorf("%s: Revoked(%s, %s, t0+%s) = %v, want %v", c.name, c.user, c.session, c.at.Sub(t0), got, c.want)
		}
	}
	for _, bad := range []struct{ key, value string }{
		{"session.s1", `not json`},
		{"session.s1", `{}`},
		{"user.u1", `{"at":"2026-01-01T12:00:00Z"}`},
		{"group.g1", `{"at":"2026-01-01T12:00:00Z","sessions_before":"s1"}`},
	} {
		if err := r.Put(bad.key, []byte(bad.value)); err == nil {
			t.Errorf("Put(%s, %s) took it", bad.key, bad.value)
		}
	}
	r.Sweep(t0.Add(RevocationTTL))
	if n := r.entries.Load(); n != 0 || r.Revoked("u2", "s2", t0) {
		t.Fatalf("after the sweep: %d entries", n)
	}
}
