package system

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/souk-shop/souk/api/openapi"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
)

// TestOpenAPIMatchesRoutes checks that every operation in openapi.yaml is a
// route some service serves behind the gateway, and every such route is
// described.
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

	var served []string
	for _, name := range ServiceNames() {
		rt := server.NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), telemetry.NewHTTPMetrics(prometheus.NewRegistry()))
		services[name].build(nil, nil).routes(rt)
		for _, p := range rt.Patterns() {
			method, path, _ := strings.Cut(p, " ")
			public := "/api" + path
			if !routedTo(public, name) {
				t.Errorf("%s serves %s, but the gateway does not route %s to it", name, p, public)
			}
			served = append(served, method+" "+public)
		}
	}
	slices.Sort(described)
	slices.Sort(served)
	for _, op := range served {
		if !slices.Contains(described, op) {
			t.Errorf("route %s is not in openapi.yaml", op)
		}
	}
	for _, op := range described {
		if !slices.Contains(served, op) {
			t.Errorf("openapi.yaml describes %s, which no service serves", op)
		}
	}
}

func routedTo(path, service string) bool {
	for _, r := range gateway.DefaultRoutes {
		if (path == r.Prefix || strings.HasPrefix(path, r.Prefix+"/")) && r.Service == service {
			return true
		}
	}
	return false
}
