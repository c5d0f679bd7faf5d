package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/chaos"
)

// TestChaosShort is souk chaos for a minute: two instances of every
// service, a NATS cluster of three, SQLite (PostgreSQL when
// SOUK_TEST_POSTGRES_URL is set), a SIGKILL every 15 s, a NATS node lost
// at 30 s, a SIGSTOP, added latency and a cut link. It asserts what must
// hold whatever the faults: the run completes, every order ends, souk
// check finds no violation, and no process is left; it prints the
// availability figures, which are the goals, not this test's.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a dozen processes for a minute and more")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	report := filepath.Join(dir, "chaos.json")
	args := []string{"chaos", "--binary", bin, "--data", filepath.Join(dir, "data"),
		"--duration", "60s", "--rate", "60", "--clients", "30", "--seed", "7",
		"--kill-every", "15s", "--nats-kill-every", "30s", "--nats-down-for", "10s",
		"--stop-every", "25s", "--stop-for", "3s", "--latency-every", "20s", "--latency-for", "5s",
		"--cut-every", "35s", "--cut-for", "3s", "--settle", "60s", "--json", report}
	if pg := os.Getenv("SOUK_TEST_POSTGRES_URL"); pg != "" {
		args = append(args, "--postgres", pg)
	}
	var out strings.Builder
	code := run(context.Background(), args, noEnv, &out, &out)
	t.Logf("souk chaos:\n%s", out.String())
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report (exit %d): %v", code, err)
	}
	var rep chaos.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("souk chaos exited %d", code)
	}
	if rep.Load == nil || rep.Load.Requests < 2000 {
		t.Fatalf("the load did not run: %+v", rep.Load)
	}
	kinds := map[string]int{}
	for _, f := range rep.Faults {
		kinds[strings.Fields(f.Kind)[0]]++
		if f.Err != "" {
			t.Errorf("fault %+v failed", f)
		}
	}
	if kinds["SIGKILL"] < 3 || kinds["NATS"] < 1 || kinds["SIGSTOP"] < 1 || kinds["latency"] < 1 || kinds["cut"] < 1 {
		t.Errorf("faults injected: %v; want every kind, 3 SIGKILLs", kinds)
	}
	if len(rep.Check.Violations) > 0 {
		t.Errorf("souk check: %+v", rep.Check.Violations)
	}
	if !rep.Settled || rep.Check.Open != 0 || rep.Check.Orders == 0 {
		t.Errorf("orders: %d, %d still open", rep.Check.Orders, rep.Check.Open)
	}
	if rep.Started < 12 || rep.Left != 0 {
		t.Errorf("%d processes started, %d left", rep.Started, rep.Left)
	}
	t.Logf("availability: %.3f%% at the first attempt; longest run below 90%%: %ds, below 99%%: %ds",
		100*rep.Load.SuccessRate, rep.Load.LongestBelow90, rep.Load.LongestBelow99)
}

// TestChaosInterrupted stops souk chaos as Ctrl-C would, while its load
// runs: it must return and leave no process behind.
func TestChaosInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a dozen processes")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cfg := chaos.DefaultConfig()
	cfg.Binary, cfg.Dir, cfg.Instances = bin, t.TempDir(), 1
	cfg.Load.Clients, cfg.Load.Rate, cfg.Load.Duration = 5, 20, time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Log = func(line string) {
		t.Log(line)
		if strings.HasPrefix(line, "load:") {
			time.AfterFunc(3*time.Second, cancel)
		}
	}
	start := time.Now()
	rep, err := chaos.Run(ctx, cfg)
	if err == nil {
		t.Fatal("an interrupted run reported no error")
	}
	t.Logf("interrupted after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if rep == nil || rep.Started < 6 || rep.Left != 0 {
		t.Fatalf("report %+v: every process started must be gone", rep)
	}
	// The report's word, checked: no process runs with this run's
	// directory in its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), cfg.Dir) {
			t.Errorf("%s still runs: %q", filepath.Dir(p), strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}
