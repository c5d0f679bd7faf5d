// Command gateway measures the Souk gateway against the backend alone and
// against nginx, haproxy, caddy and a minimal Go proxy (go-httputil)
// proxying to the same backends, in one run, on loopback. Run it through run.sh, which builds souk and pins this
// program (load generator and backends) to CPU 1; each proxy runs alone on
// CPU 0 with one worker (GOMAXPROCS=1 for the Go ones).
//
// For each target and round it runs wrk with 64 connections, wrk with 1
// connection, and an open-loop generator at a fixed rate, and reads the
// proxy's CPU time before and after; rounds interleave the targets, and the
// report gives the medians.
//
// The targets ending in -tls serve HTTPS (HTTP/1.1 over TLS 1.3, with a
// certificate from a local CA made for the run; the load keeps its
// connections, so handshakes are a start-up cost), and souk-full-h2 the
// same gateway over HTTP/2, loaded by h2load instead of wrk (one stream
// at a time per connection, as wrk's; no open-loop run). -new-conns adds a
// run that opens a connection per request, which prices the TLS handshake.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/localca"
)

var (
	duration = flag.Duration("duration", 10*time.Second, "length of each measurement")
	rounds   = flag.Int("rounds", 5, "interleaved rounds")
	rate     = flag.Int("rate", 4000, "requests per second of the open-loop run")
	soukBin  = flag.String("souk", "", "the souk binary (run.sh builds it)")
	only     = flag.String("targets", "direct,nginx,haproxy,caddy,go-httputil,souk-bare,souk-full", "targets, comma-separated")
	proxyCPU = flag.String("proxy-cpu", "0", "CPU the proxies run on")
	loadCPU  = flag.String("load-cpu", "1", "CPU wrk runs on")
	gogc     = flag.String("gogc", "", "GOGC for the Souk gateway (default: souk's own, 400 for the gateway)")
	samples  = flag.String("trace-samples", "", "instead of the proxies, run souk-full once per sampling ratio in this comma-separated list (e.g. 0,0.01,1)")
	profile  = flag.String("pprof", "", "instead of measuring, write a CPU profile of souk-full under load to this file")
	soukEnvs = flag.String("souk-env", "", "extra environment for the Souk gateways, comma-separated KEY=VALUE (e.g. GODEBUG=schedtrace=100000000)")
	baseline = flag.String("baseline", "", "another souk binary, measured as souk-full@baseline beside this one's souk-full (e.g. a build of the previous commit)")
	newConns = flag.Bool("new-conns", false, "also measure with a new connection per request (wrk, 16 connections, Connection: close): what setting a connection up costs, the TLS handshake included for the -tls targets")
)

// tlsFiles are the certificate and key the TLS targets serve, and
// clientTLS trusts their CA; made at the start of run.
var (
	tlsFiles  localca.Files
	clientTLS *tls.Config
)

// backendsEnv set makes this program the backends' process: the load
// generator and the backends share CPU 1 but not a Go scheduler, so the
// generator's timings do not wait behind the backends' goroutines.
const backendsEnv = "SOUK_BENCH_BACKENDS"

func main() {
	flag.Parse()
	if os.Getenv(backendsEnv) != "" {
		if err := serveBackends(); err != nil {
			fmt.Fprintln(os.Stderr, "bench backends:", err)
			os.Exit(1)
		}
		return
	}
	if os.Getenv(proxyEnv) != "" {
		if err := serveGoProxy(); err != nil {
			fmt.Fprintln(os.Stderr, "bench go-httputil:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// result is one measurement of one target.
type result struct {
	rps64, p50c64, p99c64 float64 // req/s, ms
	p50c1, p99c1          float64 // ms
	olP50, olP99          float64 // ms, open loop; -1 when not measured
	olErrors              int
	cpuPerReq             float64 // µs of proxy CPU per request, in the 64-connection run
	rpsNew, cpuPerNew     float64 // with a new connection per request (-new-conns): req/s, µs of proxy CPU per request
}

func run() error {
	if *soukBin == "" {
		return fmt.Errorf("-souk is required (use bench/gateway/run.sh)")
	}
	tmp, err := os.MkdirTemp("", "souk-bench-gateway")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// NATS and the registry, for the Souk gateway.
	nats, err := broker.StartEmbedded(broker.EmbeddedConfig{Dir: filepath.Join(tmp, "nats"), Listen: "127.0.0.1:0"}, log)
	if err != nil {
		return err
	}
	defer nats.Shutdown()
	nc, err := nats.Connect("bench", broker.Credentials{})
	if err != nil {
		return err
	}
	reg, err := discovery.Open(context.Background(), nc, discovery.Config{}, log)
	if err != nil {
		return err
	}

	// Two backends that answer like the users service, with a JWK Set, in
	// a process of their own on this CPU.
	backends, stopBackends, err := startBackends()
	if err != nil {
		return err
	}
	defer stopBackends()
	for _, addr := range backends {
		if _, err := reg.Register(context.Background(), discovery.Instance{Service: "users", ID: discovery.NewInstanceID(), URL: "http://" + addr}); err != nil {
			return err
		}
	}
	key := benchKey()
	token, err := longToken(key)
	if err != nil {
		return err
	}
	var made localca.Made
	if tlsFiles, made, err = localca.Ensure(filepath.Join(tmp, "tls"), time.Now()); err != nil || !made.Server {
		return fmt.Errorf("local CA: %v", err)
	}
	caPEM, err := os.ReadFile(tlsFiles.CACert)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	clientTLS = &tls.Config{RootCAs: roots}

	targets := map[string]*target{
		"direct":      {url: "http://" + backends[0]},
		"nginx":       {start: func(port int) (*exec.Cmd, error) { return startNginx(tmp, port, backends, false) }},
		"nginx-tls":   {start: func(port int) (*exec.Cmd, error) { return startNginx(tmp, port, backends, true) }, scheme: "https"},
		"haproxy":     {start: func(port int) (*exec.Cmd, error) { return startHAProxy(tmp, port, backends) }},
		"caddy":       {start: func(port int) (*exec.Cmd, error) { return startCaddy(tmp, port, backends) }},
		"go-httputil": {start: func(port int) (*exec.Cmd, error) { return startGoProxy(port, backends) }},
		"souk-bare":   {start: func(port int) (*exec.Cmd, error) { return startSouk(*soukBin, tmp, port, nats.ClientURL(), false, "0") }},
		"souk-full":   {start: func(port int) (*exec.Cmd, error) { return startSouk(*soukBin, tmp, port, nats.ClientURL(), true, "0") }, token: token},
		"souk-full-tls": {start: func(port int) (*exec.Cmd, error) { return startSoukTLS(*soukBin, tmp, port, nats.ClientURL()) },
			token: token, scheme: "https"},
		"souk-full-h2": {start: func(port int) (*exec.Cmd, error) { return startSoukTLS(*soukBin, tmp, port, nats.ClientURL()) },
			token: token, scheme: "https", h2: true},
	}
	if *baseline != "" {
		targets["souk-full@baseline"] = &target{start: func(port int) (*exec.Cmd, error) { return startSouk(*baseline, tmp, port, nats.ClientURL(), true, "0") }, token: token}
		*only += ",souk-full@baseline"
	}
	names := strings.Split(*only, ",")
	if *samples != "" {
		// One souk-full per sampling ratio, traces kept in memory as souk
		// does without a collector.
		names = []string{"direct"}
		for _, r := range strings.Split(*samples, ",") {
			name := "souk-full@" + r
			targets[name] = &target{start: func(port int) (*exec.Cmd, error) { return startSouk(*soukBin, tmp, port, nats.ClientURL(), true, r) }, token: token}
			names = append(names, name)
		}
	}
	for _, name := range names {
		t, ok := targets[name]
		if !ok {
			return fmt.Errorf("unknown target %q", name)
		}
		t.name = name
		if t.start != nil {
			port, err := freePort()
			if err != nil {
				return err
			}
			t.cmd, err = t.start(port)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			defer stop(t.cmd)
			if t.scheme == "" {
				t.scheme = "http"
			}
			t.url = fmt.Sprintf("%s://127.0.0.1:%d", t.scheme, port)
		}
		if err := waitReady(t.path(), t.token); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	fmt.Printf("backends %v; proxies on CPU %s, load on CPU %s; %d rounds of %s\n", backends, *proxyCPU, *loadCPU, *rounds, *duration)
	if *profile != "" {
		for _, n := range names {
			if strings.HasPrefix(n, "souk-full") {
				return profileUnderLoad(targets[n])
			}
		}
		return fmt.Errorf("-pprof needs a souk-full target")
	}

	results := map[string][]result{}
	for round := range *rounds {
		for _, name := range names {
			t := targets[name]
			r, err := t.measure()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Printf("round %d %-9s %8.0f req/s  c64 p50 %.2f p99 %.2f ms  c1 p50 %.3f p99 %.3f ms  open-loop p50 %.3f p99 %.3f ms (%d errors)  cpu %.1f µs/req",
				round+1, name, r.rps64, r.p50c64, r.p99c64, r.p50c1, r.p99c1, r.olP50, r.olP99, r.olErrors, r.cpuPerReq)
			if *newConns {
				fmt.Printf("  new conns %.0f req/s, cpu %.1f µs/req", r.rpsNew, r.cpuPerNew)
			}
			fmt.Println()
			results[name] = append(results[name], r)
		}
	}
	report(names, results)
	return nil
}

type target struct {
	name   string
	url    string
	token  string
	scheme string // http (the default) or https
	h2     bool   // loaded over HTTP/2, by h2load
	start  func(port int) (*exec.Cmd, error)
	cmd    *exec.Cmd
}

// path is the URL the load goes to: the backend's own path for direct,
// the public one through a proxy.
func (t *target) path() string {
	if t.name == "direct" {
		return t.url + "/users/42"
	}
	return t.url + "/api/users/42"
}

func (t *target) measure() (result, error) {
	var r result
	url := t.path()
	load := wrk
	if t.h2 {
		load = h2load
	}
	cpu0 := t.cpu()
	n, out, err := load(url, t.token, 64, false)
	if err != nil {
		return r, err
	}
	if t.cmd != nil && n > 0 {
		r.cpuPerReq = float64(t.cpu()-cpu0) / float64(n)
	}
	r.rps64, r.p50c64, r.p99c64 = out.rps, out.p50, out.p99
	_, out1, err := load(url, t.token, 1, false)
	if err != nil {
		return r, err
	}
	r.p50c1, r.p99c1 = out1.p50, out1.p99
	if *newConns && !t.h2 {
		cpu0 := t.cpu()
		n, out, err := wrk(url, t.token, 16, true)
		if err != nil {
			return r, err
		}
		if t.cmd != nil && n > 0 {
			r.cpuPerNew = float64(t.cpu()-cpu0) / float64(n)
		}
		r.rpsNew = out.rps
	}
	if t.h2 {
		r.olP50, r.olP99 = -1, -1
		return r, nil
	}
	// A second at the rate first, untimed, sets the client's connections
	// up: over TLS, a start on no connections would otherwise time a
	// herd of handshakes, each one making the next requests late enough
	// to need connections of their own.
	client := &fasthttp.Client{MaxConnsPerHost: 512, NoDefaultUserAgentHeader: true, TLSConfig: clientTLS}
	if _, _, _, err := openLoop(client, url, t.token, *rate, time.Second); err != nil {
		return r, err
	}
	r.olP50, r.olP99, r.olErrors, err = openLoop(client, url, t.token, *rate, *duration)
	return r, err
}

// cpu is the CPU time, in µs, the target's processes have used.
func (t *target) cpu() int64 {
	if t.cmd == nil {
		return 0
	}
	return treeCPU(t.cmd.Process.Pid)
}

// treeCPU sums utime and stime of pid and its descendants, in µs.
func treeCPU(pid int) int64 {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	stats := map[int][]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		stats[p] = fields
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], p)
	}
	var total int64
	var walk func(int)
	walk = func(p int) {
		if f, ok := stats[p]; ok && len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			total += (u + s) * 10_000 // clock ticks of 10 ms
		}
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return total
}

type wrkOut struct{ rps, p50, p99 float64 }

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)`)
	wrkTotal   = regexp.MustCompile(`(\d+) requests in`)
	wrkErrors  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors`)
)

// wrk runs wrk pinned to the load CPU and returns the requests done and
// the figures; with closing, each request on a new connection.
func wrk(url, token string, conns int, closing bool) (int64, wrkOut, error) {
	args := []string{"-c", *loadCPU, "wrk", "-t1", "-c" + strconv.Itoa(conns), "-d" + duration.String(), "--latency"}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	if closing {
		args = append(args, "-H", "Connection: close")
	}
	b, err := exec.Command("taskset", append(args, url)...).CombinedOutput()
	if err != nil {
		return 0, wrkOut{}, fmt.Errorf("wrk: %v\n%s", err, b)
	}
	s := string(b)
	if wrkErrors.MatchString(s) {
		return 0, wrkOut{}, fmt.Errorf("wrk saw errors:\n%s", s)
	}
	var o wrkOut
	if m := wrkRPS.FindStringSubmatch(s); m != nil {
		o.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			o.p50 = v
		} else {
			o.p99 = v
		}
	}
	var n int64
	if m := wrkTotal.FindStringSubmatch(s); m != nil {
		n, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return n, o, nil
}

var (
	h2Done   = regexp.MustCompile(`requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
	h2Status = regexp.MustCompile(`status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2RPS    = regexp.MustCompile(`finished in [\d.]+m?s, ([\d.]+) req/s`)
)

// h2load runs h2load pinned to the load CPU, over HTTP/2 with one stream
// at a time per connection (as wrk does over HTTP/1.1), and returns the
// requests done and the figures, its latencies from its per-request log.
func h2load(url, token string, conns int, closing bool) (int64, wrkOut, error) {
	if closing {
		return 0, wrkOut{}, fmt.Errorf("h2load: no connection per request")
	}
	logFile, err := os.CreateTemp("", "h2load-*.tsv")
	if err != nil {
		return 0, wrkOut{}, err
	}
	logFile.Close()
	defer os.Remove(logFile.Name())
	args := []string{"-c", *loadCPU, "h2load", "-t1", "-c" + strconv.Itoa(conns), "-m1", "-D", strconv.Itoa(max(int(duration.Seconds()), 1)),
		"--log-file", logFile.Name()}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	b, err := exec.Command("taskset", append(args, url)...).CombinedOutput()
	s := string(b)
	done, ok := h2Done.FindStringSubmatch(s), h2Status.FindStringSubmatch(s)
	// Requests still in flight when the time is up are started, and may
	// be answered, but are not done: only done ones count.
	if err != nil || done == nil || ok == nil || done[1] != done[2] || done[3] != "0" || done[4] != "0" || ok[1] != "0" || ok[2] != "0" || ok[3] != "0" {
		return 0, wrkOut{}, fmt.Errorf("h2load saw errors (%v):\n%s", err, s)
	}
	if !strings.Contains(s, "Application protocol: h2") {
		return 0, wrkOut{}, fmt.Errorf("h2load did not speak HTTP/2:\n%s", s)
	}
	var o wrkOut
	if m := h2RPS.FindStringSubmatch(s); m != nil {
		o.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	n, _ := strconv.ParseInt(done[2], 10, 64)
	tsv, err := os.ReadFile(logFile.Name())
	if err != nil {
		return 0, wrkOut{}, err
	}
	var lat []float64 // ms
	for line := range strings.Lines(string(tsv)) {
		if f := strings.Fields(line); len(f) >= 3 {
			us, _ := strconv.ParseFloat(f[2], 64)
			lat = append(lat, us/1000)
		}
	}
	if len(lat) == 0 {
		return 0, wrkOut{}, fmt.Errorf("h2load logged no requests")
	}
	slices.Sort(lat)
	o.p50, o.p99 = lat[len(lat)/2], lat[int(0.99*float64(len(lat)-1))]
	return n, o, nil
}

// openLoop sends rate requests a second for d, each at its scheduled time
// whether or not earlier ones have been answered, and measures latency from
// the scheduled time, so that a stall counts against every request it
// delays. The schedule is kept by a timerfd, which wakes the generator on
// time: a Go timer would, on an idle core, wake it up to a millisecond
// late (the runtime's poller waits in whole milliseconds), sending the
// requests in bursts and timing the generator instead of the target.
// fasthttp's client keeps the generator's own CPU small beside the
// backends it shares a core with.
func openLoop(client *fasthttp.Client, url, token string, rate int, d time.Duration) (p50, p99 float64, errors int, err error) {
	interval := time.Second / time.Duration(rate)
	total := int(d.Seconds() * float64(rate))
	start := time.Now().Add(interval) // the first tick
	ticks, err := newTicker(interval)
	if err != nil {
		return 0, 0, 0, err
	}
	defer ticks.Close()
	lat := make([]time.Duration, total)
	var failed atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int, total)
	for range 256 {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := range jobs {
				req.Reset()
				req.SetRequestURI(url)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				if err := client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
				}
				lat[i] = time.Since(start.Add(time.Duration(i) * interval))
			}
		})
	}
	for sent := 0; sent < total; {
		n, err := ticks.wait()
		if err != nil {
			close(jobs)
			wg.Wait()
			return 0, 0, 0, err
		}
		for ; n > 0 && sent < total; n-- {
			jobs <- sent
			sent++
		}
	}
	close(jobs)
	wg.Wait()
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	return ms(0.5), ms(0.99), int(failed.Load()), nil
}

// ticker is a periodic timerfd, read through Go's poller.
type ticker struct{ f *os.File }

func newTicker(every time.Duration) (*ticker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	period := unix.NsecToTimespec(every.Nanoseconds())
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: period, Value: period}, nil); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &ticker{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// wait blocks until the next tick and returns how many ticks have passed
// since the last wait.
func (t *ticker) wait() (int, error) {
	var b [8]byte
	if _, err := io.ReadFull(t.f, b[:]); err != nil {
		return 0, err
	}
	return int(binary.NativeEndian.Uint64(b[:])), nil
}

func (t *ticker) Close() error { return t.f.Close() }

// benchKey signs the benchmark's token; the backends publish its public
// half.
func benchKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) }

// startBackends runs this program again as the backends' process and
// returns their addresses and a function that stops it.
func startBackends() ([]string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), backendsEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // closed when we exit: the backends exit too
	if err != nil {
		return nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stopped := func() { _ = stdin.Close(); _ = cmd.Wait() }
	var addrs []string
	sc := bufio.NewScanner(out)
	for len(addrs) < 2 && sc.Scan() {
		addrs = append(addrs, sc.Text())
	}
	if len(addrs) < 2 {
		stopped()
		return nil, nil, fmt.Errorf("the backends' process did not start")
	}
	return addrs, stopped, nil
}

// serveBackends serves two backends, prints their addresses, and returns
// when its input closes.
func serveBackends() error {
	for range 2 {
		addr, err := startBackend(benchKey())
		if err != nil {
			return err
		}
		fmt.Println(addr)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func startBackend(key ed25519.PrivateKey) (string, error) {
	jwks, _ := json.Marshal(auth.JWKS{Keys: []auth.JWK{auth.PublicJWK("bench", key.Public().(ed25519.PublicKey))}})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"Ada Lovelace","email":"ada@example.com","role":"customer"}`, r.PathValue("id"))
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
	return ln.Addr().String(), nil
}

// longToken is a valid access token that outlives the benchmark.
func longToken(key ed25519.PrivateKey) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, auth.Claims{Role: auth.RoleCustomer, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: auth.Issuer, Subject: "u1", Audience: jwt.ClaimStrings{auth.Audience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(6 * time.Hour)),
	}})
	t.Header["kid"] = "bench"
	return t.SignedString(key)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(url, token string) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 in 15s", url)
}

// pinned runs a command on the proxy CPU.
func pinned(env []string, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("taskset", append([]string{"-c", *proxyCPU, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, cmd.Start()
}

func stop(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func startNginx(dir string, port int, backends []string, tls bool) (*exec.Cmd, error) {
	conf := filepath.Join(dir, fmt.Sprintf("nginx-%d.conf", port))
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "    server %s;\n", b)
	}
	listen := fmt.Sprintf("listen 127.0.0.1:%d;", port)
	if tls {
		listen = fmt.Sprintf("listen 127.0.0.1:%d ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;",
			port, tlsFiles.Cert, tlsFiles.Key)
	}
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`user root;
worker_processes 1;
daemon off;
pid %[1]s/nginx-%[3]d.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  upstream backend {
%[2]s    keepalive 128;
  }
  server {
    %[4]s
    location /api/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, servers.String(), port, listen)), 0o644)
	if err != nil {
		return nil, err
	}
	return pinned(nil, "nginx", "-c", conf)
}

func startHAProxy(dir string, port int, backends []string) (*exec.Cmd, error) {
	conf := filepath.Join(dir, "haproxy.cfg")
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "  server b%d %s\n", i, b)
	}
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:%d
  http-request replace-path /api(/.*) \1
  default_backend be
backend be
  balance roundrobin
%s`, port, servers.String())), 0o644)
	if err != nil {
		return nil, err
	}
	return pinned(nil, "haproxy", "-f", conf)
}

func startCaddy(dir string, port int, backends []string) (*exec.Cmd, error) {
	conf := filepath.Join(dir, "Caddyfile")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`{
  admin off
  auto_https off
}
http://127.0.0.1:%d {
  handle_path /api/* {
    reverse_proxy %s
  }
}
`, port, strings.Join(backends, " "))), 0o644)
	if err != nil {
		return nil, err
	}
	return pinned([]string{"GOMAXPROCS=1", "HOME=" + dir}, "caddy", "run", "--config", conf, "--adapter", "caddyfile")
}

// startSouk runs the Souk gateway binary bin: bare (a public route) or full
// (token verified, rate limits per user and address that never trigger,
// metrics and breakers as always), tracing the given share of requests.
func startSouk(bin, dir string, port int, natsURL string, full bool, traceSample string, extra ...string) (*exec.Cmd, error) {
	policy, limits := "public", ""
	if full {
		policy = "authenticated"
		limits = ", rate_limit: {address: {rps: 1000000, burst: 1000000}, user: {rps: 1000000, burst: 1000000}}"
	}
	conf := filepath.Join(dir, fmt.Sprintf("souk-%d.yaml", port))
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`defaults: {timeout: 5s, max_body_bytes: 1048576, strip_prefix: /api}
routes:
  - {path: "/api/users/{id}", methods: [GET], service: users, policy: %s%s}
`, policy, limits)), 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "gateway", "--nats", natsURL,
		"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--config", conf, "--log-level", "warn", "--trace-sample", traceSample,
		"--ops-addr", ""}
	args = append(args, extra...)
	if full && *profile != "" {
		args = append(args, "--debug-addr", "127.0.0.1:6061")
	}
	return pinned(soukEnv(), bin, args...)
}

// startSoukTLS runs souk-full serving HTTPS with the run's certificate.
func startSoukTLS(bin, dir string, port int, natsURL string) (*exec.Cmd, error) {
	return startSouk(bin, dir, port, natsURL, true, "0", "--tls-cert", tlsFiles.Cert, "--tls-key", tlsFiles.Key)
}

// soukEnv is the Souk gateway's environment: one core, GOGC only when
// -gogc overrides souk's own choice, and -souk-env.
func soukEnv() []string {
	env := []string{"GOMAXPROCS=1"}
	if *gogc != "" {
		env = append(env, "GOGC="+*gogc)
	}
	if *soukEnvs != "" {
		env = append(env, strings.Split(*soukEnvs, ",")...)
	}
	return env
}

// profileUnderLoad fetches a CPU profile of t while wrk loads it.
func profileUnderLoad(t *target) error {
	if t == nil || t.url == "" {
		return fmt.Errorf("-pprof needs the souk-full target")
	}
	done := make(chan error, 1)
	go func() { _, _, err := wrk(t.path(), t.token, 64, false); done <- err }()
	time.Sleep(time.Second)
	secs := int(duration.Seconds()) - 2
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:6061/debug/pprof/profile?seconds=%d", max(secs, 1)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(*profile)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.ReadFrom(resp.Body); err != nil {
		return err
	}
	return <-done
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func report(names []string, results map[string][]result) {
	col := func(name string, f func(result) float64) float64 {
		var xs []float64
		for _, r := range results[name] {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	direct := col("direct", func(r result) float64 { return r.rps64 })
	d50 := col("direct", func(r result) float64 { return r.p50c1 })
	d99 := col("direct", func(r result) float64 { return r.p99c1 })
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "\nMedians of %d rounds, %s each.\n\n", *rounds, *duration)
	fmt.Fprintf(w, "| target | req/s, 64 conns | × direct | p50 / p99, 64 conns | proxy CPU per request | 1 conn p50 / p99 | vs direct (1 conn) | open loop %d/s p50 / p99 |", *rate)
	if *newConns {
		fmt.Fprint(w, " new connection per request: req/s, proxy CPU per request |")
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	if *newConns {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	for _, n := range names {
		rps := col(n, func(r result) float64 { return r.rps64 })
		p50 := col(n, func(r result) float64 { return r.p50c1 })
		p99 := col(n, func(r result) float64 { return r.p99c1 })
		cpu := "—"
		if n != "direct" {
			cpu = fmt.Sprintf("%.1f µs", col(n, func(r result) float64 { return r.cpuPerReq }))
		}
		errs := 0
		for _, r := range results[n] {
			errs += r.olErrors
		}
		ol := "—"
		if olP50 := col(n, func(r result) float64 { return r.olP50 }); olP50 >= 0 {
			ol = fmt.Sprintf("%.2f / %.2f ms%s", olP50, col(n, func(r result) float64 { return r.olP99 }),
				map[bool]string{true: fmt.Sprintf(" (%d errors)", errs), false: ""}[errs > 0])
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f / %.2f ms | %s | %.0f / %.0f µs | %+.0f / %+.0f µs | %s |",
			n, rps, rps/direct,
			col(n, func(r result) float64 { return r.p50c64 }), col(n, func(r result) float64 { return r.p99c64 }),
			cpu, p50*1000, p99*1000, (p50-d50)*1000, (p99-d99)*1000, ol)
		if *newConns {
			newCPU := "—"
			if n != "direct" {
				newCPU = fmt.Sprintf("%.1f µs", col(n, func(r result) float64 { return r.cpuPerNew }))
			}
			if rpsNew := col(n, func(r result) float64 { return r.rpsNew }); rpsNew > 0 {
				fmt.Fprintf(w, " %.0f, %s |", rpsNew, newCPU)
			} else {
				fmt.Fprint(w, " — |")
			}
		}
		fmt.Fprintln(w)
	}
}
