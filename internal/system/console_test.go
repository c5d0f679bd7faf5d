package system

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/gateway/console"
)

// TestConsoleAPI: the console's API through the gateway, as the page
// calls it. Nobody and customers are refused; an admin sees every
// service's instances ready, the breaker the gateway keeps to an
// instance it called, the topology streamed, traffic sampled from the
// services' metrics, and an unknown dead letter answered in words. Every
// answer is checked against openapi.yaml.
func TestConsoleAPI(t *testing.T) {
	s := newShop(t, nil)
	customer := s.customer("cleo")

	for _, tc := range []struct {
		who    string
		auth   []string
		status int
	}{{"nobody", nil, 401}, {"a customer", customer, 403}} {
		for _, path := range []string{"/api/admin/topology", "/api/admin/traffic", "/api/admin/dead-letters"} {
			if r := call(t, "GET", s.gw+path, "", tc.auth...); r.status != tc.status {
				t.Errorf("GET %s as %s: %d, want %d: %s", path, tc.who, r.status, tc.status, r.body)
			}
		}
		if r := call(t, "POST", s.gw+"/api/admin/dead-letters/1/replay", "", tc.auth...); r.status != tc.status {
			t.Errorf("replay as %s: %d, want %d", tc.who, r.status, tc.status)
		}
	}

	s.product(1000, 1) // the gateway calls catalog and inventory once
	var top console.Topology
	if !testenv.Eventually(5*time.Second, func() bool {
		r := call(t, "GET", s.gw+"/api/admin/topology", "", s.admin...)
		if r.status != 200 || json.Unmarshal(r.body, &top) != nil {
			return false
		}
		ok := len(top.Services) == len(ServiceNames())+1
		for _, svc := range top.Services {
			ok = ok && len(svc.Instances) > 0
			for _, in := range svc.Instances {
				ok = ok && in.Health == "ready"
				if svc.Name == "catalog" {
					ok = ok && in.Breaker == "closed"
				}
			}
		}
		return ok
	}) {
		t.Fatalf("the topology does not show every service ready, catalog's breaker closed: %+v", top)
	}

	// The stream passes the gateway as it is written.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.gw+"/api/admin/topology/stream", nil)
	req.Header.Set(s.admin[0], s.admin[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := ""
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "data: ") {
			first = sc.Text()
			break
		}
	}
	if resp.StatusCode != 200 || !strings.Contains(first, `"name":"orders"`) {
		t.Fatalf("the topology stream: %d, first data %q", resp.StatusCode, first)
	}
	cancel()

	// The gateway samples its own metrics and the services' every 5 s.
	var traffic struct {
		Services []console.ServiceTraffic `json:"services"`
	}
	if !testenv.Eventually(12*time.Second, func() bool {
		r := call(t, "GET", s.gw+"/api/admin/traffic", "", s.admin...)
		if r.status != 200 || json.Unmarshal(r.body, &traffic) != nil {
			return false
		}
		for _, svc := range traffic.Services {
			if svc.Name == "gateway" && len(svc.Points) > 0 && svc.Points[len(svc.Points)-1].RPS > 0 {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no traffic of the gateway sampled: %+v", traffic)
	}

	if r := call(t, "GET", s.gw+"/api/admin/dead-letters", "", s.admin...); r.status != 200 {
		t.Errorf("GET /api/admin/dead-letters: %d %s", r.status, r.body)
	}
	r := call(t, "POST", s.gw+"/api/admin/dead-letters/424242/replay", "", s.admin...)
	if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.body), "no dead letter 424242") {
		t.Errorf("replaying an unknown dead letter: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
}

// TestConsoleTraceFromJaeger: with traces exported over OTLP to a real
// Jaeger (none kept in memory), the console finds an order's trace in
// Jaeger's query API, with every service's spans in it.
func TestConsoleTraceFromJaeger(t *testing.T) {
	bin, err := exec.LookPath("jaeger")
	if err != nil {
		t.Skip("no jaeger on PATH (.ci/run builds one into /var/tmp/souk-tools): the console's Jaeger source is not tested")
	}
	otlp, query := testenv.FreeAddr(t), testenv.FreeAddr(t)
	logs := testenv.Start(t, exec.Command(bin, "--set=receivers.otlp.protocols.http.endpoint="+otlp,
		"--set=receivers.otlp.protocols.grpc.endpoint="+testenv.FreeAddr(t),
		"--set=extensions.jaeger_query.http.endpoint="+query, "--set=extensions.jaeger_query.grpc.endpoint="+testenv.FreeAddr(t),
		"--set=extensions.healthcheckv2.http.endpoint="+testenv.FreeAddr(t), "--set=service.telemetry.metrics.level=none"))
	if !testenv.Eventually(30*time.Second, func() bool {
		resp, err := http.Get("http://" + query + "/api/services")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}) {
		t.Fatalf("jaeger did not answer on %s:\n%s", query, logs())
	}

	dir := t.TempDir()
	sys := startSystem(t, dir, io.Discard, nil, func(c *Config) {
		c.Tracing = telemetry.TracingConfig{OTLP: true, Endpoint: "http://" + otlp, SampleRatio: 1}
		c.Gateway.Jaeger = "http://" + query
	})
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	s := &shop{t: t, dir: dir, sys: sys, gw: sys.URLs[gateway.Name], admin: bearer(login(t, sys.URLs[gateway.Name], adminEmail, adminPassword))}
	ada := s.customer("ada")
	r := s.order(ada, "jaeger-1", s.product(1500, 10), 1, "4242424242424242")
	if r.status != 201 {
		t.Fatalf("place an order: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	if o := s.settled(ada, id, 10*time.Second); o["status"] != "confirmed" {
		t.Fatalf("the order is %v", o["status"])
	}

	// The spans reach Jaeger in batches (every 5 s): until every service's are there.
	var got struct {
		TraceID string           `json:"trace_id"`
		Spans   []telemetry.Span `json:"spans"`
	}
	services := map[string]bool{}
	if !testenv.Eventually(30*time.Second, func() bool {
		r := call(t, "GET", s.gw+"/api/admin/orders/"+id+"/trace", "", s.admin...)
		if r.status != 200 || json.Unmarshal(r.body, &got) != nil {
			return false
		}
		clear(services)
		for _, sp := range got.Spans {
			services[sp.Service] = true
		}
		return services["gateway"] && services["orders"] && services["inventory"] && services["payments"]
	}) {
		t.Fatalf("the console's trace of order %s has spans of %v, want the gateway, orders, inventory and payments", id, services)
	}
	placed := false
	for _, sp := range got.Spans {
		if sp.TraceID != got.TraceID || sp.DurationMS < 0 || sp.Start.IsZero() {
			t.Errorf("span %+v of trace %s", sp, got.TraceID)
		}
		placed = placed || sp.Service == "orders" && sp.Attributes["order.id"] == id && sp.Kind == "server"
	}
	if !placed {
		t.Errorf("no server span of orders carries order.id %s: %+v", id, got.Spans)
	}
	// An order Jaeger never saw is a 404 that names Jaeger.
	if r := call(t, "GET", s.gw+"/api/admin/orders/01a219c7-19cf-7bf0-8034-27a9b6db9efd/trace", "", s.admin...); r.status != 404 || !strings.Contains(string(r.body), "Jaeger") {
		t.Errorf("an unknown order's trace: %d %s", r.status, r.body)
	}
}
