package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/events"

	"github.com/souk-shop/souk/internal/openapitest"
	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/broker"
)

func noEnv(string) string { return "" }

func TestRunUsage(t *testing.T) {
	nowhere := filepath.Join(t.TempDir(), "nowhere")
	cases := []struct {
		args []string
		env  map[string]string
		code int
		out  string
	}{
		{args: []string{"--help"}, code: 0, out: "Usage: souk"},
		{args: []string{"up", "--help"}, code: 0, out: "--addr=NAME=HOST:PORT"},
		{args: []string{"up", "--addr", "warehouse=127.0.0.1:0"}, code: 1, out: "no such server"},
		{args: []string{"serve", "orders", "--order-deadline", "1ms"}, code: 2, out: "--order-deadline"},
		{args: []string{"serve", "users", "--admin-email", "root@example.com"}, code: 2, out: "--admin-password"},
		{args: []string{"up", "--payment-failure-rate", "2"}, code: 2, out: "--payment-failure-rate"},
		{args: []string{}, code: 2, out: "expected one of"},
		{args: []string{"up", "--no-such-flag"}, code: 2, out: "unknown flag"},
		{args: []string{"serve", "warehouse"}, code: 2, out: "must be one of"},
		{args: []string{"up"}, env: map[string]string{"SOUK_LOG_FORMAT": "xml"}, code: 2, out: "log-format"},
		{args: []string{"serve", "users", "--registry-ttl", "10ms"}, code: 1, out: "too short"},
		{args: []string{"migrate", "users", "--db", "sqlite:" + t.TempDir() + "/u.db"}, code: 0, out: "migrations applied"},
		{args: []string{"migrate", "catalog", "--data", t.TempDir()}, code: 0, out: "catalog.db"},
		{args: []string{"migrate", "users", "--db", "postgres://nobody@127.0.0.1:1/x?connect_timeout=1"}, code: 1, out: "connect to postgres"},
		{args: []string{"--version"}, code: 0, out: "souk "},
		{args: []string{"check", "--data", nowhere}, code: 1, out: "no such file " + filepath.Join(nowhere, "orders.db")},
		{args: []string{"events", "dlq", "list", "--nats", "nats://127.0.0.1:1"}, code: 1, out: "pass --nats"},
	}
	for _, c := range cases {
		var out strings.Builder
		getenv := func(k string) string { return c.env[k] }
		code := run(context.Background(), c.args, getenv, &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("souk %v (env %v): exit %d, want %d; output does not contain %q:\n%s", c.args, c.env, code, c.code, c.out, out.String())
		}
	}
	if _, err := os.Stat(nowhere); !os.IsNotExist(err) {
		t.Errorf("souk check where there is no data created %s (%v)", nowhere, err)
	}
}

// TestUp runs `souk up` as a user would, on free ports, and stops it as
// Ctrl-C would; then again, as the next start.
func TestUp(t *testing.T) {
	dir := t.TempDir()
	output, urls := up(t, dir, func(urls map[string]string) {
		for _, name := range []string{"gateway", "users", "catalog", "inventory", "payments", "orders"} {
			resp, err := http.Get(urls[name] + "/readyz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s at %q: /readyz %v %v", name, urls[name], resp, err)
			}
			resp.Body.Close()
		}
	})
	took, err := time.ParseDuration(strings.TrimPrefix(output[0], "souk is up in "))
	if err != nil || took > 2*time.Second {
		t.Errorf("souk up took %v (%v), want under 2s", took, err)
	}
	if !strings.HasPrefix(urls["nats"], "nats://127.0.0.1:") {
		t.Errorf("nats URL %q", urls["nats"])
	}
	// The address table lines up: every address starts in one column.
	col := -1
	for _, line := range output[1:8] {
		f := strings.Fields(line)
		if c := strings.Index(line, f[len(f)-1]); col == -1 {
			col = c
		} else if c != col {
			t.Errorf("the address table does not line up:\n%s", strings.Join(output[1:8], "\n"))
			break
		}
	}
	// The first start shows the admin's generated password, once.
	admin := regexp.MustCompile(`^Admin account \(first start, shown once\): admin@souk.local, password (\S+)$`)
	var password string
	for _, line := range output {
		if m := admin.FindStringSubmatch(line); m != nil {
			password = m[1]
		}
	}
	if len(password) < 16 {
		t.Fatalf("the first souk up did not show the admin's password:\n%s", strings.Join(output, "\n"))
	}

	output, _ = up(t, dir, func(urls map[string]string) {
		body := fmt.Sprintf(`{"email":"admin@souk.local","password":%q}`, password)
		if code, _, answer := send(t, "POST", urls["gateway"]+"/api/auth/login", body); code != 200 {
			t.Fatalf("admin login with the printed password: %d %s", code, answer)
		}
	})
	if out := strings.Join(output, "\n"); strings.Contains(out, "Admin account") || strings.Contains(out, password) {
		t.Errorf("the second souk up showed the admin's password again:\n%s", out)
	}
	for _, f := range []string{"users.db", "catalog.db", "inventory.db", "payments.db", "orders.db", "nats/jetstream"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("data dir lacks %s: %v", f, err)
		}
	}
	var out strings.Builder
	if code := run(context.Background(), []string{"check", "--data", dir}, noEnv, &out, &out); code != 0 || !strings.Contains(out.String(), "0 violations") {
		t.Errorf("souk check after souk up: exit %d:\n%s", code, out.String())
	}
}

// send makes a request with a JSON body (if not empty) and headers given as
// name, value pairs to a gateway, and fails the test if the exchange is not
// as openapi.yaml describes it. It returns the answer's status, headers and
// body, or status 0 if there was no answer.
func send(t *testing.T, method, url, body string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil
	}
	spec, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Check(req, []byte(body), resp, b); err != nil {
		t.Error(err)
	}
	return resp.StatusCode, resp.Header, b
}

// up runs `souk up` with its data in dir, every server on a free port and
// args, calls while with the addresses it printed, then stops it as Ctrl-C
// would. It returns what souk up printed before "Try:", and the addresses.
func up(t *testing.T, dir string, while func(urls map[string]string), args ...string) ([]string, map[string]string) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, append(append([]string{"up", "--data", dir}, freePorts()...), args...), noEnv, pw, t.Output())
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	urls := map[string]string{}
	var output []string
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "Try:") {
		output = append(output, lines.Text())
		if f := strings.Fields(lines.Text()); len(f) == 2 {
			urls[f[0]] = f[1]
		}
	}
	if len(output) == 0 || !strings.HasPrefix(output[0], "souk is up in ") {
		t.Fatalf("souk up printed %q", output)
	}
	while(urls)
	stop()
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	if code := <-exit; code != 0 || !strings.Contains(rest.String(), "stopped") {
		t.Fatalf("after SIGINT souk up exited %d, printing:\n%s", code, rest.String())
	}
	return output, urls
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "souk-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "souk")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// process is a souk process the test started; the test ends it by its PID.
type process struct {
	cmd *exec.Cmd
	url string
}

// startProcess runs the souk binary with args and waits for the line that
// says where it serves.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
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
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), " is serving on "); ok {
				found <- u
			}
		}
	}()
	select {
	case u := <-found:
		return &process{cmd: cmd, url: u}
	case <-time.After(30 * time.Second):
		t.Fatalf("souk %v did not start serving in 30s", args)
		return nil
	}
}

var userRequests = regexp.MustCompile(`souk_http_requests_total\{code="200",method="GET",route="GET /users/\{id\}",service="users"\} (\d+)`)

// served is how many GET /users/{id} the instance has answered, from its
// own /metrics.
func (p *process) served(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := userRequests.FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestInstancesShareLoadAndSurviveKill runs two users instances and a
// gateway as separate processes on one NATS, checks that both instances
// serve, kills one with SIGKILL and checks that the gateway stops sending it
// traffic, then starts a third and checks it is picked up.
func TestInstancesShareLoadAndSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	dir := t.TempDir()
	natsURL := testenv.NATSServer(t)
	common := []string{"--nats", natsURL, "--addr", "127.0.0.1:0", "--registry-ttl", "1s", "--log-level", "warn"}
	db := "sqlite:" + filepath.Join(dir, "users.db")
	a := startProcess(t, append([]string{"serve", "users", "--db", db}, common...)...)
	b := startProcess(t, append([]string{"serve", "users", "--db", db}, common...)...)
	// The routes this test needs, without rate limits: it sends hundreds
	// of requests a second from one address.
	config := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(config, []byte(`
defaults: {timeout: 5s, max_body_bytes: 1048576, strip_prefix: /api}
routes:
  - {path: /api/auth/register, methods: [POST], service: users, policy: public}
  - {path: /api/auth/login, methods: [POST], service: users, policy: public}
  - {path: /.well-known/jwks.json, methods: [GET], service: users, policy: public, strip_prefix: ""}
  - {path: "/api/users/{id}", methods: [GET], service: users, policy: authenticated}
`), 0o644)
	gw := startProcess(t, append([]string{"serve", "gateway", "--config", config}, common...)...)

	code, header, body := send(t, "POST", gw.url+"/api/auth/register", `{"name":"Ada","email":"ada@example.com","password":"correct horse battery"}`)
	if code != 201 {
		t.Fatalf("POST /api/auth/register: %d %s", code, body)
	}
	user := gw.url + header.Get("Location")
	code, _, body = send(t, "POST", gw.url+"/api/auth/login", `{"email":"ada@example.com","password":"correct horse battery"}`)
	if code != 200 {
		t.Fatalf("POST /api/auth/login: %d %s", code, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &tok)

	get := func() int {
		code, _, _ := send(t, "GET", user, "", "Authorization", "Bearer "+tok.AccessToken)
		return code
	}
	for i := range 200 {
		if code := get(); code != 200 {
			t.Fatalf("GET %d through the gateway: %d", i, code)
		}
	}
	na, nb := a.served(t), b.served(t)
	t.Logf("200 requests: instance a served %d, b %d", na, nb)
	if na < 40 || nb < 40 || na+nb != 200 {
		t.Fatalf("load not shared: a served %d, b %d of 200", na, nb)
	}

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killed := time.Now()
	failures := 0
	for i := range 300 {
		if get() != 200 {
			failures++
		}
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("after SIGKILL of a: %d of 300 requests failed in %s", failures, time.Since(killed).Round(time.Millisecond))
	if failures > 0 {
		t.Fatalf("%d requests failed after one of two instances was killed", failures)
	}
	if got := b.served(t); got != nb+300 {
		t.Fatalf("b served %d, want %d: requests went elsewhere", got, nb+300)
	}

	c := startProcess(t, append([]string{"serve", "users", "--db", db}, common...)...)
	deadline := time.Now().Add(5 * time.Second)
	for c.served(t) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not send a request to the new instance within 5s")
		}
		get()
	}

	// A graceful stop finishes at once and leaves the registry.
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: souk serve exited with %v", err)
	}
	for i := range 50 {
		if code := get(); code != 200 {
			t.Fatalf("GET %d after a graceful stop of c: %d", i, code)
		}
	}
}

// TestDeadLetterCommands lists and replays a dead letter through the CLI.
func TestDeadLetterCommands(t *testing.T) {
	ctx := context.Background()
	natsURL := testenv.NATSServer(t)
	nc, err := broker.Connect(natsURL, "test", broker.Credentials{}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	cfg := events.DefaultStreamConfig()
	if err := events.EnsureStream(ctx, js, "users", cfg); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureDeadLetterStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	souk := func(args ...string) (int, string) {
		var out strings.Builder
		code := run(ctx, append(args, "--nats", natsURL), noEnv, &out, &out)
		return code, out.String()
	}
	if code, out := souk("events", "dlq", "list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("list on an empty stream: %d %s", code, out)
	}

	ev, _ := events.New(ctx, "souk.users.v1.UserRegistered", "u1", map[string]string{"id": "u1"})
	dl := ev.Msg()
	dl.Subject = "souk.dlq.catalog-user-stats"
	dl.Header.Del(nats.MsgIdHdr)
	dl.Header.Set(events.HdrDeadReason, "the warehouse is on fire")
	dl.Header.Set(events.HdrDeadConsumer, "catalog-user-stats")
	dl.Header.Set(events.HdrDeadStream, events.StreamName("users"))
	dl.Header.Set(events.HdrDeadSubject, ev.Type)
	dl.Header.Set(events.HdrDeadDeliveries, "5")
	ack, err := js.PublishMsg(ctx, dl)
	if err != nil {
		t.Fatal(err)
	}

	code, out := souk("events", "dlq", "list")
	if code != 0 || !strings.Contains(out, ev.ID) || !strings.Contains(out, "the warehouse is on fire") {
		t.Fatalf("list: %d %s", code, out)
	}
	code, out = souk("events", "dlq", "replay", strconv.FormatUint(ack.Sequence, 10))
	if code != 0 || !strings.Contains(out, "replayed dead letter") {
		t.Fatalf("replay: %d %s", code, out)
	}
	if code, out := souk("events", "dlq", "list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("list after replay: %d %s", code, out)
	}
	s, _ := js.Stream(ctx, events.StreamName("users"))
	got, err := s.GetLastMsgForSubject(ctx, ev.Type)
	if err != nil || got.Header.Get("ce-id") != ev.ID || got.Header.Get(events.HdrDeadReason) != "" {
		t.Fatalf("the replayed event on the users stream: %v %v", got, err)
	}
	if code, out := souk("events", "dlq", "replay", "999"); code != 1 || !strings.Contains(out, "dead letter 999: no such dead letter") {
		t.Fatalf("replay of an unknown seq: %d %s", code, out)
	}
}

func TestLogFormat(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, c := range []struct {
		format string
		w      io.Writer
		want   string
	}{
		{"auto", &bytes.Buffer{}, "json"},
		{"auto", file, "json"}, // a file or a pipe: a log pipeline
		{"text", &bytes.Buffer{}, "text"},
		{"json", &bytes.Buffer{}, "json"},
	} {
		if got := logFormat(c.format, c.w); got != c.want {
			t.Errorf("logFormat(%q, %T) = %q, want %q", c.format, c.w, got, c.want)
		}
	}
}
