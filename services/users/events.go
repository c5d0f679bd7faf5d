package users

import (
	"time"

	"github.com/souk-shop/souk/platform/auth"
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

// APIKeyCreated and APIKeyRevoked keep the gateways' view of API keys
// current: the users service projects them into the NATS KV bucket
// auth.APIKeyBucket, which every gateway watches.
const (
	APIKeyCreated = "souk.users.v1.APIKeyCreated"
	APIKeyRevoked = "souk.users.v1.APIKeyRevoked"
)

// APIKeyData is the payload of APIKeyCreated and APIKeyRevoked, and the
// value stored under the key's prefix in auth.APIKeyBucket.
type APIKeyData = auth.APIKeyEntry
