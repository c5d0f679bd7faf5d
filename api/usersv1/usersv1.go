// Package usersv1 is the contract of the events the users service
// publishes, version 1: their types and payloads. Consumers import this
// package, never the users service; a change here is a change of the
// published contract (add a v2 type rather than change a v1 payload).
package usersv1

import (
	"errors"
	"time"
)

// UserRegistered is published when a user is created.
const UserRegistered = "souk.users.v1.UserRegistered"

// UserRegisteredData is the payload of UserRegistered.
type UserRegisteredData struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Email        string    `json:"email"`
	RegisteredAt time.Time `json:"registered_at"`
}

// Validate checks what every consumer relies on.
func (d UserRegisteredData) Validate() error {
	if d.ID == "" {
		return errors.New("no id")
	}
	return nil
}

// APIKeyCreated and APIKeyRevoked keep the gateways' view of API keys
// current: the users service projects them into the NATS KV bucket that
// every gateway watches.
const (
	APIKeyCreated = "souk.users.v1.APIKeyCreated"
	APIKeyRevoked = "souk.users.v1.APIKeyRevoked"
)

// APIKeyData is the payload of APIKeyCreated and APIKeyRevoked: the key's
// prefix, the SHA-256 of its secret, and its owner and role; a revocation
// carries the prefix alone.
type APIKeyData struct {
	Prefix     string `json:"prefix"`
	SecretHash string `json:"secret_hash,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	Role       string `json:"role,omitempty"`
	Revoked    bool   `json:"revoked,omitempty"`
}

// Validate checks what every consumer relies on.
func (d APIKeyData) Validate() error {
	if d.Prefix == "" {
		return errors.New("no prefix")
	}
	return nil
}

// SessionsRevoked ends sessions before their access tokens expire: the
// users service projects it into the revocation list that every gateway
// follows (a logout, a reused refresh token, a password or role change,
// a deleted user).
const SessionsRevoked = "souk.users.v1.SessionsRevoked"

// SessionsRevokedData is the payload of SessionsRevoked: one session of
// the user ended (SessionID), or every session of the user whose id sorts
// before SessionsBefore (session ids are UUIDv7, ordered by time).
type SessionsRevokedData struct {
	UserID         string    `json:"user_id"`
	SessionID      string    `json:"session_id,omitempty"`
	SessionsBefore string    `json:"sessions_before,omitempty"`
	RevokedAt      time.Time `json:"revoked_at"`
}

// Validate checks what every consumer relies on.
func (d SessionsRevokedData) Validate() error {
	switch {
	case d.UserID == "":
		return errors.New("no user id")
	case (d.SessionID == "") == (d.SessionsBefore == ""):
		return errors.New("want a session id or a cut, and not both")
	case d.RevokedAt.IsZero():
		return errors.New("no time of revocation")
	}
	return nil
}
