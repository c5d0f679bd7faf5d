// Package system wires Souk's services to the platform: it starts the
// broker connection, each service's database, HTTP server and registry
// entry, and the gateway; and it stops them in the reverse order. `souk up`
// runs every service in one process, `souk serve` one; the code is the same.
package system

import (
	"io/fs"
	"slices"

	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
	"github.com/souk-shop/souk/services/catalog"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/users"
)

// service is what the system needs to know to run one of the shop's services.
type service struct {
	migrations fs.FS
	// build makes the service over its migrated database and its outbox.
	build func(db *store.DB, outbox *events.Outbox) built
	// defaultAddr is where it listens unless told otherwise.
	defaultAddr string
}

// built is a service ready to run: its routes and its event consumers.
type built struct {
	routes    func(*server.Router)
	consumers []events.ConsumerConfig
}

var services = map[string]service{
	users.Name: {
		migrations: users.Migrations(),
		build: func(db *store.DB, outbox *events.Outbox) built {
			return built{routes: users.New(users.NewStore(db, outbox)).Routes}
		},
		defaultAddr: "127.0.0.1:5001",
	},
	catalog.Name: {
		migrations: catalog.Migrations(),
		build: func(db *store.DB, outbox *events.Outbox) built {
			svc := catalog.New(catalog.NewStore(db, outbox))
			return built{routes: svc.Routes, consumers: svc.Consumers()}
		},
		defaultAddr: "127.0.0.1:5002",
	},
}

// ServiceNames lists the services with a database, in start order.
func ServiceNames() []string {
	return []string{users.Name, catalog.Name}
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
