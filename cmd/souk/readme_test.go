package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/system"
)

// TestReadmeTryIt runs the README's "Try it" block with bash, as written,
// against a fresh souk up on free ports: only the addresses, and `go run
// ./cmd/souk` (for the binary the test built), are replaced. It fails if a
// command fails, or if an answer is an error that the block does not
// announce with "answers NNN".
func TestReadmeTryIt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the README's commands need curl")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := shellBlock(t, string(readme), "## Try it")
	password := regexp.MustCompile(`go run ./cmd/souk up --admin-password '([^']+)'`).FindStringSubmatch(string(readme))
	if password == nil {
		t.Fatal("the README does not say how to start souk up with the admin password its commands use")
	}

	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	urls := startUp(t, bin, dir, "--admin-password", password[1])

	host := func(u string) string { return strings.TrimPrefix(u, "http://") }
	script := strings.NewReplacer(
		"localhost:8080", host(urls["gateway"]),
		"localhost:8081", host(urls["gateway-ops"]),
		"localhost:5002", host(urls["catalog"]),
		"go run ./cmd/souk", bin,
	).Replace(block)
	// curl also reports each answer's status on stderr, marked, for the
	// check below; its output is the README's.
	prelude := "set -euo pipefail\n" +
		`curl() { command curl -w '%{stderr}readme-status %{http_code} %{url_effective}\n' "$@"; }` + "\n"
	cmd := exec.Command("bash", "-c", prelude+script)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("the README's block failed: %v", err)
	}

	var errs []string
	for line := range strings.Lines(stderr.String()) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "readme-status" && f[1] >= "400" {
			errs = append(errs, f[1])
		}
	}
	var announced []string
	for _, m := range regexp.MustCompile(`answers (\d{3})`).FindAllStringSubmatch(block, -1) {
		announced = append(announced, m[1])
	}
	if !slices.Equal(errs, announced) {
		t.Fatalf("error answers %v, but the README announces %v", errs, announced)
	}
	for _, want := range []string{`"status":"confirmed"`, "0 violations", `"available":8`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the block's output lacks %s, which the README promises", want)
		}
	}
}

// shellBlock returns the first ```sh block after heading.
func shellBlock(t *testing.T, md, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(md, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("no %q section", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("no sh block under %q", heading)
	}
	block, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		t.Fatalf("the sh block under %q does not end", heading)
	}
	return block
}

// startUp runs `souk up` from bin with its data in dir/.souk and every
// server on a free port, and returns the addresses it printed.
func startUp(t *testing.T, bin, dir string, args ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"up", "--data", filepath.Join(dir, ".souk")}, freePorts()...), args...)...)
	cmd.Dir = dir
	cmd.Stderr = t.Output()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan map[string]string, 1)
	go func() {
		urls := map[string]string{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Try:") {
				ready <- urls
			}
			if f := strings.Fields(sc.Text()); len(f) == 2 {
				urls[f[0]] = f[1]
			}
		}
	}()
	select {
	case urls := <-ready:
		return urls
	case <-time.After(30 * time.Second):
		t.Fatal("souk up was not ready in 30s")
		return nil
	}
}

// freePorts are souk up's flags that put every server on a free port.
func freePorts() []string {
	args := []string{"--nats-listen", "127.0.0.1:0"}
	for _, name := range system.Servers() {
		args = append(args, "--addr", name+"=127.0.0.1:0")
	}
	return args
}
