// Package auth holds Souk's credentials: argon2id password hashes, EdDSA
// access tokens (JWT) with key ids and their JWK Set, API keys stored as
// hashes, and the identity headers the gateway passes to services.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2
// iterations, parallelism 1).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
)

// ErrBusy means too many hashes are being computed and the caller gave up
// waiting, or that its queue was full.
var ErrBusy = errors.New("too many password hashes in progress")

// Hasher hashes and verifies passwords with argon2id. Each hash holds 19 MiB
// for tens of milliseconds, so at most a few run at once: a storm of logins
// queues instead of exhausting memory. Callers that name a queue (For: the
// client's address) take turns: a free slot goes to the next queue in
// round-robin order, so a storm from some addresses, however many hashes
// they ask for, delays a caller from another address by about one hash
// per busy queue rather than by the whole backlog; and each queue holds at
// most MaxWaiting callers, past which ErrBusy comes at once.
type Hasher struct {
	mu      sync.Mutex
	free    int
	waiting map[string][]chan struct{} // per queue, first come first
	turns   []string                   // queues with callers waiting, in turn order
}

// MaxWaiting is how many callers one queue may have waiting for a slot.
const MaxWaiting = 16

// NewHasher returns a hasher that runs at most concurrent hashes at once.
func NewHasher(concurrent int) *Hasher {
	return &Hasher{free: max(concurrent, 1), waiting: map[string][]chan struct{}{}}
}

// acquire takes a slot for queue, waiting for its turn until ctx ends.
func (h *Hasher) acquire(ctx context.Context, queue string) error {
	h.mu.Lock()
	if h.free > 0 && len(h.turns) == 0 {
		h.free--
		h.mu.Unlock()
		return nil
	}
	q := h.waiting[queue]
	if len(q) >= MaxWaiting {
		h.mu.Unlock()
		return fmt.Errorf("%w: %d waiting from one caller", ErrBusy, len(q))
	}
	if len(q) == 0 {
		h.turns = append(h.turns, queue)
	}
	granted := make(chan struct{})
	h.waiting[queue] = append(q, granted)
	h.mu.Unlock()
	select {
	case <-granted:
		return nil
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-granted: // the slot came as ctx ended: pass it on
		h.releaseLocked()
	default:
		h.dequeue(queue, granted)
	}
	return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
}

// dequeue removes a waiter that gave up.
func (h *Hasher) dequeue(queue string, granted chan struct{}) {
	q := h.waiting[queue]
	for i, c := range q {
		if c == granted {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	h.setQueue(queue, q)
}

// setQueue stores q as queue's waiters, dropping the queue from the turns
// when it is empty.
func (h *Hasher) setQueue(queue string, q []chan struct{}) {
	if len(q) > 0 {
		h.waiting[queue] = q
		return
	}
	delete(h.waiting, queue)
	for i, name := range h.turns {
		if name == queue {
			h.turns = append(h.turns[:i:i], h.turns[i+1:]...)
			break
		}
	}
}

func (h *Hasher) release() {
	h.mu.Lock()
	h.releaseLocked()
	h.mu.Unlock()
}

// releaseLocked gives the slot to the first waiter of the queue whose turn
// it is, which then goes to the back of the turns; or frees it.
func (h *Hasher) releaseLocked() {
	if len(h.turns) == 0 {
		h.free++
		return
	}
	queue := h.turns[0]
	q := h.waiting[queue]
	close(q[0])
	h.turns = append(h.turns[1:], queue)
	h.setQueue(queue, q[1:])
}

// Queue hashes and verifies on a hasher's named queue.
type Queue struct {
	h    *Hasher
	name string
}

// For returns the hasher's queue named name: give each client its own
// (its address), so that no client's storm starves another.
func (h *Hasher) For(name string) Queue { return Queue{h: h, name: name} }

// Hash hashes on the shared queue "" (see Queue.Hash).
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	return h.For("").Hash(ctx, password)
}

// Verify verifies on the shared queue "" (see Queue.Verify).
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
	return h.For("").Verify(ctx, password, encoded)
}

// Hash returns password's argon2id hash in the PHC string format
// ($argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>).
func (q Queue) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := q.h.acquire(ctx, q.name); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	q.h.release()
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemoryKiB, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// dummyHash is verified against when there is no stored hash, so that an
// unknown account takes as long to reject as a wrong password.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c291ay1kdW1teS1zYWx0$Lq3vQ1h1Qk6i8rQ5gVQxq0m4sS0n7dGm5b8xK2YH9yU"

// Verify reports whether password matches encoded, a hash from Hash. An
// empty encoded (no password set) never matches, but costs the same time.
func (q Queue) Verify(ctx context.Context, password, encoded string) (bool, error) {
	if encoded == "" {
		encoded = dummyHash
		password += "\x00never"
	}
	var version, mem, iters, threads int
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("not an argon2id hash")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("argon2 version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iters, &threads); err != nil {
		return false, fmt.Errorf("argon2 parameters %q", parts[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("argon2 hash encoding: %w", err)
	}
	if err := q.h.acquire(ctx, q.name); err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, uint32(iters), uint32(mem), uint8(threads), uint32(len(want)))
	q.h.release()
	return subtle.ConstantTimeCompare(got, want) == 1 && encoded != dummyHash, nil
}
