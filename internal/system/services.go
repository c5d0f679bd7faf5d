// Package system wires Souk's services to the platform: it starts the
// broker connection, each service's database, HTTP server and registry
// entry, and the gateway; and it stops them in the reverse order. `souk up`
// runs every service in one process, `souk serve` one; the code is the same.
package system

import (
	"fmt"
	"io/fs"
	"reflect"
	"strconv"
	"strings"

	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/service"
	"github.com/souk-shop/souk/services/catalog"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/inventory"
	"github.com/souk-shop/souk/services/orders"
	"github.com/souk-shop/souk/services/payments"
	"github.com/souk-shop/souk/services/users"
)

// Services are the shop's services, in start order, each as its settings
// (the flags of souk up and souk serve, which embed this struct) and how it
// builds itself. Adding a service is adding its package, a field here, and
// its routes in the gateway's configuration: the CLI's choices, default
// addresses and help, and the tests that check the Prometheus scrape
// targets and the README's port table, follow this list.
type Services struct {
	Users     users.Config     `embed:""`
	Catalog   catalog.Config   `embed:""`
	Inventory inventory.Config `embed:""`
	Payments  payments.Config  `embed:""`
	Orders    orders.Config    `embed:""`
}

// Service is what the system needs of each field of Services.
type Service interface {
	// Name is the service's name in the registry, metrics and logs.
	Name() string
	// Port is where it listens (on 127.0.0.1) unless told otherwise.
	Port() int
	// Migrations are its goose migrations.
	Migrations() fs.FS
	// Validate checks its settings.
	Validate() error
	// Build makes it from what the platform gives.
	Build(service.Deps) (service.Parts, error)
}

// All returns every service, in start order: the fields of s.
func (s *Services) All() []Service {
	v := reflect.ValueOf(s).Elem()
	all := make([]Service, v.NumField())
	for i := range all {
		all[i] = v.Field(i).Addr().Interface().(Service)
	}
	return all
}

// Get returns the service called name.
func (s *Services) Get(name string) (Service, error) {
	for _, svc := range s.All() {
		if svc.Name() == name {
			return svc, nil
		}
	}
	return nil, fmt.Errorf("unknown service %q", name)
}

// ServiceNames lists the services with a database, in start order.
func ServiceNames() []string {
	var names []string
	for _, svc := range (&Services{}).All() {
		names = append(names, svc.Name())
	}
	return names
}

// GatewayPort is where the gateway listens unless told otherwise, and
// GatewayOpsPort where it serves its operators (metrics, traces).
const (
	GatewayPort    = 8080
	GatewayOpsPort = 8081
)

// Servers lists every server souk up runs: the services, the gateway and
// its operations listener.
func Servers() []string { return append(ServiceNames(), gateway.Name, GatewayOpsName) }

// DefaultAddr is where the named server listens unless told otherwise.
func DefaultAddr(name string) string {
	port := GatewayPort
	if name == GatewayOpsName {
		port = GatewayOpsPort
	} else if svc, err := (&Services{}).Get(name); err == nil {
		port = svc.Port()
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// Ports describes every server's default port, for help texts:
// "users 5001, catalog 5002, …, gateway 8080, gateway-ops 8081".
func Ports() string {
	var parts []string
	for _, name := range Servers() {
		_, port, _ := strings.Cut(DefaultAddr(name), ":")
		parts = append(parts, name+" "+port)
	}
	return strings.Join(parts, ", ")
}

// SealerNames lists the services that keep secrets sealed at rest
// (service.Sealer): they need a keyring, and souk secrets rotate re-wraps
// what they keep.
func SealerNames() []string {
	var names []string
	for _, svc := range (&Services{}).All() {
		if _, ok := svc.(service.Sealer); ok {
			names = append(names, svc.Name())
		}
	}
	return names
}

// SealedColumns are the columns of sealed values in the named service's
// database; none if it seals nothing.
func SealedColumns(name string) []secrets.Column {
	svc, err := (&Services{}).Get(name)
	if err != nil {
		return nil
	}
	if s, ok := svc.(service.Sealer); ok {
		return s.Sealed()
	}
	return nil
}
