package catalog

import (
	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/platform/events"
)

// Consumers are the event consumers the catalog runs: it counts the users
// service's registrations for its stats.
func (s *Service) Consumers() []events.ConsumerConfig {
	return []events.ConsumerConfig{{
		Name:     "catalog-user-stats",
		Handlers: map[string]events.Handler{usersv1.UserRegistered: events.On(s.store.countRegistration)},
	}}
}
