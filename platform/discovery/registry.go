// Package discovery lets services find each other. Each running instance
// keeps one key in a NATS KV bucket (the registry) alive with heartbeats; a
// Watcher follows the bucket and knows the live instances of every service;
// a Balancer picks one of them (power of two choices); a Transport sends an
// HTTP request for http://<service>/… to the instance the Balancer picked.
package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the NATS KV bucket that holds the registry.
const DefaultBucket = "souk_registry"

// DefaultTTL is how long an instance stays listed after its last heartbeat.
// Heartbeats come every TTL/3, so one lost heartbeat does not drop it.
const DefaultTTL = 3 * time.Second

// Instance is one running copy of a service, as listed in the registry.
type Instance struct {
	Service string    `json:"service"`
	ID      string    `json:"id"`
	URL     string    `json:"url"` // base URL, e.g. http://10.0.0.7:5001
	Started time.Time `json:"started"`
}

func (i Instance) key() string { return i.Service + "." + i.ID }

// NewInstanceID returns a random id for an instance.
func NewInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Registry is the NATS KV bucket of live instances.
type Registry struct {
	nc  *nats.Conn
	kv  jetstream.KeyValue
	ttl time.Duration
	log *slog.Logger
}

// Config configures a Registry; the zero value is the default.
type Config struct {
	Bucket string        // DefaultBucket if empty
	TTL    time.Duration // DefaultTTL if zero
	// Replicas is how many NATS servers hold the registry: 1 for one
	// server, 3 on a cluster, where losing a server then loses no entry.
	Replicas int
}

// Open creates the registry bucket, or updates its TTL and replicas, and
// returns it. Entries live in memory on the NATS servers that hold them
// (cfg.Replicas): on a cluster the others keep them when one server
// goes; after a restart of all, heartbeats rebuild them within one TTL.
func Open(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Registry, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "Souk service registry: one key per live instance, <service>.<id>",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("registry bucket %s: %w", cfg.Bucket, err)
	}
	return &Registry{nc: nc, kv: kv, ttl: cfg.TTL, log: log}, nil
}

// Registration is an instance's entry, kept alive by heartbeats.
type Registration struct {
	reg  *Registry
	inst Instance
	stop chan struct{}
	done chan struct{}
}

// Register lists inst and refreshes its entry every TTL/3 until ctx ends or
// Deregister is called. If ctx ends first the entry is left to expire, as
// when the process dies.
func (r *Registry) Register(ctx context.Context, inst Instance) (*Registration, error) {
	val, err := json.Marshal(inst)
	if err != nil {
		return nil, err
	}
	if _, err := r.kv.Put(ctx, inst.key(), val); err != nil {
		return nil, fmt.Errorf("register %s: %w", inst.key(), err)
	}
	g := &Registration{reg: r, inst: inst, stop: make(chan struct{}), done: make(chan struct{})}
	go g.heartbeat(ctx, val)
	return g, nil
}

func (g *Registration) heartbeat(ctx context.Context, val []byte) {
	defer close(g.done)
	t := time.NewTicker(g.reg.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.stop:
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, g.reg.ttl/3)
			_, err := g.reg.kv.Put(pctx, g.inst.key(), val)
			cancel()
			if err != nil && ctx.Err() == nil {
				g.reg.log.Warn("registry heartbeat failed", "key", g.inst.key(), "err", err)
			}
		}
	}
}

// Deregister stops the heartbeats and removes the entry at once, so that
// watchers stop picking this instance before it stops serving.
func (g *Registration) Deregister(ctx context.Context) error {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := g.reg.kv.Delete(ctx, g.inst.key()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deregister %s: %w", g.inst.key(), err)
	}
	return nil
}
