package system

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestServicesList checks the one list of services: each is a Service,
// with its own name and port, and what is written elsewhere about them
// (the Prometheus scrape targets, the README's addresses) agrees with it.
func TestServicesList(t *testing.T) {
	all := (&Services{}).All()
	if len(all) < 5 {
		t.Fatalf("%d services", len(all))
	}
	names, ports := map[string]bool{}, map[int]string{GatewayPort: GatewayName, GatewayOpsPort: GatewayOpsName}
	for _, svc := range all {
		if names[svc.Name()] || svc.Name() == GatewayName {
			t.Errorf("two services are called %s", svc.Name())
		}
		names[svc.Name()] = true
		if other, taken := ports[svc.Port()]; taken {
			t.Errorf("%s and %s both listen on %d by default", svc.Name(), other, svc.Port())
		}
		ports[svc.Port()] = svc.Name()
		if err := svc.Validate(); err != nil {
			t.Errorf("%s: its zero settings do not validate: %v", svc.Name(), err)
		}
		if _, err := (&Services{}).Get(svc.Name()); err != nil {
			t.Error(err)
		}
	}

	var scrape struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	b, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &scrape); err != nil {
		t.Fatal(err)
	}
	var targets, want []string
	for _, sc := range scrape.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	// Prometheus scrapes every service and the gateway's operations port.
	for _, name := range append(ServiceNames(), GatewayOpsName) {
		want = append(want, DefaultAddr(name))
	}
	slices.Sort(targets)
	slices.Sort(want)
	if !slices.Equal(targets, want) {
		t.Errorf("deploy/prometheus/prometheus.yml scrapes %v; souk up listens on %v", targets, want)
	}

	b, err = os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(b)), " ") // lines wrap anywhere
	for _, svc := range all {
		if mention := fmt.Sprintf("%s (:%d)", svc.Name(), svc.Port()); !strings.Contains(readme, mention) {
			t.Errorf("the README does not say %q", mention)
		}
	}
	if mention := fmt.Sprintf("gateway on 127.0.0.1:%d", GatewayPort); !strings.Contains(readme, mention) {
		t.Errorf("the README does not say %q", mention)
	}
}
