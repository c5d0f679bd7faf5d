package system

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/souk-shop/souk/api/openapi"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/service"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/gateway/console"
)

// TestOpenAPIMatchesRoutes checks that openapi.yaml describes exactly the
// gateway's built-in routes, that each goes to a service that serves it,
// and that every route a service serves is reachable through the gateway.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var spec struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openapi.Spec, &spec); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	var described []string
	for path, ops := range spec.Paths {
		for method := range ops {
			if method != "parameters" {
				described = append(described, strings.ToUpper(method)+" "+path)
			}
		}
	}

	// What each service serves, as "METHOD /path" by service.
	served := map[string][]string{}
	for _, svc := range (&Services{}).All() {
		rt := server.NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), telemetry.NewHTTPMetrics(prometheus.NewRegistry()))
		parts, err := svc.Build(service.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		parts.Routes(rt)
		served[svc.Name()] = rt.Patterns()
	}
	// The gateway serves the console's routes itself.
	served[console.Name] = console.Patterns()
	// What the gateway exposes, each checked against what its service serves.
	var exposed []string
	routed := map[string]bool{}
	for _, r := range gateway.DefaultConfig().Routes {
		strip := "/api"
		if r.StripPrefix != nil {
			strip = *r.StripPrefix
		}
		for _, m := range r.Methods {
			exposed = append(exposed, m+" "+r.Path)
			upstream := m + " " + strings.TrimPrefix(r.Path, strip)
			if !slices.Contains(served[r.Service], upstream) {
				t.Errorf("the gateway routes %s %s to %s, which does not serve %s", m, r.Path, r.Service, upstream)
			}
			routed[r.Service+" "+upstream] = true
		}
	}
	for name, patterns := range served {
		for _, p := range patterns {
			if !routed[name+" "+p] {
				t.Errorf("%s serves %s, but the gateway routes nothing to it", name, p)
			}
		}
	}
	slices.Sort(described)
	slices.Sort(exposed)
	for _, op := range exposed {
		if !slices.Contains(described, op) {
			t.Errorf("route %s is not in openapi.yaml", op)
		}
	}
	for _, op := range described {
		if !slices.Contains(exposed, op) {
			t.Errorf("openapi.yaml describes %s, which the gateway does not route", op)
		}
	}
}

// TestOpenAPIRateLimitHeaders sends requests to real routes with the
// built-in rate limits, which the other tests turn off, so that call
// validates the RateLimit headers of answers, success and 429 alike,
// against openapi.yaml; and checks that they are there to validate.
func TestOpenAPIRateLimitHeaders(t *testing.T) {
	cfg := gateway.DefaultConfig()
	sys := startSystem(t, t.TempDir(), io.Discard, &cfg)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]

	r := call(t, "GET", gw+"/api/products", "")
	if r.status != 200 || r.header.Get("RateLimit-Policy") == "" || r.header.Get("RateLimit") == "" {
		t.Fatalf("GET /api/products: %d, RateLimit-Policy %q, RateLimit %q", r.status, r.header.Get("RateLimit-Policy"), r.header.Get("RateLimit"))
	}
	// Sign-up allows a burst of 10 per address; refused bodies count too.
	for i := range 20 {
		r = call(t, "POST", gw+"/api/auth/register", `{"name":"","email":"","password":""}`)
		if r.status == 429 {
			break
		}
		if r.status != 400 {
			t.Fatalf("sign-up %d: %d %s", i, r.status, r.body)
		}
	}
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.header.Get("RateLimit") == "" {
		t.Fatalf("sign-ups past the burst: %d, Retry-After %q, RateLimit %q", r.status, r.header.Get("Retry-After"), r.header.Get("RateLimit"))
	}
	r.problem(t)
}

// TestOpenAPIStatuses checks that openapi.yaml gives each route of the
// gateway's built-in configuration the statuses the gateway itself can
// answer there, whatever the service does: 400 (a path it refuses), 401 (a
// credential sent and wrong, on public routes too), 403 on admin routes,
// 413 where a body is accepted, 429 where a rate limit applies, 431 and 501
// (net/http, before any handler), 500, and 502, 503 and 504 (the service
// answers badly, is down or overloaded, or is slow); and that public routes,
// and only they, need no credentials in the spec.
func TestOpenAPIStatuses(t *testing.T) {
	var spec struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openapi.Spec, &spec); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	cfg := gateway.DefaultConfig()
	limited := cfg.Defaults.RateLimit != (gateway.RateLimits{})
	for _, r := range cfg.Routes {
		for _, m := range r.Methods {
			node, ok := spec.Paths[r.Path][strings.ToLower(m)]
			if !ok {
				continue // TestOpenAPIMatchesRoutes says so
			}
			var op struct {
				Security    *[]map[string][]string `yaml:"security"`
				RequestBody map[string]any         `yaml:"requestBody"`
				Responses   map[string]yaml.Node   `yaml:"responses"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", m, r.Path, err)
			}
			want := []string{"400", "401", "431", "500", "501", "502", "503", "504"}
			if r.Policy == gateway.Admin {
				want = append(want, "403")
			}
			if op.RequestBody != nil {
				want = append(want, "413", "415")
			}
			if limited || r.RateLimit != nil {
				want = append(want, "429")
			}
			for _, status := range want {
				if _, ok := op.Responses[status]; !ok {
					t.Errorf("%s %s (%s) does not list %s", m, r.Path, r.Policy, status)
				}
			}
			if public := op.Security != nil && len(*op.Security) == 0; public != (r.Policy == gateway.Public) {
				t.Errorf("%s %s is %s, but openapi.yaml says security: %v", m, r.Path, r.Policy, op.Security)
			}
		}
	}
}
