package users

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/api/usersv1"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/events"
)

// Consumers are the event consumers the users service runs: the projection
// of API keys into the bucket the gateways watch. Creations and
// revocations have a consumer each (one filter subject each, which any NATS
// 2.x serves), so they may be applied in either order: projectAPIKey makes
// the order not matter.
func (s *Service) Consumers() []events.ConsumerConfig {
	project := events.On(s.projectAPIKey)
	return []events.ConsumerConfig{
		{Name: "users-api-keys-created", Handlers: map[string]events.Handler{usersv1.APIKeyCreated: project}},
		{Name: "users-api-keys-revoked", Handlers: map[string]events.Handler{usersv1.APIKeyRevoked: project}},
	}
}

// projectAPIKey writes a key's entry to the bucket. A created key is only
// ever added, never overwritten, so a revocation that got there first
// stands; a revocation always overwrites.
func (s *Service) projectAPIKey(ctx context.Context, _ *sql.Tx, _ events.Event, d usersv1.APIKeyData) error {
	val, err := json.Marshal(auth.APIKeyEntry(d))
	if err != nil {
		return err
	}
	if d.Revoked {
		_, err := s.apiKeys.Put(ctx, d.Prefix, val)
		return err
	}
	if _, err := s.apiKeys.Create(ctx, d.Prefix, val); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	return nil
}
