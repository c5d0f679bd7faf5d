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

// Consumers are the event consumers the users service runs: the
// projections of API keys and of ended sessions into the buckets the
// gateways watch. Creations and revocations of API keys have a consumer
// each (one filter subject each, which any NATS 2.x serves), so they may be
// applied in either order: projectAPIKey makes the order not matter.
func (s *Service) Consumers() []events.ConsumerConfig {
	project := events.On(s.projectAPIKey)
	return []events.ConsumerConfig{
		{Name: "users-api-keys-created", Handlers: map[string]events.Handler{usersv1.APIKeyCreated: project}},
		{Name: "users-api-keys-revoked", Handlers: map[string]events.Handler{usersv1.APIKeyRevoked: project}},
		{Name: "users-revocations", Handlers: map[string]events.Handler{usersv1.SessionsRevoked: events.On(s.projectRevocation)}},
	}
}

// projectRevocation writes an ended session, or a user's cut, to the
// revocation list. A user's entry only ever moves forward: a redelivered
// older cut leaves a later one as it is (a conflicting write fails, and
// the event comes back).
func (s *Service) projectRevocation(ctx context.Context, _ *sql.Tx, _ events.Event, d usersv1.SessionsRevokedData) error {
	if d.SessionID != "" {
		val, err := json.Marshal(auth.Revocation{At: d.RevokedAt})
		if err != nil {
			return err
		}
		_, err = s.revocations.Put(ctx, auth.SessionRevocationKey(d.SessionID), val)
		return err
	}
	val, err := json.Marshal(auth.Revocation{At: d.RevokedAt, SessionsBefore: d.SessionsBefore})
	if err != nil {
		return err
	}
	key := auth.UserRevocationKey(d.UserID)
	e, err := s.revocations.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = s.revocations.Create(ctx, key, val)
		return err
	}
	if err != nil {
		return err
	}
	var old auth.Revocation
	if json.Unmarshal(e.Value(), &old) == nil && old.SessionsBefore >= d.SessionsBefore {
		return nil
	}
	_, err = s.revocations.Update(ctx, key, val, e.Revision())
	return err
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
