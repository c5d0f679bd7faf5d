package users

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/secrets"
)

// Credential, signing-key and API-key storage. Everything here lives in the
// users service's own database.

// credentials returns the id, password hash and role of the user whose
// email has key (emailKey), or empty strings if there is none.
func (s *Store) credentials(ctx context.Context, key string) (id, hash, role string, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT id, password_hash, role FROM users WHERE email_key = $1`, key).Scan(&id, &hash, &role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", "", nil
	}
	return id, hash, role, err
}

// SetRole gives the user with email the role, revokes their API keys,
// which carry the role they were made with, and ends their sessions, whose
// tokens carry it too.
func (s *Store) SetRole(ctx context.Context, email, role string) error {
	if err := auth.ValidRole(role); err != nil {
		return problem.Field("role", err.Error())
	}
	key, err := emailKey(email)
	if err != nil {
		return err
	}
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		var id string
		err := tx.QueryRowContext(ctx, `UPDATE users SET role = $1, updated_at = $2 WHERE email_key = $3 RETURNING id`,
			role, now(), key).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return problem.New(problem.NotFound, "no user with email %s", email)
		}
		if err != nil {
			return fmt.Errorf("set role: %w", err)
		}
		if err := s.endSessions(ctx, tx, id); err != nil {
			return err
		}
		return s.revokeKeys(ctx, tx, `user_id = $1`, id)
	})
}

// BootstrapAdmin makes sure the user with email exists and is an admin.
// If it does not exist it is created with password, or with a random
// password, which is returned, if password is empty. If it exists and
// password is neither empty nor its password already, its password is set
// to it (which ends its sessions). Every instance of users does this at
// its start, so a restart must not end the admin's sessions for nothing.
func (s *Store) BootstrapAdmin(ctx context.Context, hasher *auth.Hasher, email, password string) (generated string, err error) {
	key, err := emailKey(email)
	if err != nil {
		return "", err
	}
	id, current, role, err := s.credentials(ctx, key)
	if err != nil {
		return "", err
	}
	if id != "" {
		if role != auth.RoleAdmin {
			if err := s.SetRole(ctx, email, auth.RoleAdmin); err != nil {
				return "", err
			}
		}
		if password == "" {
			return "", nil
		}
		if msg := checkPassword(password); msg != "" {
			return "", problem.Field("password", msg)
		}
		if same, err := hasher.Verify(ctx, password, current); err != nil || same {
			return "", err
		}
		hash, err := hasher.Hash(ctx, password)
		if err != nil {
			return "", err
		}
		return "", s.SetPassword(ctx, id, hash)
	}
	if password == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		password = base64.RawURLEncoding.EncodeToString(b[:])
		generated = password
	} else if msg := checkPassword(password); msg != "" {
		return "", problem.Field("password", msg)
	}
	hash, err := hasher.Hash(ctx, password)
	if err != nil {
		return "", err
	}
	t := now()
	u := User{ID: newID(), Name: "Administrator", Email: email, Role: auth.RoleAdmin, CreatedAt: t, UpdatedAt: t}
	if err := u.validate(); err != nil {
		return "", err
	}
	return generated, s.Create(ctx, u, hash)
}

// ActiveKey returns the key that signs new tokens, creating the first one
// (active at once) if there is none.
func (s *Store) ActiveKey(ctx context.Context) (auth.SigningKey, error) {
	var kid, seed string
	t := now()
	err := s.db.QueryRowContext(ctx,
		`SELECT kid, private_key FROM signing_keys WHERE activates_at <= $1 AND (retired_at IS NULL OR retired_at > $1)
		 ORDER BY activates_at DESC, kid DESC LIMIT 1`, t).Scan(&kid, &seed)
	if errors.Is(err, sql.ErrNoRows) {
		if _, _, err := s.RotateKey(ctx, 0); err != nil {
			return auth.SigningKey{}, err
		}
		return s.ActiveKey(ctx)
	}
	if err != nil {
		return auth.SigningKey{}, fmt.Errorf("signing key: %w", err)
	}
	raw, err := s.openSeed(kid, seed)
	if err != nil {
		return auth.SigningKey{}, err
	}
	return auth.SigningKey{ID: kid, Private: ed25519.NewKeyFromSeed(raw)}, nil
}

// openSeed returns a signing key's seed as stored: sealed with the keyring
// (platform/secrets), bound to the key's id; or, written by a version
// before sealing, in base64, until SealKeys seals it at the next start.
func (s *Store) openSeed(kid, stored string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(stored)
	if _, notSealed := secrets.KeyOf(stored); notSealed == nil {
		raw, err = s.keys.Open(stored, []byte(kid))
	}
	if err != nil || len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s does not open: %v", kid, err)
	}
	return raw, nil
}

// SealKeys seals the signing keys a version before sealing stored in
// base64, and returns how many it sealed.
func (s *Store) SealKeys(ctx context.Context) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, private_key FROM signing_keys WHERE private_key NOT LIKE 'souk1.%'`)
	if err != nil {
		return 0, err
	}
	type key struct{ kid, stored string }
	var clear []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.kid, &k.stored); err != nil {
			rows.Close()
			return 0, err
		}
		clear = append(clear, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, k := range clear {
		raw, err := s.openSeed(k.kid, k.stored)
		if err != nil {
			return 0, err
		}
		sealed, err := s.keys.Seal(raw, []byte(k.kid))
		if err != nil {
			return 0, err
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE signing_keys SET private_key = $1 WHERE kid = $2 AND private_key = $3`, sealed, k.kid, k.stored); err != nil {
			return 0, err
		}
	}
	return len(clear), nil
}

// KeyLead is how long a new signing key is published before it signs:
// longer than gateways take to refresh their copy of the JWK Set (1 min),
// so that no gateway meets a token whose key it has not seen.
const KeyLead = 2 * time.Minute

// RotateKey makes a new signing key, published now and signing from
// lead from now, when the keys before it retire; they keep verifying the
// tokens they signed until those expire. It returns the new key's id and
// when it starts signing.
func (s *Store) RotateKey(ctx context.Context, lead time.Duration) (string, time.Time, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return "", time.Time{}, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	kid := hex.EncodeToString(b[:])
	sealed, err := s.keys.Seal(seed, []byte(kid))
	if err != nil {
		return "", time.Time{}, err
	}
	t := now()
	activates := t.Add(lead)
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL OR retired_at > $1`, activates); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, created_at, activates_at) VALUES ($1, $2, $3, $4)`,
			kid, sealed, t, activates)
		return err
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("rotate signing key: %w", err)
	}
	return kid, activates, nil
}

// PublicKeys is the JWK Set: the active key, a key about to become active,
// and the keys retired recently enough that tokens they signed may still be
// valid.
func (s *Store) PublicKeys(ctx context.Context) (auth.JWKS, error) {
	cutoff := now().Add(-auth.TokenTTL - time.Minute)
	rows, err := s.db.QueryContext(ctx,
		`SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY activates_at DESC`, cutoff)
	if err != nil {
		return auth.JWKS{}, err
	}
	defer rows.Close()
	set := auth.JWKS{Keys: []auth.JWK{}}
	for rows.Next() {
		var kid, seed string
		if err := rows.Scan(&kid, &seed); err != nil {
			return auth.JWKS{}, err
		}
		raw, err := s.openSeed(kid, seed)
		if err != nil {
			return auth.JWKS{}, err
		}
		pub := ed25519.NewKeyFromSeed(raw).Public().(ed25519.PublicKey)
		set.Keys = append(set.Keys, auth.PublicJWK(kid, pub))
	}
	return set, rows.Err()
}

// APIKey is an API key as its owner sees it: never the secret, except once
// in Key when it is created.
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Key       string     `json:"key,omitempty"`
}

// CreateAPIKey makes a key for the user, with the user's current role, and
// publishes APIKeyCreated so that gateways learn it.
func (s *Store) CreateAPIKey(ctx context.Context, userID, name string) (APIKey, error) {
	key, prefix, hash := auth.NewAPIKey()
	k := APIKey{ID: newID(), Name: name, Prefix: prefix, CreatedAt: now(), Key: key}
	err := s.outbox.Do(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT role FROM users WHERE id = $1`, userID).Scan(&k.Role)
		if errors.Is(err, sql.ErrNoRows) {
			return problem.New(problem.NotFound, "user %s not found", userID)
		}
		if err != nil {
			return fmt.Errorf("get the role of %s: %w", userID, err)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			k.ID, userID, k.Name, k.Prefix, hash, k.Role, k.CreatedAt)
		if err != nil {
			return fmt.Errorf("insert api key: %w", err)
		}
		return s.outbox.Emit(ctx, tx, usersv1.APIKeyCreated, k.Prefix,
			usersv1.APIKeyData{Prefix: prefix, SecretHash: hash, UserID: userID, Role: k.Role})
	})
	return k, err
}

// APIKeys lists the user's keys, newest first.
func (s *Store) APIKeys(ctx context.Context, userID string) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, name, prefix, role, created_at, revoked_at FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := []APIKey{}
	for rows.Next() {
		var k APIKey
		var revoked sql.NullTime
		if err := rows.Scan(&k.ID, &k.Name, &k.Prefix, &k.Role, &k.CreatedAt, &revoked); err != nil {
			return nil, err
		}
		k.CreatedAt = k.CreatedAt.UTC()
		if revoked.Valid {
			t := revoked.Time.UTC()
			k.RevokedAt = &t
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// RevokeAPIKey revokes the key id if it belongs to userID (any key, if
// admin), and publishes APIKeyRevoked.
func (s *Store) RevokeAPIKey(ctx context.Context, id, userID string, admin bool) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT user_id FROM api_keys WHERE id = $1`, id).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || err == nil && owner != userID && !admin {
			return problem.New(problem.NotFound, "api key %s not found", id)
		}
		if err != nil {
			return fmt.Errorf("get api key %s: %w", id, err)
		}
		return s.revokeKeys(ctx, tx, `id = $1`, id)
	})
}

// revokeKeys revokes the unrevoked keys matching where (with one argument)
// and emits APIKeyRevoked for each.
func (s *Store) revokeKeys(ctx context.Context, tx *sql.Tx, where string, arg any) error {
	rows, err := tx.QueryContext(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE `+where+` AND revoked_at IS NULL RETURNING prefix`, arg, now())
	if err != nil {
		return fmt.Errorf("revoke api keys: %w", err)
	}
	var prefixes []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fmt.Errorf("revoke api keys: %w", err)
		}
		prefixes = append(prefixes, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("revoke api keys: %w", err)
	}
	for _, p := range prefixes {
		if err := s.outbox.Emit(ctx, tx, usersv1.APIKeyRevoked, p, usersv1.APIKeyData{Prefix: p, Revoked: true}); err != nil {
			return err
		}
	}
	return nil
}
