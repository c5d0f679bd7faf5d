package discovery

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/broker"
)

const testTTL = 600 * time.Millisecond

// forEachBroker runs fn on each broker with a registry in a bucket of the
// test's own, deleted when the test ends.
func forEachBroker(t *testing.T, fn func(t *testing.T, reg *Registry)) {
	for _, b := range testenv.Brokers() {
		t.Run(b.Name, func(t *testing.T) {
			nc := b.Connect(t)
			bucket := testenv.Name("registry_")
			reg, err := Open(context.Background(), nc, Config{Bucket: bucket, TTL: testTTL}, testenv.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if js, err := jetstream.New(nc); err == nil {
					_ = js.DeleteKeyValue(context.Background(), bucket)
				}
			})
			fn(t, reg)
		})
	}
}

func instance(service, url string) Instance {
	return Instance{Service: service, ID: NewInstanceID(), URL: url, Started: time.Now()}
}

func urls(insts []Instance) []string {
	var out []string
	for _, i := range insts {
		out = append(out, i.URL)
	}
	slices.Sort(out)
	return out
}

func TestRegistry(t *testing.T) {
	forEachBroker(t, func(t *testing.T, reg *Registry) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, err := reg.Register(ctx, instance("users", "http://a"))
		if err != nil {
			t.Fatal(err)
		}
		crashCtx, crash := context.WithCancel(ctx)
		if _, err := reg.Register(crashCtx, instance("users", "http://b")); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Register(ctx, instance("catalog", "http://c")); err != nil {
			t.Fatal(err)
		}
		w, err := reg.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := urls(w.Instances("users")); !slices.Equal(got, []string{"http://a", "http://b"}) {
			t.Fatalf("users after Watch = %v, want a and b", got)
		}
		if got := urls(w.Instances("catalog")); !slices.Equal(got, []string{"http://c"}) {
			t.Fatalf("catalog = %v", got)
		}

		t.Run("heartbeats keep instances listed past the TTL", func(t *testing.T) {
			time.Sleep(3 * testTTL)
			if got := urls(w.Instances("users")); len(got) != 2 {
				t.Fatalf("users after 3 TTLs = %v, want both", got)
			}
		})

		t.Run("a new instance is picked up", func(t *testing.T) {
			if _, err := reg.Register(ctx, instance("users", "http://d")); err != nil {
				t.Fatal(err)
			}
			if !testenv.Eventually(time.Second, func() bool { return len(w.Instances("users")) == 3 }) {
				t.Fatalf("users = %v, want the new instance too", urls(w.Instances("users")))
			}
		})

		t.Run("deregistering removes at once", func(t *testing.T) {
			start := time.Now()
			if err := a.Deregister(ctx); err != nil {
				t.Fatal(err)
			}
			if !testenv.Eventually(testTTL/2, func() bool { return !slices.Contains(urls(w.Instances("users")), "http://a") }) {
				t.Fatalf("a still listed %s after Deregister", time.Since(start))
			}
		})

		t.Run("a crashed instance expires within the TTL", func(t *testing.T) {
			crash()
			start := time.Now()
			if !testenv.Eventually(2*testTTL, func() bool { return !slices.Contains(urls(w.Instances("users")), "http://b") }) {
				t.Fatalf("b still listed %s after its heartbeats stopped", time.Since(start))
			}
			t.Logf("crashed instance dropped after %s (TTL %s)", time.Since(start).Round(time.Millisecond), testTTL)
			if got := urls(w.Instances("users")); !slices.Equal(got, []string{"http://d"}) {
				t.Fatalf("users = %v, want only d", got)
			}
		})
	})
}

func TestP2C(t *testing.T) {
	forEachBroker(t, func(t *testing.T, reg *Registry) {
		ctx := t.Context()
		for _, u := range []string{"http://a", "http://b", "http://c"} {
			if _, err := reg.Register(ctx, instance("users", u)); err != nil {
				t.Fatal(err)
			}
		}
		w, err := reg.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := NewP2C(w)

		t.Run("spreads load over every instance", func(t *testing.T) {
			counts := map[string]int{}
			for range 3000 {
				ep, err := p.Pick("users", nil)
				if err != nil {
					t.Fatal(err)
				}
				counts[ep.URL]++
			}
			for u, n := range counts {
				if n < 700 || n > 1300 {
					t.Fatalf("picks %v: %s got %d of 3000", counts, u, n)
				}
			}
		})

		t.Run("avoids the busiest instance", func(t *testing.T) {
			var busy *Endpoint
			for _, ep := range w.endpoints("users") {
				if ep.URL == "http://a" {
					busy = ep
				}
			}
			busy.inFlight.Add(100)
			defer busy.inFlight.Add(-100)
			for range 1000 {
				ep, _ := p.Pick("users", nil)
				if ep == busy {
					t.Fatal("picked the instance with 100 requests in flight over idle ones")
				}
			}
		})

		t.Run("skips ejected and avoided instances", func(t *testing.T) {
			eps := w.endpoints("users")
			eps[0].Eject(time.Minute)
			defer eps[0].Eject(-time.Minute)
			for range 200 {
				ep, _ := p.Pick("users", func(e *Endpoint) bool { return e == eps[1] })
				if ep != eps[2] {
					t.Fatalf("picked %s; only %s is neither ejected nor avoided", ep.URL, eps[2].URL)
				}
			}
		})

		t.Run("an unknown service has no instance", func(t *testing.T) {
			if _, err := p.Pick("nobody", nil); err == nil || !strings.Contains(err.Error(), "no live instance") {
				t.Fatalf("Pick(nobody) = %v", err)
			}
		})
	})
}

func TestTransport(t *testing.T) {
	forEachBroker(t, func(t *testing.T, reg *Registry) {
		ctx := t.Context()
		var hits atomic.Int64
		live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			body, _ := io.ReadAll(r.Body)
			w.Write(append([]byte(r.URL.Path+" "), body...))
		}))
		defer live.Close()
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close() // its port now refuses connections

		for _, u := range []string{live.URL, dead.URL} {
			if _, err := reg.Register(ctx, instance("users", u)); err != nil {
				t.Fatal(err)
			}
		}
		w, err := reg.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: NewTransport(NewP2C(w))}

		for i := range 20 {
			resp, err := client.Get("http://users/users/7")
			if err != nil {
				t.Fatalf("GET %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "/users/7 " {
				t.Fatalf("GET %d: body %q", i, b)
			}
		}
		if hits.Load() != 20 {
			t.Fatalf("the live instance served %d of 20", hits.Load())
		}

		resp, err := client.Post("http://users/users", "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatalf("POST with a resendable body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != `/users {"a":1}` {
			t.Fatalf("POST body arrived as %q", b)
		}

		for _, ep := range w.endpoints("users") {
			if ep.InFlight() != 0 {
				t.Fatalf("%s has %d requests in flight after all responses were closed", ep.URL, ep.InFlight())
			}
		}

		if _, err := client.Get("http://nobody/x"); err == nil || !strings.Contains(err.Error(), "no live instance") {
			t.Fatalf("GET to a service without instances: %v", err)
		}
	})
}

// TestAttemptsSteerRetries checks that a request carrying Attempts goes to
// an instance it has not tried while there is one, and repeats one after.
func TestAttemptsSteerRetries(t *testing.T) {
	forEachBroker(t, func(t *testing.T, reg *Registry) {
		ctx := t.Context()
		var hits [3]atomic.Int64
		for i := range hits {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
			t.Cleanup(srv.Close)
			if _, err := reg.Register(ctx, instance("svc", srv.URL)); err != nil {
				t.Fatal(err)
			}
		}
		w, err := reg.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tr := NewTransport(NewP2C(w))
		req, _ := http.NewRequestWithContext(WithAttempts(ctx, &Attempts{}), "GET", "http://svc/x", nil)
		for range 4 {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		for i := range hits {
			if n := hits[i].Load(); n < 1 || n > 2 {
				t.Fatalf("instance %d got %d of 4 tries of one request; want each tried once before any twice", i, n)
			}
		}
	})
}

// TestRegistrySurvivesANode runs the registry on a 3-node NATS cluster with
// 3 replicas, stops the node that leads it, and checks that watchers never
// lose an instance and that heartbeats go on.
func TestRegistrySurvivesANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	nodes, url := testenv.NATSCluster(t, 3)
	nc, err := broker.Connect(url, "registry", broker.Credentials{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := t.Context()
	bucket := testenv.Name("registry_")
	var reg *Registry
	if !testenv.Eventually(10*time.Second, func() bool { // a loaded machine's peers may still flap
		reg, err = Open(ctx, nc, Config{Bucket: bucket, TTL: time.Second, Replicas: 3}, testenv.Logger(t))
		return err == nil
	}) {
		t.Fatal(err)
	}
	for _, u := range []string{"http://a", "http://b"} {
		if _, err := reg.Register(ctx, instance("users", u)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := reg.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("the registry's stream: %+v, %v; want a leader and two replicas", info.Cluster, err)
	}
	for i, n := range nodes {
		if fmt.Sprintf("n%d", i+1) == info.Cluster.Leader {
			t.Logf("stopping %s, the registry's leader", info.Cluster.Leader)
			n.Shutdown()
		}
	}
	// For a while after, a watcher always sees both instances, and a new
	// one appears: entries and heartbeats survive the leader's loss.
	lost := 0
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(w.Instances("users")); n != 2 {
			lost++
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lost > 0 {
		t.Fatalf("a watcher missed instances %d times in the 4 s after the registry's leader stopped", lost)
	}
	if _, err := reg.Register(ctx, instance("users", "http://c")); err != nil {
		t.Fatalf("registering after the leader stopped: %v", err)
	}
	if !testenv.Eventually(3*time.Second, func() bool { return len(w.Instances("users")) == 3 }) {
		t.Fatalf("a new instance was not seen after the leader stopped: %v", urls(w.Instances("users")))
	}
	// And a fresh watcher, as a gateway that starts now, sees them all.
	w2, err := reg.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := urls(w2.Instances("users")); len(got) != 3 {
		t.Fatalf("a new watcher sees %v", got)
	}
}
