package users

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/store"
)

// TestLoginWait: the rules, as attacks and as the rightful user meet them.
func TestLoginWait(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(level float64, ago time.Duration) throttleState {
		return throttleState{level: level, at: t0.Add(-ago)}
	}
	none := throttleState{at: t0}
	for _, c := range []struct {
		name                   string
		pair, account, address throttleState
		want                   time.Duration
	}{
		{"a first try", none, none, none, 0},
		{"a pair's first three failures are free", at(2.9, 0), at(2.9, 0), at(2.9, 0), 0},
		{"then 1 s after the last", at(3, 0), at(3, 0), at(3, 0), time.Second},
		{"the wait counts from the last failure", at(3, 400*time.Millisecond), at(3, 0), at(3, 0), 600 * time.Millisecond},
		{"and doubles with each failure", at(6, 0), at(6, 0), at(6, 0), 8 * time.Second},
		{"to at most 15 minutes", at(40, 0), at(5, 0), at(40, 0), 15 * time.Minute},
		{"a pair's failures drain: 10 min each", at(3, 20*time.Minute+time.Nanosecond), at(3, 0), none, 0},
		{"an account below its brake adds nothing", at(1, 0), at(9.9, 0), none, 0},
		{"a braked account makes a pair that failed wait a minute", at(1, 0), at(10, 0), none, time.Minute},
		{"brake, from the pair's last failure", at(1, 45*time.Second), at(10, 0), none, 15 * time.Second},
		{"the brake doubles every 10 failures", at(1, 0), at(30, 0), none, 4 * time.Minute},
		{"to at most an hour", at(1, 0), at(500, 0), none, time.Hour},
		{"the brake is the account's level now, drained", at(1, 0), at(10, 3*time.Minute), none, 0},
		{"an address that has not failed on a braked account tries", none, at(500, 0), none, 0},
		{"its pair drained: it tries again", at(1, 10*time.Minute+time.Nanosecond), at(500, 0), none, 0},
		{"an address that sprays many accounts: free below 100", none, none, at(99, 0), 0},
		{"then 1 s, doubling every 10", none, none, at(120, 0), 4 * time.Second},
	} {
		if got := loginWait(c.pair, c.account, c.address, t0); got != c.want {
			t.Errorf("%s: loginWait(pair %+v, account %+v, address %+v) = %s, want %s", c.name, c.pair, c.account, c.address, got, c.want)
		}
	}
}

// testThrottle runs the throttle's store on each engine: the rightful user
// signs in from a new address through a storm; concurrent tries cannot
// share one allowance.
func testThrottle(t *testing.T, st *Store, db *store.DB) {
	ctx := context.Background()
	storm := func(account string, addresses, tries int) (allowed int) {
		for a := range addresses {
			k := newLoginKeys(account, fmt.Sprintf("198.51.100.%d", a))
			for range tries {
				wait, err := st.beginLogin(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if wait == 0 {
					allowed++
				}
			}
		}
		return allowed
	}

	t.Run("a storm from 60 addresses is braked, its owner gets in from another", func(t *testing.T) {
		allowed := storm("victim@example.com", 60, 20)
		t.Logf("%d of 1200 wrong tries from 60 addresses reached the password check", allowed)
		// Before the brake: the first addresses' free tries; after it, one
		// try per new address.
		if allowed > 10+60 || allowed < 60 {
			t.Fatalf("%d of 1200 wrong tries from 60 addresses reached the password check; want one per address and a few more", allowed)
		}
		owner := newLoginKeys("victim@example.com", "203.0.113.7")
		if wait, err := st.beginLogin(ctx, owner); err != nil || wait != 0 {
			t.Fatalf("the owner at a new address: wait %s, %v; want none", wait, err)
		}
		if err := st.endLogin(ctx, owner, true); err != nil {
			t.Fatal(err)
		}
		// An attacking address must wait for the brake.
		wait, err := st.beginLogin(ctx, newLoginKeys("victim@example.com", "198.51.100.1"))
		if err != nil || wait < 30*time.Second {
			t.Fatalf("an attacking address after the storm: wait %s, %v; want the brake's minute or more", wait, err)
		}
	})

	t.Run("a success clears its pair", func(t *testing.T) {
		k := newLoginKeys("typo@example.com", "192.0.2.1")
		for range 3 {
			if wait, _ := st.beginLogin(ctx, k); wait != 0 {
				t.Fatal("a free try had to wait")
			}
		}
		if wait, _ := st.beginLogin(ctx, k); wait == 0 {
			t.Fatal("a fourth try at once did not wait")
		}
		if err := st.endLogin(ctx, k, true); err != nil {
			t.Fatal(err)
		}
		var n int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM login_throttle WHERE key = $1`, k.pair).Scan(&n)
		if n != 0 {
			t.Fatal("the pair's counter survived a success")
		}
		if wait, _ := st.beginLogin(ctx, k); wait != 0 {
			t.Fatalf("after a success: wait %s", wait)
		}
	})

	t.Run("concurrent tries share no allowance", func(t *testing.T) {
		k := newLoginKeys("race@example.com", "192.0.2.9")
		var mu sync.Mutex
		var wg sync.WaitGroup
		allowed := 0
		for range 20 {
			wg.Go(func() {
				wait, err := st.beginLogin(ctx, k)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if wait == 0 {
					allowed++
				}
			})
		}
		wg.Wait()
		if allowed != 3 {
			t.Fatalf("%d of 20 concurrent tries from one address went ahead; want the 3 free ones", allowed)
		}
	})

	t.Run("drained counters are forgotten", func(t *testing.T) {
		if err := st.forgetLogins(ctx, time.Now().UTC().Add(25*time.Hour)); err != nil {
			t.Fatal(err)
		}
		var n int
		db.QueryRowContext(ctx, `SELECT COUNT(*) FROM login_throttle`).Scan(&n)
		if n != 0 {
			t.Fatalf("%d counters left a day after their last failure", n)
		}
	})
}
