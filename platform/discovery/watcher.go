package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Endpoint is an instance as a Watcher knows it: when it was last heard of,
// how many requests it is serving for us, and whether it is ejected.
type Endpoint struct {
	Instance
	lastSeen     atomic.Int64 // unix nanos of the last heartbeat seen
	inFlight     atomic.Int64
	ejectedUntil atomic.Int64 // unix nanos

	guardOnce  sync.Once
	guardState any
}

// GuardState returns the state a Guard keeps for e (a circuit breaker,
// say), made by create on first use. It lives and dies with e.
func (e *Endpoint) GuardState(create func() any) any {
	e.guardOnce.Do(func() { e.guardState = create() })
	return e.guardState
}

// InFlight is how many requests this process has outstanding at e.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// Eject keeps the balancer away from e for d, after e failed in a way that
// says it is probably gone (it refused a connection, say).
func (e *Endpoint) Eject(d time.Duration) { e.ejectedUntil.Store(time.Now().Add(d).UnixNano()) }

// Watcher follows the registry and knows every service's live instances.
type Watcher struct {
	nc  *nats.Conn
	kv  jetstream.KeyValue
	ttl time.Duration

	mu       sync.Mutex
	byKey    map[string]*Endpoint
	services atomic.Pointer[map[string][]*Endpoint] // copy-on-write, read without locks
	// graceUntil holds expiry off while the registry cannot be reached
	// (the NATS connection is down, or the servers holding the registry
	// elect a new leader) and for one TTL after: missing heartbeats then
	// say nothing about the instances, and stale routes beat none.
	graceUntil atomic.Int64
	// lastUpdate is when an entry last came from the registry (unix nanos).
	lastUpdate atomic.Int64
	done       chan struct{}
}

// Watch starts following the registry and returns once the current entries
// are loaded. The watcher stops when ctx ends; Done is closed then.
func (r *Registry) Watch(ctx context.Context) (*Watcher, error) {
	kw, err := r.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch registry: %w", err)
	}
	w := &Watcher{nc: r.nc, kv: r.kv, ttl: r.ttl, byKey: map[string]*Endpoint{}, done: make(chan struct{})}
	w.services.Store(&map[string][]*Endpoint{})
	synced := make(chan struct{})
	go w.run(ctx, kw, synced)
	go w.checkRegistry(ctx)
	select {
	case <-synced:
		return w, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("watch registry: initial entries did not arrive in 10s: %w", context.DeadlineExceeded)
	}
}

// Done is closed when the watcher has stopped.
func (w *Watcher) Done() <-chan struct{} { return w.done }

func (w *Watcher) run(ctx context.Context, kw jetstream.KeyWatcher, synced chan struct{}) {
	defer close(w.done)
	for {
		w.follow(ctx, kw, synced)
		synced = nil
		_ = kw.Stop()
		// The feed ended or stalled: follow the registry anew. Its current
		// entries come again first; instances that left meanwhile expire.
		for {
			if ctx.Err() != nil {
				return
			}
			var err error
			if kw, err = w.kv.WatchAll(ctx); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.ttl / 3):
			}
		}
	}
}

// follow applies the registry's entries from kw until ctx ends, kw ends,
// or no entry has come for a whole TTL though instances are known: every
// instance heartbeats every third of a TTL, so the feed has stalled (the
// servers holding the registry changed leader, and this watch did not
// follow).
func (w *Watcher) follow(ctx context.Context, kw jetstream.KeyWatcher, synced chan struct{}) {
	tick := time.NewTicker(w.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.forgetExpired()
			if w.stalled(w.ttl) {
				return
			}
		case e, ok := <-kw.Updates():
			if !ok {
				return
			}
			if e == nil { // the end of the initial values
				if synced != nil {
					close(synced)
					synced = nil
				}
				continue
			}
			w.apply(e)
		}
	}
}

// stalled reports whether instances are known and no entry came for d.
func (w *Watcher) stalled(d time.Duration) bool {
	w.mu.Lock()
	known := len(w.byKey) > 0
	w.mu.Unlock()
	return known && time.Since(time.Unix(0, w.lastUpdate.Load())) > d
}

// checkRegistry asks, every third of a TTL until ctx ends, whether the
// registry answers and whether its feed flows, and holds expiry off when
// not. Every instance heartbeats every third of a TTL, this process's own
// among them: no entry at all for half a TTL means the feed stalled (the
// servers holding the registry changed leader, say), not that every
// instance died.
func (w *Watcher) checkRegistry(ctx context.Context) {
	t := time.NewTicker(w.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		up := w.nc.Status() == nats.CONNECTED && !w.stalled(w.ttl/2)
		if up {
			cctx, cancel := context.WithTimeout(ctx, w.ttl/3)
			_, err := w.kv.Status(cctx)
			cancel()
			up = err == nil
		}
		if !up && ctx.Err() == nil {
			w.graceUntil.Store(time.Now().Add(w.ttl).UnixNano())
		}
	}
}

func (w *Watcher) apply(e jetstream.KeyValueEntry) {
	w.lastUpdate.Store(time.Now().UnixNano())
	w.mu.Lock()
	defer w.mu.Unlock()
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		if _, ok := w.byKey[key]; ok {
			delete(w.byKey, key)
			w.rebuild()
		}
		return
	}
	if ep, ok := w.byKey[key]; ok {
		ep.lastSeen.Store(time.Now().UnixNano())
		return
	}
	var inst Instance
	if err := json.Unmarshal(e.Value(), &inst); err != nil || inst.URL == "" || !strings.HasPrefix(key, inst.Service+".") {
		return // not an entry this version understands
	}
	ep := &Endpoint{Instance: inst}
	ep.lastSeen.Store(time.Now().UnixNano())
	w.byKey[key] = ep
	w.rebuild()
}

// forgetExpired drops instances not heard of for two TTLs: they died
// without deregistering, and the registry sends no delete for them.
func (w *Watcher) forgetExpired() {
	now := time.Now().UnixNano()
	if now < w.graceUntil.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.byKey)
	for key, ep := range w.byKey {
		if now-ep.lastSeen.Load() > 2*int64(w.ttl) {
			delete(w.byKey, key)
		}
	}
	if len(w.byKey) != n {
		w.rebuild()
	}
}

// rebuild publishes a new service → endpoints map; w.mu is held.
func (w *Watcher) rebuild() {
	m := make(map[string][]*Endpoint)
	for _, ep := range w.byKey {
		m[ep.Service] = append(m[ep.Service], ep)
	}
	w.services.Store(&m)
}

// Instances lists the live instances of service.
func (w *Watcher) Instances(service string) []Instance {
	now := time.Now().UnixNano()
	var out []Instance
	for _, ep := range (*w.services.Load())[service] {
		if w.alive(ep, now) {
			out = append(out, ep.Instance)
		}
	}
	return out
}

func (w *Watcher) alive(ep *Endpoint, now int64) bool {
	return now-ep.lastSeen.Load() < int64(w.ttl) || now < w.graceUntil.Load()
}

// Knows reports whether ep is still one of the instances w follows; an
// instance that left or expired is not, even if it comes back later.
func (w *Watcher) Knows(ep *Endpoint) bool { return slices.Contains(w.endpoints(ep.Service), ep) }

func (w *Watcher) endpoints(service string) []*Endpoint {
	return (*w.services.Load())[service]
}
