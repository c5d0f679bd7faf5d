package system

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/resilience"
	"github.com/souk-shop/souk/services/gateway"
)

// busySystem starts a system and sends it traffic that exercises every
// metric the dashboards and alerts use: requests of every kind, an order
// through the saga, and a circuit that opens.
func busySystem(t *testing.T) *System {
	cfg := testGatewayConfig()
	cfg.Upstream.Breaker = resilience.BreakerConfig{FailureRate: 0.5, MinRequests: 3, Window: 10 * time.Second, OpenFor: time.Minute, Probes: 1}
	for i := range cfg.Routes {
		if cfg.Routes[i].Service == "ghost" {
			cfg.Routes[i].RateLimit = &gateway.RateLimits{Address: &gateway.Limit{RPS: 0.1, Burst: 1}}
		}
	}
	s := &shop{t: t, dir: t.TempDir()}
	s.sys = startSystem(t, s.dir, io.Discard, &cfg)
	t.Cleanup(func() { s.sys.Shutdown(context.Background()) })
	s.gw = s.sys.URLs[gateway.Name]
	s.admin = bearer(login(t, s.gw, adminEmail, adminPassword))
	lamp := s.product(100, 10)
	ada := s.customer("ada")
	s.settled(ada, s.order(ada, "o1", lamp, 1, "4242424242424242").json(t)["id"].(string), 10*time.Second)
	call(t, "GET", s.gw+"/api/nowhere", "")
	call(t, "GET", s.gw+"/api/users", "", "Authorization", "Bearer nonsense")
	broken := newEcho(t, func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusInternalServerError) // its own failure: its circuit opens
		return true
	})
	serveAs(t, registry(t, s.sys), s.gw, "echo", broken, "/api/echo/x")
	for range 5 {
		call(t, "GET", s.gw+"/api/echo/x", "")
	}
	for range 2 {
		call(t, "GET", s.gw+"/api/ghost/x", "") // the second is rate limited
	}
	return s.sys
}

// exposed scrapes every server of sys and returns the names of the samples.
func exposed(t *testing.T, sys *System) map[string]bool {
	names := map[string]bool{}
	for name, u := range sys.URLs {
		resp, err := http.Get(u + "/metrics")
		if err != nil {
			t.Fatalf("%s /metrics: %v", name, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			n, _, _ := strings.Cut(line, "{")
			n, _, _ = strings.Cut(n, " ")
			names[n] = true
		}
		resp.Body.Close()
	}
	return names
}

var metricName = regexp.MustCompile(`\b((?:souk|go|process)_[a-z_]+)\b`)

// TestDashboardsAndAlertsMatchMetrics checks that every metric the alert
// rules and the Grafana dashboards name is one a running system exposes.
func TestDashboardsAndAlertsMatchMetrics(t *testing.T) {
	sys := busySystem(t)
	have := exposed(t, sys)
	root := "../../deploy"
	files, _ := filepath.Glob(root + "/grafana/*.json")
	files = append(files, root+"/prometheus/alerts.yml")
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".json") && !json.Valid(b) {
			t.Errorf("%s is not valid JSON", f)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			checked++
			if !have[m] {
				t.Errorf("%s uses %s, which no server exposes", filepath.Base(f), m)
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d metric references found: the files did not parse as expected", checked)
	}
}

// TestBreakerStateGauge checks that the gateway reports the circuit that
// busySystem opened, and only that one.
func TestBreakerStateGauge(t *testing.T) {
	sys := busySystem(t)
	resp := call(t, "GET", sys.URLs[GatewayOpsName]+"/metrics", "")
	want := map[string]string{ // upstream, state → value
		`state="open",upstream="echo"`:      "1",
		`state="closed",upstream="echo"`:    "0",
		`state="half_open",upstream="echo"`: "0",
		`state="open",upstream="catalog"`:   "0",
		`state="closed",upstream="catalog"`: "1",
	}
	for line := range strings.Lines(string(resp.body)) {
		labels, value, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), `souk_upstream_breakers{service="gateway",`), "} ")
		if !ok || !strings.HasPrefix(line, "souk_upstream_breakers{") {
			continue
		}
		if w, ok := want[labels]; ok {
			if value != w {
				t.Errorf("souk_upstream_breakers{%s} = %s, want %s", labels, value, w)
			}
			delete(want, labels)
		}
	}
	for labels := range want {
		t.Errorf("souk_upstream_breakers{%s} is missing", labels)
	}
}

// TestPrometheusConfig checks the configuration and rules with promtool.
func TestPrometheusConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{
		{"check", "config", "../../deploy/prometheus/prometheus.yml"},
		{"check", "rules", "../../deploy/prometheus/alerts.yml"},
		{"check", "config", "../../deploy/prometheus/prometheus-kubernetes.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil && strings.Contains(string(out), "kubernetes_sd_configs not found") {
			t.Logf("%v: this promtool is built without Kubernetes discovery (Debian's is); not checked", args)
			continue
		}
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestPrometheusScrapesEverything runs a real Prometheus against a running
// system and checks that every target is up and every rule loaded.
func TestPrometheusScrapesEverything(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (apt-get install prometheus)")
	}
	sys := busySystem(t)
	dir := t.TempDir()
	var targets []string
	for name, u := range sys.URLs {
		if name == GatewayName {
			continue // its public port serves the API; the operations port, the metrics
		}
		targets = append(targets, fmt.Sprintf("%q", strings.TrimPrefix(u, "http://")))
	}
	slices.Sort(targets)
	rules, _ := os.ReadFile("../../deploy/prometheus/alerts.yml")
	os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644)
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: souk
    static_configs:
      - targets: [%s]
`, strings.Join(targets, ", "))), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var last string
	ok := testenv.Eventually(30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/api/v1/targets")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL string `json:"scrapeUrl"`
					Health    string `json:"health"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		up := 0
		last = ""
		for _, tg := range body.Data.ActiveTargets {
			last += tg.ScrapeURL + "=" + tg.Health + " "
			if tg.Health == "up" {
				up++
			}
		}
		return up == len(targets)
	})
	if !ok {
		t.Fatalf("not every target up: %s", last)
	}
	resp, err := http.Get("http://" + addr + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rb struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&rb)
	n := 0
	for _, g := range rb.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s does not evaluate", r.Name)
			}
		}
	}
	if n < 9 {
		t.Fatalf("%d rules loaded, want 9", n)
	}
	t.Logf("prometheus: %d targets up, %d rules", len(sys.URLs), n)
}
