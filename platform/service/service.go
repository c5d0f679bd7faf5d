// Package service is the shape every Souk service has towards the
// platform: what it is given to build itself (Deps) and what it gives back
// to be run (Parts). Each service's service.go builds its Parts from Deps;
// internal/system provides the Deps, runs the Parts and stops them.
package service

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

// Deps is what the platform gives a service: each service takes what it
// needs.
type Deps struct {
	// DB is the service's own database, migrated.
	DB *store.DB
	// Outbox writes the service's events in its transactions.
	Outbox *events.Outbox
	// Client calls other services by name (http://catalog/…) through the
	// registry, with breakers, a bulkhead and retries.
	Client *http.Client
	// APIKeys opens the NATS KV bucket that gateways read API keys from:
	// only the service that writes them (users) may, and needs to.
	APIKeys func(context.Context) (jetstream.KeyValue, error)
	// Revocations opens the NATS KV bucket of revoked sessions that
	// gateways check tokens against: only users writes it.
	Revocations func(context.Context) (jetstream.KeyValue, error)
	// Hasher hashes passwords, a bounded number at once.
	Hasher *auth.Hasher
	// Keyring seals what the service keeps secret at rest (platform/secrets),
	// for services that say what they seal (Sealer); nil for the others.
	Keyring *secrets.Keyring
	// Log is the service's logger.
	Log *slog.Logger
}

// Loop is background work that runs until ctx ends.
type Loop func(ctx context.Context)

// Parts is what a built service gives the platform to run.
type Parts struct {
	// Routes registers the service's HTTP routes.
	Routes func(*server.Router)
	// Consumers are the service's event consumers.
	Consumers []events.ConsumerConfig
	// Loops run in the background until their context ends.
	Loops []Loop
	// Retired are event types the service published once and no more,
	// whose messages must not be kept (they held what is now kept
	// elsewhere): they are purged from its stream at every start.
	Retired []string
	// Init, if set, runs once before the service serves. What it returns,
	// if not empty, is shown to the operator once (a generated password).
	Init func(context.Context) (notice string, err error)
}

// Sealer is a service that keeps secrets sealed at rest: it needs a
// keyring, and `souk secrets rotate` re-wraps the columns it names.
type Sealer interface {
	Sealed() []secrets.Column
}
