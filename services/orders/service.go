// Package orders is the orders service: it takes orders and runs the
// saga that settles them (reserve stock, authorize payment, commit stock
// and capture payment, confirm; or compensate and cancel). An order is an
// append-only log of its events; its state is what the log folds to.
package orders

import (
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/souk-shop/souk/platform/service"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "orders"

//go:embed migrations/*.sql
var migrations embed.FS

// DefaultDeadline is how long an order may take to settle by default.
const DefaultDeadline = 30 * time.Second

// Config is the orders service's settings (flags of souk up and souk
// serve) and how it builds itself.
type Config struct {
	OrderDeadline time.Duration `help:"Orders: how long an order may take to settle before it is cancelled (default 30s)."`
}

// Name is the service's name.
func (Config) Name() string { return Name }

// Port is where the service listens unless told otherwise.
func (Config) Port() int { return 5005 }

// Migrations are the service's goose migrations.
func (Config) Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Validate checks the settings.
func (c Config) Validate() error {
	if d := c.deadline(); d < time.Second || d > 24*time.Hour {
		return fmt.Errorf("--order-deadline %s: give orders from 1s to 24h to settle", d)
	}
	return nil
}

func (c Config) deadline() time.Duration {
	if c.OrderDeadline == 0 {
		return DefaultDeadline
	}
	return c.OrderDeadline
}

// Build makes the service: its API, the consumers of inventory's and
// payments' answers, and the loop that cancels overdue orders.
func (c Config) Build(d service.Deps) (service.Parts, error) {
	s := &Service{store: NewStore(d.DB, d.Outbox), catalog: d.Client, deadline: c.deadline(), log: d.Log}
	return service.Parts{
		Routes: s.Routes, Consumers: s.Consumers(), Loops: []service.Loop{s.RunDeadlines},
		// v1 carried card numbers; none is kept, in the stream either.
		Retired: []string{"souk.orders.v1.PaymentRequested"},
	}, nil
}

// Service serves the orders API and runs the saga.
type Service struct {
	store    *Store
	catalog  *http.Client // resolves http://catalog/… through the registry, with breakers and retries
	deadline time.Duration
	log      *slog.Logger
}
