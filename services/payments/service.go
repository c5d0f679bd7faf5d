// Package payments is the payments service: it authorizes, captures,
// voids and refunds the order saga's payments through a Provider, every
// call with an idempotency key. The provider shipped is Simulated.
package payments

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"

	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/service"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "payments"

//go:embed migrations/*.sql
var migrations embed.FS

// Config is the payments service's settings (flags of souk up and souk
// serve) and how it builds itself. The settings shape the simulated
// provider.
type Config struct {
	PaymentFailureRate float64       `help:"Payments: the share of simulated provider calls that fail (0 to 1; default 0)."`
	PaymentLatency     time.Duration `help:"Payments: how long each simulated provider call takes (default 0s)."`
}

// Name is the service's name.
func (Config) Name() string { return Name }

// Port is where the service listens unless told otherwise.
func (Config) Port() int { return 5004 }

// Migrations are the service's goose migrations.
func (Config) Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Validate checks the settings.
func (c Config) Validate() error {
	if c.PaymentFailureRate < 0 || c.PaymentFailureRate > 1 {
		return fmt.Errorf("--payment-failure-rate %g: a share from 0 to 1", c.PaymentFailureRate)
	}
	if c.PaymentLatency < 0 || c.PaymentLatency > 10*time.Second {
		return fmt.Errorf("--payment-latency %s: from 0s to 10s", c.PaymentLatency)
	}
	return nil
}

// Sealed are the columns that hold sealed values: the cards.
func (Config) Sealed() []secrets.Column {
	return []secrets.Column{{Table: "payment_methods", Key: "token", Value: "card"}}
}

// Build makes the service: its API and the consumers of the saga's
// payment requests, paying through the simulated provider.
func (c Config) Build(d service.Deps) (service.Parts, error) {
	provider := NewSimulated(d.DB, SimulatedConfig{FailureRate: c.PaymentFailureRate, Latency: c.PaymentLatency})
	s := New(NewStore(d.DB, d.Outbox), provider, d.Keyring, d.Log)
	return service.Parts{Routes: s.Routes, Consumers: s.Consumers()}, nil
}

// Service serves the payments API and answers the order saga.
type Service struct {
	store    *Store
	provider Provider
	keys     *secrets.Keyring // seals and opens cards
	retry    failsafe.Executor[any]
	log      *slog.Logger
}

// New returns the service over st, paying through provider, keeping cards
// sealed with keys.
func New(st *Store, provider Provider, keys *secrets.Keyring, log *slog.Logger) *Service {
	policy := retrypolicy.NewBuilder[any]().
		HandleErrors(ErrUnavailable, context.DeadlineExceeded).
		WithMaxRetries(2).
		WithBackoff(50*time.Millisecond, 500*time.Millisecond).
		WithJitterFactor(0.5).
		ReturnLastFailure().
		Build()
	return &Service{store: st, provider: provider, keys: keys, retry: failsafe.With(policy), log: log}
}

// call runs a provider call with a timeout per try and up to two retries
// of ErrUnavailable.
func (s *Service) call(ctx context.Context, fn func(context.Context) error) error {
	return s.retry.WithContext(ctx).Run(func() error {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return fn(tctx)
	})
}
