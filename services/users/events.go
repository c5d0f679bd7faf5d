package users

import "time"

// UserRegistered is published when a user is created.
const UserRegistered = "souk.users.v1.UserRegistered"

// UserRegisteredData is the payload of UserRegistered.
type UserRegisteredData struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Email        string    `json:"email"`
	RegisteredAt time.Time `json:"registered_at"`
}
