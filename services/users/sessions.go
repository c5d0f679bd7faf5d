package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/platform/problem"
)

// Sessions: a sign-in begins one; its access tokens (auth.TokenTTL, five
// minutes) name it, and a refresh token gets the next access token and the
// next refresh token. Each refresh token is good for one exchange: a second
// exchange of one means two parties hold it, the thief and the owner, and
// ends the whole session (OAuth 2.0 Security BCP, refresh token rotation).
// The database keeps only the SHA-256 of a refresh token: 256 random bits
// need no slow hash.
const (
	// RefreshTTL is how long a refresh token stays good unused.
	RefreshTTL = 7 * 24 * time.Hour
	// SessionTTL is how long a session lasts, however often it is
	// refreshed.
	SessionTTL = 30 * 24 * time.Hour
)

// newRefreshToken returns a token to give the client once and the hash to
// keep.
func newRefreshToken() (token, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashRefreshToken(token)
}

func hashRefreshToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Session is a session as a sign-in or a refresh returns it.
type Session struct {
	ID      string
	UserID  string
	Role    string
	Refresh string    // the next refresh token, in clear: only ever given to the client
	Expires time.Time // when Refresh expires
}

// StartSession begins a session for the user with id and role.
func (s *Store) StartSession(ctx context.Context, userID, role string) (Session, error) {
	t := now()
	ses := Session{ID: newID(), UserID: userID, Role: role, Expires: t.Add(RefreshTTL)}
	var hash string
	ses.Refresh, hash = newRefreshToken()
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			ses.ID, userID, t, t.Add(SessionTTL))
		if err != nil {
			return fmt.Errorf("start a session: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			hash, ses.ID, t, ses.Expires)
		if err != nil {
			return fmt.Errorf("start a session: %w", err)
		}
		return nil
	})
	return ses, err
}

// errRefreshToken is every refusal of a refresh token: which one it was
// (unknown, expired, ended) is the database's business, not the client's.
func errRefreshToken(detail string) error {
	return problem.New(problem.Unauthorized, "%s; log in again", detail)
}

// Refresh exchanges a refresh token for the next one of its session, with
// the user's current role. A token used before ends its session, and is
// refused.
func (s *Store) Refresh(ctx context.Context, token string) (Session, error) {
	t := now()
	hash := hashRefreshToken(token)
	var ses Session
	var reused bool
	err := s.outbox.Do(ctx, func(tx *sql.Tx) error {
		var used, ended sql.NullTime
		var tokenExpires, sessionExpires time.Time
		err := tx.QueryRowContext(ctx, `
			SELECT r.session_id, r.used_at, r.expires_at, s.user_id, s.expires_at, s.ended_at, u.role
			FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
			WHERE r.hash = $1`, hash).Scan(&ses.ID, &used, &tokenExpires, &ses.UserID, &sessionExpires, &ended, &ses.Role)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errRefreshToken("unknown refresh token")
		case err != nil:
			return fmt.Errorf("refresh: %w", err)
		case ended.Valid:
			return errRefreshToken("this session has ended")
		case !t.Before(tokenExpires) || !t.Before(sessionExpires):
			return errRefreshToken("this refresh token has expired")
		}
		// Used once only: of two exchanges, even at once, one finds it
		// used (on PostgreSQL the second waits for the first's row lock,
		// then reads its update).
		res, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL`, t, hash)
		if err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			reused = true
			return s.endSession(ctx, tx, ses.UserID, ses.ID, t)
		}
		var next string
		ses.Refresh, next = newRefreshToken()
		ses.Expires = t.Add(RefreshTTL)
		if sessionExpires.Before(ses.Expires) {
			ses.Expires = sessionExpires
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			next, ses.ID, t, ses.Expires)
		if err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
		return nil
	})
	if err != nil {
		return Session{}, err
	}
	if reused {
		return Session{}, errRefreshToken("this refresh token was used before, so someone else holds it too: its session has ended")
	}
	return ses, nil
}

// EndSession ends the session a refresh token (used or not) belongs to: a
// logout. A token that names no live session ends nothing and is no error.
func (s *Store) EndSession(ctx context.Context, token string) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		var id, user string
		err := tx.QueryRowContext(ctx, `
			SELECT s.id, s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
			WHERE r.hash = $1 AND s.ended_at IS NULL`, hashRefreshToken(token)).Scan(&id, &user)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("log out: %w", err)
		}
		return s.endSession(ctx, tx, user, id, now())
	})
}

// endSession ends one session and puts it on the revocation list.
func (s *Store) endSession(ctx context.Context, tx *sql.Tx, userID, id string, t time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL`, t, id); err != nil {
		return fmt.Errorf("end session %s: %w", id, err)
	}
	return s.outbox.Emit(ctx, tx, usersv1.SessionsRevoked, userID,
		usersv1.SessionsRevokedData{UserID: userID, SessionID: id, RevokedAt: t})
}

// endSessions ends every session of a user and puts the user on the
// revocation list: every token of a session begun before now stops
// working. Sessions begun after, in this process, sort after the cut.
func (s *Store) endSessions(ctx context.Context, tx *sql.Tx, userID string) error {
	t := now()
	if _, err := tx.ExecContext(ctx, `UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL`, t, userID); err != nil {
		return fmt.Errorf("end the sessions of %s: %w", userID, err)
	}
	return s.outbox.Emit(ctx, tx, usersv1.SessionsRevoked, userID,
		usersv1.SessionsRevokedData{UserID: userID, SessionsBefore: newID(), RevokedAt: t})
}

// SetPassword gives the user with id a new password hash and ends every
// session of theirs.
func (s *Store) SetPassword(ctx context.Context, userID, hash string) error {
	return s.outbox.Do(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3`, hash, now(), userID)
		if err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return problem.New(problem.NotFound, "user %s not found", userID)
		}
		return s.endSessions(ctx, tx, userID)
	})
}

// emailKeyOf returns the key of the email of the user with id, as stored.
func (s *Store) emailKeyOf(ctx context.Context, userID string) (string, error) {
	var key sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT email_key FROM users WHERE id = $1`, userID).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", problem.New(problem.NotFound, "user %s not found", userID)
	}
	return key.String, err
}

// forgetSessions deletes what can no longer be used, as of t: sessions
// that expired or ended a day ago (with their refresh tokens), and
// refresh tokens that expired. A used refresh token is kept until it
// expires, so that its reuse is caught.
func (s *Store) forgetSessions(ctx context.Context, t time.Time) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < $1 OR ended_at < $2`, t, t.Add(-24*time.Hour)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE expires_at < $1`, t)
		return err
	})
}
