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
