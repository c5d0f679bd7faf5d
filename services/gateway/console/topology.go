package console

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/souk-shop/souk/platform/server"
)

// Topology is every service and its live instances.
type Topology struct {
	At       time.Time         `json:"at"`
	Services []ServiceTopology `json:"services"`
}

// ServiceTopology is one service's live instances.
type ServiceTopology struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
}

// Instance is one live instance as the gateway sees it.
type Instance struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Started time.Time `json:"started"`
	// Health is what its /readyz said: ready, not_ready (it answered
	// otherwise), or unreachable (no answer).
	Health string `json:"health"`
	// Breaker is the state of the gateway's circuit breaker to it:
	// closed, half_open, open, or none before the gateway's first call.
	Breaker string `json:"breaker"`
}

// probe is what an instance's /readyz last said, and when.
type probe struct {
	health string
	at     time.Time
}

// healthEvery is how often an instance's health is asked for at most.
const healthEvery = time.Second

// snapshot is the topology now, asking for the health of instances not
// asked in the last second, all at once.
func (c *Console) snapshot(ctx context.Context) Topology {
	names := slices.Clone(c.d.Services)
	names = append(names, "gateway")
	states := map[string]string{}
	if c.d.Breakers != nil {
		states = c.d.Breakers.States()
	}
	top := Topology{At: time.Now().UTC()}
	var wg sync.WaitGroup
	for _, name := range names {
		st := ServiceTopology{Name: name, Instances: []Instance{}}
		for _, in := range c.d.Instances.Instances(name) {
			breaker := states[in.ID]
			if breaker == "" {
				breaker = "none"
			}
			st.Instances = append(st.Instances, Instance{ID: in.ID, URL: in.URL, Started: in.Started, Breaker: breaker})
		}
		slices.SortFunc(st.Instances, func(a, b Instance) int { return a.Started.Compare(b.Started) })
		top.Services = append(top.Services, st)
	}
	now := time.Now()
	for si := range top.Services {
		for ii := range top.Services[si].Instances {
			in := &top.Services[si].Instances[ii]
			c.healthMu.Lock()
			p, ok := c.health[in.ID]
			c.healthMu.Unlock()
			if ok && now.Sub(p.at) < healthEvery {
				in.Health = p.health
				continue
			}
			wg.Go(func() {
				in.Health = c.ask(ctx, in.URL)
				c.healthMu.Lock()
				c.health[in.ID] = probe{health: in.Health, at: time.Now()}
				c.healthMu.Unlock()
			})
		}
	}
	wg.Wait()
	c.forget(top)
	return top
}

// ask asks an instance's /readyz, open to probes.
func (c *Console) ask(ctx context.Context, base string) string {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return "unreachable"
	}
	resp, err := c.direct.Do(req)
	if err != nil {
		return "unreachable"
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "ready"
	}
	return "not_ready"
}

// forget drops the health of instances no longer listed.
func (c *Console) forget(top Topology) {
	live := map[string]bool{}
	for _, s := range top.Services {
		for _, in := range s.Instances {
			live[in.ID] = true
		}
	}
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	for id := range c.health {
		if !live[id] {
			delete(c.health, id)
		}
	}
}

func (c *Console) topology(w http.ResponseWriter, r *http.Request) error {
	server.WriteJSON(w, http.StatusOK, c.snapshot(r.Context()))
	return nil
}

// topologyStream sends the topology as Server-Sent Events, an event
// "topology" every second, until the stream's time is up (the page
// connects again).
func (c *Console) topologyStream(w http.ResponseWriter, r *http.Request) error {
	es, err := server.NewEventStream(w, time.Second)
	if err != nil {
		return nil
	}
	end := time.NewTimer(time.Until(server.StreamUntil(r)))
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := es.Send("", "topology", c.snapshot(r.Context())); err != nil {
			return nil
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-end.C:
			return nil
		case <-tick.C:
		}
	}
}
