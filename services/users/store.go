package users

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/store"
)

// Store keeps users in the service's database, and writes the events their
// changes imply to the outbox in the same transaction.
type Store struct {
	db     *store.DB
	outbox *events.Outbox
	keys   *secrets.Keyring // seals the signing keys
}

// NewStore returns a store over db, which must be migrated, with its
// events going to outbox and its signing keys sealed with keys.
func NewStore(db *store.DB, outbox *events.Outbox, keys *secrets.Keyring) *Store {
	return &Store{db: db, outbox: outbox, keys: keys}
}

const userColumns = `id, name, email, role, created_at, updated_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Name, &u.Email, &u.Role, &u.CreatedAt, &u.UpdatedAt)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, err
}

// emailKey is the key an account's email is compared by (identity.go).
func emailKey(address string) (string, error) {
	e, msg := canonicalEmail(address)
	if msg != "" {
		return "", problem.Field("email", msg)
	}
	return e.Key, nil
}

// Create inserts u with a password hash ("" for none: the user cannot log
// in) and publishes UserRegistered. A taken email (in its canonical form)
// is a Conflict.
func (s *Store) Create(ctx context.Context, u User, passwordHash string) error {
	key, err := emailKey(u.Email)
	if err != nil {
		return err
	}
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO users (`+userColumns+`, password_hash, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			u.ID, u.Name, u.Email, u.Role, u.CreatedAt, u.UpdatedAt, passwordHash, key)
		if store.IsUniqueViolation(err) {
			return problem.New(problem.Conflict, "a user with email %s already exists", u.Email)
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		return s.outbox.Emit(ctx, tx, usersv1.UserRegistered, u.ID,
			usersv1.UserRegisteredData{ID: u.ID, Name: u.Name, Email: u.Email, RegisteredAt: u.CreatedAt})
	})
}

// Get returns the user with id, or NotFound.
func (s *Store) Get(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, problem.New(problem.NotFound, "user %s not found", id)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// List returns up to limit users with ids after after ("" for the start),
// oldest first.
func (s *Store) List(ctx context.Context, after string, limit int) ([]User, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Update applies fn to the user with id in one transaction and stores the
// result, which it returns. An error from fn aborts the update. A change of
// role revokes the user's API keys, which carry the role they were made
// with, and ends the user's sessions, whose tokens carry it too.
func (s *Store) Update(ctx context.Context, id string, fn func(*User) error) (User, error) {
	var u User
	err := s.outbox.Do(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return problem.New(problem.NotFound, "user %s not found", id)
		}
		if err != nil {
			return fmt.Errorf("get user: %w", err)
		}
		oldRole := u.Role
		if err := fn(&u); err != nil {
			return err
		}
		u.UpdatedAt = now()
		key, err := emailKey(u.Email)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET name = $1, email = $2, role = $3, updated_at = $4, email_key = $5 WHERE id = $6`,
			u.Name, u.Email, u.Role, u.UpdatedAt, key, u.ID)
		if store.IsUniqueViolation(err) {
			return problem.New(problem.Conflict, "a user with email %s already exists", u.Email)
		}
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if u.Role == oldRole {
			return nil
		}
		if err := s.endSessions(ctx, tx, u.ID); err != nil {
			return err
		}
		return s.revokeKeys(ctx, tx, `user_id = $1`, u.ID)
	})
	return u, err
}

// Delete removes the user with id, their API keys and sessions (whose
// tokens it revokes), or returns NotFound.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		if err := s.revokeKeys(ctx, tx, `user_id = $1`, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return problem.New(problem.NotFound, "user %s not found", id)
		}
		return s.endSessions(ctx, tx, id)
	})
}

// FillEmailKeys gives every user from before email keys existed its key,
// oldest first, and returns the ids of those that could not have one: an
// address that is no longer accepted (a lookalike), or one equal, in its
// canonical form, to an older account's. Those keep their rows but cannot
// sign in until an admin gives them another email.
func (s *Store) FillEmailKeys(ctx context.Context) (left []string, err error) {
	after := ""
	for {
		rows, err := s.db.QueryContext(ctx,
			`SELECT id, email FROM users WHERE email_key IS NULL AND id > $1 ORDER BY id LIMIT 500`, after)
		if err != nil {
			return left, fmt.Errorf("users without an email key: %w", err)
		}
		type row struct{ id, email string }
		var batch []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.email); err != nil {
				rows.Close()
				return left, err
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return left, err
		}
		if len(batch) == 0 {
			return left, nil
		}
		for _, r := range batch {
			after = r.id
			// A key without an @ matches no address: the row is left out.
			key := "!" + r.id
			if e, msg := canonicalEmail(r.email); msg == "" {
				key = e.Key
			}
			_, err := s.db.ExecContext(ctx, `UPDATE users SET email_key = $1 WHERE id = $2`, key, r.id)
			if store.IsUniqueViolation(err) {
				key = "!" + r.id
				_, err = s.db.ExecContext(ctx, `UPDATE users SET email_key = $1 WHERE id = $2`, key, r.id)
			}
			if err != nil {
				return left, fmt.Errorf("fill the email key of %s: %w", r.id, err)
			}
			if strings.HasPrefix(key, "!") {
				left = append(left, r.id)
			}
		}
	}
}
