package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The revocation list ends access tokens before they expire: the users
// service writes an entry when a session ends (logout, a reused refresh
// token) or when every session of a user must (a password change, a role
// change, the user's deletion); every gateway follows the bucket and
// refuses the tokens an entry names. An entry matters only while a token
// it names could still be valid, so it lives RevocationTTL.
const (
	// RevocationBucket holds the entries: session.<session id> ends one
	// session, user.<user id> every session of a user begun before a
	// point.
	RevocationBucket = "souk_revocations"
	// RevocationTTL is how long an entry matters: an access token's life,
	// the gateway's leeway for clocks (30 s), and a margin.
	RevocationTTL = TokenTTL + time.Minute
)

// Revocation is an entry's value.
type Revocation struct {
	// At is when the sessions ended: no token of theirs is valid after
	// At + TokenTTL, so the entry matters until At + RevocationTTL.
	At time.Time `json:"at"`
	// SessionsBefore, in a user's entry: the sessions whose ids sort
	// before it have ended. Session ids are UUIDv7, which sort by when
	// they were made; the users service makes this one when it ends them,
	// so that sessions it begins afterwards sort after it.
	SessionsBefore string `json:"sessions_before,omitempty"`
}

// SessionRevocationKey and UserRevocationKey are the keys of a session's
// and a user's entries.
func SessionRevocationKey(session string) string { return "session." + session }

// UserRevocationKey is the key of a user's entry (see SessionRevocationKey).
func UserRevocationKey(user string) string { return "user." + user }

// OpenRevocations creates or opens RevocationBucket: file storage (a NATS
// restart must not bring revoked tokens back), each entry living
// RevocationTTL.
func OpenRevocations(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RevocationBucket,
		Description: "Ended sessions (session.<id>) and users whose earlier sessions ended (user.<id>), for as long as their access tokens could live",
		History:     1,
		TTL:         RevocationTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("revocation bucket: %w", err)
	}
	return kv, nil
}

// Revocations is a copy of the revocation list, checked on every request
// that carries a token: lock-free reads of two maps, and none at all while
// the list is empty, as it mostly is.
type Revocations struct {
	entries  atomic.Int64
	sessions sync.Map // session id → time.Time: until when it matters
	users    sync.Map // user id → userCut
}

type userCut struct {
	before string
	until  time.Time
}

// NewRevocations returns an empty list.
func NewRevocations() *Revocations { return &Revocations{} }

// Revoked reports whether a token of user in session has been revoked at
// now. A token without a session (made before sessions existed) is ended
// by its user's entry only.
func (r *Revocations) Revoked(user, session string, now time.Time) bool {
	if r.entries.Load() == 0 {
		return false
	}
	if session != "" {
		if until, ok := r.sessions.Load(session); ok && now.Before(until.(time.Time)) {
			return true
		}
	}
	if c, ok := r.users.Load(user); ok {
		cut := c.(userCut)
		return session < cut.before && now.Before(cut.until)
	}
	return false
}

// Put applies an entry of the bucket. A user's entry never moves the cut
// back: of two, the later stands.
func (r *Revocations) Put(key string, value []byte) error {
	var v Revocation
	if err := json.Unmarshal(value, &v); err != nil || v.At.IsZero() {
		return fmt.Errorf("revocation %s: not one", key)
	}
	until := v.At.Add(RevocationTTL)
	if session, ok := strings.CutPrefix(key, "session."); ok {
		if _, loaded := r.sessions.Swap(session, until); !loaded {
			r.entries.Add(1)
		}
		return nil
	}
	user, ok := strings.CutPrefix(key, "user.")
	if !ok || v.SessionsBefore == "" {
		return fmt.Errorf("revocation %s: not one", key)
	}
	cut := userCut{before: v.SessionsBefore, until: until}
	for {
		old, loaded := r.users.LoadOrStore(user, cut)
		if !loaded {
			r.entries.Add(1)
			return nil
		}
		if o := old.(userCut); o.before >= cut.before || r.users.CompareAndSwap(user, o, cut) {
			return nil
		}
	}
}

// Sweep forgets the entries that no longer matter at now.
func (r *Revocations) Sweep(now time.Time) {
	r.sessions.Range(func(k, v any) bool {
		if !now.Before(v.(time.Time)) && r.sessions.CompareAndDelete(k, v) {
			r.entries.Add(-1)
		}
		return true
	})
	r.users.Range(func(k, v any) bool {
		if !now.Before(v.(userCut).until) && r.users.CompareAndDelete(k, v) {
			r.entries.Add(-1)
		}
		return true
	})
}

// WatchRevocations returns a list that follows kv until ctx ends, once it
// holds the entries kv had. It forgets entries by its own clock (NATS 2.9
// says nothing when an entry expires), every minute.
func WatchRevocations(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*Revocations, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch revocations: %w", err)
	}
	r := NewRevocations()
	synced := make(chan struct{})
	go func() {
		defer func() { _ = w.Stop() }()
		sweep := time.NewTicker(time.Minute)
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-sweep.C:
				r.Sweep(now)
			case e, ok := <-w.Updates():
				switch {
				case !ok:
					return
				case e == nil:
					close(synced)
				case e.Operation() == jetstream.KeyValuePut:
					// Deletions and expiries change nothing: an entry
					// matters for as long as it says, and no longer.
					if err := r.Put(e.Key(), e.Value()); err != nil {
						log.Warn("an entry of the revocation list is not one", "key", e.Key(), "err", err)
					}
				}
			}
		}
	}()
	select {
	case <-synced:
		return r, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("watch revocations: the entries did not arrive in 10s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
