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
// waiting.
var ErrBusy = errors.New("too many password hashes in progress")

// Hasher hashes and verifies passwords with argon2id. Each hash holds 19 MiB
// for tens of milliseconds, so at most a few run at once: a storm of logins
// queues instead of exhausting memory.
type Hasher struct {
	slots chan struct{}
}

// NewHasher returns a hasher that runs at most concurrent hashes at once.
func NewHasher(concurrent int) *Hasher {
	return &Hasher{slots: make(chan struct{}, max(concurrent, 1))}
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

func (h *Hasher) release() { <-h.slots }

// Hash returns password's argon2id hash in the PHC string format
// ($argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>).
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	h.release()
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemoryKiB, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// dummyHash is verified against when there is no stored hash, so that an
// unknown account takes as long to reject as a wrong password.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c291ay1kdW1teS1zYWx0$Lq3vQ1h1Qk6i8rQ5gVQxq0m4sS0n7dGm5b8xK2YH9yU"

// Verify reports whether password matches encoded, a hash from Hash. An
// empty encoded (no password set) never matches, but costs the same time.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
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
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, uint32(iters), uint32(mem), uint8(threads), uint32(len(want)))
	h.release()
	return subtle.ConstantTimeCompare(got, want) == 1 && encoded != dummyHash, nil
}
