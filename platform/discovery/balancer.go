package discovery

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrNoInstance means a service has no live instance to send a request to.
var ErrNoInstance = errors.New("no live instance")

// Picker chooses the instance of a service that gets the next request.
type Picker interface {
	// Pick returns a live endpoint of service for which skip (which may
	// be nil) is false, or an error wrapping ErrNoInstance.
	Pick(service string, skip func(*Endpoint) bool) (*Endpoint, error)
}

var _ Picker = (*P2C)(nil)

// P2C picks by the power of two choices: of two live instances chosen at
// random, the one with fewer requests in flight. It spreads load almost as
// well as least-loaded without any instance ever being everyone's choice.
type P2C struct {
	w *Watcher
}

// NewP2C returns a picker over the instances w knows.
func NewP2C(w *Watcher) *P2C { return &P2C{w: w} }

// Pick implements Picker. Ejected instances are skipped unless every live
// instance is ejected: then they all stay in play, as a guess beats a
// certain failure.
func (p *P2C) Pick(service string, skip func(*Endpoint) bool) (*Endpoint, error) {
	all := p.w.endpoints(service)
	now := time.Now().UnixNano()
	var buf, ejectedBuf [16]*Endpoint
	healthy, ejected := buf[:0], ejectedBuf[:0]
	for _, ep := range all {
		if !p.w.alive(ep, now) || skip != nil && skip(ep) {
			continue
		}
		if now < ep.ejectedUntil.Load() {
			ejected = append(ejected, ep)
		} else {
			healthy = append(healthy, ep)
		}
	}
	if len(healthy) == 0 {
		healthy = ejected
	}
	switch len(healthy) {
	case 0:
		return nil, fmt.Errorf("%s: %w", service, ErrNoInstance)
	case 1:
		return healthy[0], nil
	}
	i := rand.IntN(len(healthy))
	j := rand.IntN(len(healthy) - 1)
	if j >= i {
		j++
	}
	a, b := healthy[i], healthy[j]
	if b.inFlight.Load() < a.inFlight.Load() {
		return b, nil
	}
	return a, nil
}
