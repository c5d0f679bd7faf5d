// Package users is the users service: the shop's users, their passwords,
// the keys that sign access tokens, and API keys.
package users

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/service"
)

// Name is the service's name in the registry, metrics and logs.
const Name = "users"

//go:embed migrations/*.sql
var migrations embed.FS

// Config is the users service's settings (flags of souk up and souk
// serve) and how it builds itself.
type Config struct {
	AdminEmail    string `help:"Users: make sure this admin account exists (souk up: admin@souk.local)."`
	AdminPassword string `help:"Users: the admin's password; it replaces the account's password. souk up makes a random one for a new account and shows it once."`
	// GenerateAdmin makes an admin account with a random password, shown
	// once, if AdminEmail names none yet (souk up).
	GenerateAdmin bool `kong:"-"`
	// SigningKeyLead is how long a rotated signing key is published before
	// it signs (KeyLead if zero, none if negative): tests shorten it.
	SigningKeyLead time.Duration `kong:"-"`
}

// Name is the service's name.
func (Config) Name() string { return Name }

// Port is where the service listens unless told otherwise.
func (Config) Port() int { return 5001 }

// Migrations are the service's goose migrations.
func (Config) Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Validate checks the settings.
func (c Config) Validate() error {
	if c.AdminPassword != "" && c.AdminEmail == "" {
		return errors.New("--admin-password goes with --admin-email")
	}
	if c.AdminEmail != "" {
		if msg := checkEmail(c.AdminEmail); msg != "" {
			return fmt.Errorf("--admin-email %q: %s", c.AdminEmail, msg)
		}
		if c.AdminPassword == "" && !c.GenerateAdmin {
			return errors.New("--admin-email goes with --admin-password")
		}
	}
	if c.AdminPassword != "" {
		if msg := checkPassword(c.AdminPassword); msg != "" {
			return fmt.Errorf("--admin-password: %s", msg)
		}
	}
	return nil
}

// Sealed are the columns that hold sealed values: the signing keys' seeds.
func (Config) Sealed() []secrets.Column {
	return []secrets.Column{{Table: "signing_keys", Key: "kid", Value: "private_key"}}
}

// Build makes the service: its API, the projection of API keys into the
// bucket gateways read (opened at start), and, at start, the admin
// account.
func (c Config) Build(d service.Deps) (service.Parts, error) {
	lead := c.SigningKeyLead
	if lead == 0 {
		lead = KeyLead
	}
	s := &Service{store: NewStore(d.DB, d.Outbox, d.Keyring), hasher: d.Hasher, keyLead: max(lead, 0), log: d.Log}
	init := func(ctx context.Context) (string, error) {
		var err error
		if s.apiKeys, err = d.APIKeys(ctx); err != nil {
			return "", err
		}
		if s.revocations, err = d.Revocations(ctx); err != nil {
			return "", err
		}
		if n, err := s.store.SealKeys(ctx); err != nil {
			return "", err
		} else if n > 0 {
			d.Log.Info("signing keys stored in clear by an earlier version are sealed now", "keys", n)
		}
		left, err := s.store.FillEmailKeys(ctx)
		if err != nil {
			return "", err
		}
		if len(left) > 0 {
			d.Log.Warn("users whose email is refused now (a lookalike) or equal to an older account's in its canonical form cannot sign in until an admin changes their email",
				"users", left)
		}
		if c.AdminEmail == "" {
			return "", nil
		}
		generated, err := s.store.BootstrapAdmin(ctx, s.hasher, c.AdminEmail, c.AdminPassword)
		if err != nil || generated == "" {
			return "", err
		}
		return fmt.Sprintf("Admin account (first start, shown once): %s, password %s\n"+
			"  To choose your own: --admin-password '…' (it replaces the password at that start).", c.AdminEmail, generated), nil
	}
	return service.Parts{Routes: s.Routes, Consumers: s.Consumers(), Init: init, Loops: []service.Loop{s.forget}}, nil
}

// forget deletes drained login counters, and sessions and refresh tokens
// that can no longer be used, every ten minutes until ctx ends.
func (s *Service) forget(ctx context.Context) {
	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-tick.C:
			if err := s.store.forgetLogins(ctx, t.UTC()); err != nil && ctx.Err() == nil {
				s.log.Warn("forgetting drained login counters failed", "err", err)
			}
			if err := s.store.forgetSessions(ctx, t.UTC()); err != nil && ctx.Err() == nil {
				s.log.Warn("forgetting ended sessions failed", "err", err)
			}
		}
	}
}

// Service serves the users API: users, registration and login, signing
// keys and API keys.
type Service struct {
	store       *Store
	hasher      *auth.Hasher
	keyLead     time.Duration
	apiKeys     jetstream.KeyValue
	revocations jetstream.KeyValue
	log         *slog.Logger
}
