// Package inventory is the inventory service: stock per product, and
// reservations that the order saga makes, commits and releases. Stock never
// goes negative: every change is a conditional update, and the table checks
// it too.
package inventory

import (
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/souk-shop/souk/platform/service"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "inventory"

//go:embed migrations/*.sql
var migrations embed.FS

// DefaultReservationTTL is how long reserved stock waits by default.
const DefaultReservationTTL = time.Minute

// Config is the inventory service's settings (flags of souk up and souk
// serve) and how it builds itself.
type Config struct {
	ReservationTTL time.Duration `help:"Inventory: how long reserved stock waits at least to be committed (default 1m); a reservation also lasts until its order's deadline."`
}

// Name is the service's name.
func (Config) Name() string { return Name }

// Port is where the service listens unless told otherwise.
func (Config) Port() int { return 5003 }

// Migrations are the service's goose migrations.
func (Config) Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Validate checks the settings.
func (c Config) Validate() error {
	if ttl := c.ttl(); ttl < time.Second || ttl > 24*time.Hour {
		return fmt.Errorf("--reservation-ttl %s: hold reservations from 1s to 24h", ttl)
	}
	return nil
}

func (c Config) ttl() time.Duration {
	if c.ReservationTTL == 0 {
		return DefaultReservationTTL
	}
	return c.ReservationTTL
}

// Build makes the service: its API, the consumers of the saga's stock
// requests, and the loop that releases expired reservations.
func (c Config) Build(d service.Deps) (service.Parts, error) {
	s := &Service{store: NewStore(d.DB, d.Outbox, c.ttl()), log: d.Log}
	return service.Parts{Routes: s.Routes, Consumers: s.Consumers(), Loops: []service.Loop{s.RunExpiry}}, nil
}

// Service serves the inventory API and answers the order saga.
type Service struct {
	store *Store
	log   *slog.Logger
}
