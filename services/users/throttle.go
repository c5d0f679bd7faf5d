package users

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// Login throttling that cannot lock the rightful user out (see "Failed
// logins" in docs/architecture.md for the reasoning). Three counters of
// failed logins, each a leaky bucket (a level that drains at a steady rate,
// so that old failures are forgiven little by little, with no window edge
// to wait for):
//
//   - per (account, client address): after 3 failures, each try waits
//     1 s, 2 s, 4 s… after the last one, at most 15 minutes;
//   - per account, from everywhere: past 10, the account is braked: an
//     address that has failed on it recently waits at least a minute
//     after its last failure, doubling every 10 more, at most an hour.
//     An address that has not failed on it still gets its try, so a storm
//     from many addresses slows the guessing down without keeping the
//     account's owner out;
//   - per client address, across accounts (spraying one password over many
//     accounts): past 100, every try from it waits, 1 s doubling every 10
//     more, at most 15 minutes.
//
// A try is counted as a failure before its password is checked, in the
// transaction that decides it may go ahead, so concurrent tries cannot all
// pass on one allowance; a success (or a check that never ran) takes it
// back. A try that must wait is refused (429 with Retry-After) before any
// hashing: a storm of throttled guesses costs the hasher nothing.

// A throttle rule: how fast a counter drains, and how long a try waits
// after the last failure given the counter's level then.
type throttleRule struct {
	drain time.Duration // one failure forgiven per drain
	free  float64       // failures with no wait
	first time.Duration // the wait at free failures
	every float64       // the wait doubles every this many more failures
	most  time.Duration // the longest wait
}

var (
	pairRule    = throttleRule{drain: 10 * time.Minute, free: 3, first: time.Second, every: 1, most: 15 * time.Minute}
	accountRule = throttleRule{drain: 3 * time.Minute, free: 10, first: time.Minute, every: 10, most: time.Hour}
	addressRule = throttleRule{drain: 36 * time.Second, free: 100, first: time.Second, every: 10, most: 15 * time.Minute}
)

// delay is how long after its last failure a counter at level makes a try
// wait.
func (r throttleRule) delay(level float64) time.Duration {
	if level < r.free {
		return 0
	}
	d := float64(r.first) * math.Exp2(math.Floor((level-r.free)/r.every))
	return time.Duration(min(d, float64(r.most)))
}

// throttleState is a counter: its level (failures not yet drained) at a
// time, that of its last failure.
type throttleState struct {
	level float64
	at    time.Time
}

// levelAt returns the level drained to t.
func (s throttleState) levelAt(r throttleRule, t time.Time) float64 {
	return max(0, s.level-float64(t.Sub(s.at))/float64(r.drain))
}

// loginWait is how long a try at t must wait, given the counters of its
// pair, account and address.
func loginWait(pair, account, address throttleState, t time.Time) time.Duration {
	wait := func(r throttleRule, s throttleState, level float64) time.Duration {
		return max(0, r.delay(level)-t.Sub(s.at))
	}
	w := max(wait(pairRule, pair, pair.level), wait(addressRule, address, address.level))
	if pair.levelAt(pairRule, t) > 0 {
		// The brake: measured from this pair's last failure.
		w = max(w, wait(accountRule, pair, account.levelAt(accountRule, t)))
	}
	return w
}

// loginKeys are the three counters' keys of a try: the account (by its
// email's key, whether or not it exists) and the client's address.
type loginKeys struct{ pair, account, address string }

func newLoginKeys(emailKey, addr string) loginKeys {
	return loginKeys{pair: "pair:" + emailKey + " " + addr, account: "account:" + emailKey, address: "address:" + addr}
}

// Levels are stored in thousandths of a failure.
const milli = 1000

// beginLogin decides whether a try may go ahead now: if not, it returns how
// long to wait; if so, it counts the try as a failure on every counter
// (endLogin takes it back).
func (s *Store) beginLogin(ctx context.Context, k loginKeys) (wait time.Duration, err error) {
	t := now()
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		// Pair, account, address: always in this order, so that
		// transactions on PostgreSQL take the rows' locks in one order.
		var states [3]throttleState
		for i, key := range []string{k.pair, k.account, k.address} {
			// Insert or touch: either way the row is locked until commit.
			var level int64
			err := tx.QueryRowContext(ctx, `
				INSERT INTO login_throttle (key, level, last_failure) VALUES ($1, 0, $2)
				ON CONFLICT (key) DO UPDATE SET level = login_throttle.level
				RETURNING level, last_failure`, key, t).Scan(&level, &states[i].at)
			if err != nil {
				return fmt.Errorf("login throttle: %w", err)
			}
			states[i].level = float64(level) / milli
		}
		// A try that took its time before another's commit, or a replica
		// whose clock is behind, may find a failure later than its now:
		// time does not run backwards here.
		for _, st := range states {
			if st.at.After(t) {
				t = st.at
			}
		}
		if wait = loginWait(states[0], states[1], states[2], t); wait > 0 {
			return nil
		}
		for i, r := range []throttleRule{pairRule, accountRule, addressRule} {
			level := int64(math.Round((states[i].levelAt(r, t) + 1) * milli))
			key := []string{k.pair, k.account, k.address}[i]
			if _, err := tx.ExecContext(ctx, `UPDATE login_throttle SET level = $1, last_failure = $2 WHERE key = $3`, level, t, key); err != nil {
				return fmt.Errorf("login throttle: %w", err)
			}
		}
		return nil
	})
	return wait, err
}

// endLogin takes back the failure beginLogin counted: the password was
// right (which also clears the pair's counter), or was never checked.
func (s *Store) endLogin(ctx context.Context, k loginKeys, succeeded bool) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if succeeded {
			if _, err := tx.ExecContext(ctx, `DELETE FROM login_throttle WHERE key = $1`, k.pair); err != nil {
				return fmt.Errorf("login throttle: %w", err)
			}
		}
		keys := []string{k.account, k.address}
		if !succeeded {
			keys = append(keys, k.pair)
		}
		for _, key := range keys {
			_, err := tx.ExecContext(ctx, `UPDATE login_throttle SET level = CASE WHEN level > $1 THEN level - $1 ELSE 0 END WHERE key = $2`, milli, key)
			if err != nil {
				return fmt.Errorf("login throttle: %w", err)
			}
		}
		return nil
	})
}

// forgetLogins deletes the counters that have drained, as of t.
func (s *Store) forgetLogins(ctx context.Context, t time.Time) error {
	// The slowest counter drains its cap's worth of failures, and more,
	// within a day; those idle longer are empty.
	_, err := s.db.ExecContext(ctx, `DELETE FROM login_throttle WHERE last_failure < $1`, t.Add(-24*time.Hour))
	return err
}
