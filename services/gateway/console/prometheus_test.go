package console

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/telemetry"
)

// trafficAnswer is GET /admin/traffic's body.
type trafficAnswer struct {
	Source      string           `json:"source"`
	Prometheus  string           `json:"prometheus"`
	SourceError string           `json:"source_error"`
	Services    []ServiceTraffic `json:"services"`
}

func getTraffic(t *testing.T, c *Console) trafficAnswer {
	t.Helper()
	w := serve(c, "GET", "/admin/traffic", auth.RoleAdmin)
	var got trafficAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil {
		t.Fatalf("GET /admin/traffic: %d %v %s", w.Code, err, w.Body)
	}
	return got
}

// TestTrafficFromPrometheus: given a Prometheus (Debian's, scraping an
// instance of orders every second), the console's traffic points come from
// it: the request rate, the share of 5xx and the p99, probes left out.
func TestTrafficFromPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("no prometheus (apt-get install prometheus): the console's Prometheus source is not tested")
	}
	reg := telemetry.NewRegistry("orders")
	m := telemetry.NewHTTPMetrics(reg)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() { // 40 requests a second, a quarter of them 500s that took 2 s
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			m.Observe("GET /orders/{id}", "GET", 200, 10*time.Millisecond)
			m.Observe("GET /orders/{id}", "GET", 200, 10*time.Millisecond)
			m.Observe("POST /orders", "POST", 201, 10*time.Millisecond)
			m.Observe("POST /orders", "POST", 500, 2*time.Second)
			m.Observe("GET /readyz", "GET", 503, 5*time.Second) // a probe: left out
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()

	dir := t.TempDir()
	config := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: souk\n    static_configs: [{targets: [%q]}]\n",
		strings.TrimPrefix(srv.URL, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	logs := testenv.Start(t, exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr, "--log.level", "warn"))

	c := New(Deps{Services: []string{"orders", "catalog"}, Instances: instances{}, Breakers: breakers{},
		Every: time.Second, Keep: time.Minute, Prometheus: "http://" + addr, RateWindow: 5 * time.Second})
	var got trafficAnswer
	var last Point
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		got = getTraffic(t, c)
		if got.Source == "prometheus" {
			for _, s := range got.Services {
				if s.Name == "orders" && len(s.Points) > 0 {
					last = s.Points[len(s.Points)-1]
				}
			}
		}
		// Wait until the series is older than the rate window, for a
		// steady rate (rate() extrapolates little at a series' start).
		if last.P99MS != nil && pointsOf(got, "orders") >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic from Prometheus after 45 s: %+v\nprometheus says:\n%s", got, logs())
		}
	}
	if got.Prometheus != "http://"+addr || got.SourceError != "" {
		t.Errorf("source %q at %q, error %q", got.Source, got.Prometheus, got.SourceError)
	}
	if last.RPS < 20 || last.RPS > 60 {
		t.Errorf("orders: %v requests a second, want about 40", last.RPS)
	}
	if math.Abs(last.ErrorRate-0.25) > 0.05 {
		t.Errorf("orders: error rate %v, want about 0.25", last.ErrorRate)
	}
	if *last.P99MS <= 1000 || *last.P99MS > 2500 {
		t.Errorf("orders: p99 %v ms, want in the 2 s answers' bucket (1000, 2500]", *last.P99MS)
	}
	if n := pointsOf(got, "catalog"); n != 0 {
		t.Errorf("catalog, which Prometheus never saw, has %d points", n)
	}
}

// TestTrafficPrometheusDown: a Prometheus that does not answer leaves the
// charts to the gateway's own samples, and the answer says why.
func TestTrafficPrometheusDown(t *testing.T) {
	down := closedURL(t)
	c := New(Deps{Services: []string{"orders"}, Instances: instances{}, Breakers: breakers{}, Prometheus: down})
	got := getTraffic(t, c)
	if got.Source != "gateway" || !strings.Contains(got.SourceError, down) || len(got.Services) != 2 {
		t.Errorf("with Prometheus down: source %q, error %q, %d services", got.Source, got.SourceError, len(got.Services))
	}
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"http://127.0.0.1:9090": true, "https://prometheus.example/prefix": true,
		"": false, "127.0.0.1:9090": false, "ftp://x": false, "http://": false, "http://[::1": false,
	} {
		if err := CheckURL(u); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v", u, err)
		}
	}
}

func pointsOf(a trafficAnswer, service string) int {
	for _, s := range a.Services {
		if s.Name == service {
			return len(s.Points)
		}
	}
	return 0
}

// TestPrometheusWarnsOnceAMinute: a Prometheus that stays down is logged
// once a minute, not at every poll of every open page.
func TestPrometheusWarnsOnceAMinute(t *testing.T) {
	p := newPromSource("http://127.0.0.1:9090", time.Minute, time.Second, time.Minute)
	t0 := time.Now()
	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{{0, true}, {5 * time.Second, false}, {59 * time.Second, false}, {61 * time.Second, true}, {90 * time.Second, false}, {2*time.Minute + 2*time.Second, true}} {
		if got := p.warnNow(t0.Add(tc.after)); got != tc.want {
			t.Errorf("a failure %s after the first: logged %v, want %v", tc.after, got, tc.want)
		}
	}
}
