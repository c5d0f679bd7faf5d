package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadAgainstUp runs `souk load` as the README says, briefly and at a
// low rate, against a fresh `souk up` on free ports, and reads its three
// reports.
func TestLoadAgainstUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	urls := startUp(t, bin, dir, "--admin-password", "load test password")
	files := map[string]string{}
	for _, ext := range []string{"json", "html", "svg"} {
		files[ext] = filepath.Join(dir, "report."+ext)
	}
	var out strings.Builder
	args := []string{"load", "--gateway", urls["gateway"], "--admin-password", "load test password",
		"--rate", "20", "--duration", "3s", "--clients", "8", "--products", "3", "--min-success", "0.95",
		"--json", files["json"], "--html", files["html"], "--svg", files["svg"]}
	code := run(context.Background(), args, noEnv, &out, &out)
	t.Logf("souk load:\n%s", out.String())
	if code != 0 {
		t.Fatalf("souk load exited %d", code)
	}
	for _, want := range []string{"8 shoppers from 8 source address(es)", "% succeeded at the first attempt", "0 still open", "wrote " + files["html"]} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "429 ×") {
		t.Error("shoppers with addresses of their own were rate-limited")
	}
	var rep struct {
		Requests int `json:"requests"`
		Orders   struct {
			Placed, Confirmed int
		} `json:"orders"`
		Timeline []json.RawMessage `json:"timeline"`
	}
	b, err := os.ReadFile(files["json"])
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.Requests < 60 || rep.Orders.Placed == 0 || len(rep.Timeline) < 3 {
		t.Errorf("the JSON report (%v): %s", err, b)
	}
	for _, ext := range []string{"html", "svg"} {
		b, err := os.ReadFile(files[ext])
		if err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "<polyline") {
			t.Errorf("the %s report (%v) has no chart", ext, err)
		}
	}
}
