// Package system wires Souk's services to the platform: it starts the
// broker connection, each service's database, HTTP server and registry
// entry, and the gateway; and it stops them in the reverse order. `souk up`
// runs every service in one process, `souk serve` one; the code is the same.
package system

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
	"github.com/souk-shop/souk/services/catalog"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/inventory"
	"github.com/souk-shop/souk/services/orders"
	"github.com/souk-shop/souk/services/payments"
	"github.com/souk-shop/souk/services/users"
)

// service is what the system needs to know to run one of the shop's services.
type service struct {
	migrations fs.FS
	// build makes the service from its migrated database and the rest.
	build func(deps) built
	// defaultAddr is where it listens unless told otherwise.
	defaultAddr string
}

// deps is what a service is built from.
type deps struct {
	db      *store.DB
	outbox  *events.Outbox
	apiKeys jetstream.KeyValue
	hasher  *auth.Hasher
	admin   *Admin
	keyLead time.Duration
	// client calls other services by name (http://catalog/…), through
	// the registry, with breakers, a bulkhead and retries.
	client *http.Client
	saga   SagaConfig
	log    *slog.Logger
}

// built is a service ready to run: its routes, its event consumers, its
// background loops, and what it does once before serving.
type built struct {
	routes     func(*server.Router)
	consumers  []events.ConsumerConfig
	background []func(context.Context)
	// init runs before the server starts; what it returns is printed
	// (the generated admin password).
	init func(context.Context) (string, error)
}

var services = map[string]service{
	users.Name: {
		migrations: users.Migrations(),
		build: func(d deps) built {
			st := users.NewStore(d.db, d.outbox)
			svc := users.New(st, d.hasher, d.keyLead)
			return built{routes: svc.Routes, consumers: svc.Consumers(d.apiKeys), init: func(ctx context.Context) (string, error) {
				if d.admin == nil {
					return "", nil
				}
				return st.BootstrapAdmin(ctx, d.hasher, d.admin.Email, d.admin.Password)
			}}
		},
		defaultAddr: "127.0.0.1:5001",
	},
	catalog.Name: {
		migrations: catalog.Migrations(),
		build: func(d deps) built {
			svc := catalog.New(catalog.NewStore(d.db, d.outbox))
			return built{routes: svc.Routes, consumers: svc.Consumers()}
		},
		defaultAddr: "127.0.0.1:5002",
	},
	inventory.Name: {
		migrations: inventory.Migrations(),
		build: func(d deps) built {
			svc := inventory.New(inventory.NewStore(d.db, d.outbox, d.saga.ReservationTTL), d.log)
			return built{routes: svc.Routes, consumers: svc.Consumers(), background: []func(context.Context){svc.RunExpiry}}
		},
		defaultAddr: "127.0.0.1:5003",
	},
	payments.Name: {
		migrations: payments.Migrations(),
		build: func(d deps) built {
			provider := payments.NewSimulated(d.db, payments.SimulatedConfig{FailureRate: d.saga.PaymentFailureRate, Latency: d.saga.PaymentLatency})
			svc := payments.New(d.db, d.outbox, provider, d.log)
			return built{routes: svc.Routes, consumers: svc.Consumers()}
		},
		defaultAddr: "127.0.0.1:5004",
	},
	orders.Name: {
		migrations: orders.Migrations(),
		build: func(d deps) built {
			svc := orders.New(orders.NewStore(d.db, d.outbox), d.client, d.saga.OrderDeadline)
			return built{routes: svc.Routes, consumers: svc.Consumers(), background: []func(context.Context){
				func(ctx context.Context) { svc.RunDeadlines(ctx, d.log) },
			}}
		},
		defaultAddr: "127.0.0.1:5005",
	},
}

// SagaConfig tunes the order saga.
type SagaConfig struct {
	// OrderDeadline is how long an order may take to settle before it is
	// cancelled.
	OrderDeadline time.Duration
	// ReservationTTL is how long reserved stock waits to be committed;
	// longer than OrderDeadline, so that a live order never loses it.
	ReservationTTL time.Duration
	// PaymentFailureRate and PaymentLatency shape the simulated provider.
	PaymentFailureRate float64
	PaymentLatency     time.Duration
}

// DefaultSagaConfig suits a demo and the tests.
func DefaultSagaConfig() SagaConfig {
	return SagaConfig{OrderDeadline: 30 * time.Second, ReservationTTL: time.Minute}
}

// ServiceNames lists the services with a database, in start order.
func ServiceNames() []string {
	return []string{users.Name, catalog.Name, inventory.Name, payments.Name, orders.Name}
}

// DefaultAddr is where the named service (or the gateway) listens by default.
func DefaultAddr(name string) string {
	if name == gateway.Name {
		return "127.0.0.1:8080"
	}
	return services[name].defaultAddr
}

// IsService reports whether name is a service with a database.
func IsService(name string) bool {
	return slices.Contains(ServiceNames(), name)
}
