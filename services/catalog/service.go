// Package catalog is the catalog service: products and their prices.
// Anyone may read the catalog; only admins change it. It also keeps a read
// model of the users service's registrations, from its events.
package catalog

import (
	"embed"
	"io/fs"

	"github.com/souk-shop/souk/platform/service"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "catalog"

//go:embed migrations/*.sql
var migrations embed.FS

// Config is the catalog service's settings (it has none yet) and how it
// builds itself.
type Config struct{}

// Name is the service's name.
func (Config) Name() string { return Name }

// Port is where the service listens unless told otherwise.
func (Config) Port() int { return 5002 }

// Migrations are the service's goose migrations.
func (Config) Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Validate checks the settings.
func (Config) Validate() error { return nil }

// Build makes the service: its API and the consumer of registrations.
func (Config) Build(d service.Deps) (service.Parts, error) {
	s := &Service{store: NewStore(d.DB, d.Outbox)}
	return service.Parts{Routes: s.Routes, Consumers: s.Consumers()}, nil
}

// Service serves the catalog API.
type Service struct {
	store *Store
}
