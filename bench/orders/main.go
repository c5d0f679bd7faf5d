// Command orders measures the order saga end to end: orders placed through
// the gateway and confirmed (stock reserved, payment authorized, stock
// committed, payment captured). Every service instance is a `souk serve`
// process of its own, so that each one's CPU time can be read from
// /proc; the gateway, the load and (with SQLite) the embedded NATS run in
// this process.
//
// One run measures every setup asked for: SQLite with NATS embedded here,
// and PostgreSQL (-postgres) with the NATS at -nats (or embedded), each
// with one and with two instances of orders, inventory and payments
// (-instances). For each it reports confirmed orders per second with
// closed-loop clients (saturation), the latency from POST to
// OrderConfirmed open loop at half that rate, and the CPU seconds each
// process (and PostgreSQL's backends, and an external NATS) spent per
// confirmed order.
//
//	go run ./bench/orders                                     # SQLite + embedded NATS
//	go run ./bench/orders -postgres postgres://… -nats nats://127.0.0.1:4222
//
// Confirmations are observed on the orders stream (OrderConfirmed), not by
// polling. Traffic stays on loopback; every loop is bounded in count and
// time.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/api/saga"
	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/store"
)

var (
	postgres  = flag.String("postgres", "", "a PostgreSQL URL: also measure with it, each service in a fresh schema (dropped at the end)")
	natsURL   = flag.String("nats", "", "the NATS of the PostgreSQL runs (default: embedded); its Souk streams and registry are deleted first, so use one you can wipe")
	engines   = flag.String("engines", "", "which engines to measure, comma-separated: sqlite, postgres (default: sqlite, and postgres with -postgres)")
	instances = flag.String("instances", "1,2", "instances of orders, inventory and payments to measure, comma-separated (users and catalog run once)")
	rounds    = flag.Int("rounds", 1, "measure every setup this many times, interleaved, to see the machine's noise")
	clients   = flag.Int("clients", 64, "closed-loop clients in the throughput run")
	duration  = flag.Duration("duration", 10*time.Second, "length of each throughput and latency run")
	rate      = flag.Float64("rate", 0, "orders per second of the latency runs (default: half each setup's measured throughput)")
	soukBin   = flag.String("souk", "", "the souk binary to run the services from (default: built from ./cmd/souk into a temporary directory)")
	profile   = flag.String("profile", "", "a directory: write each process's CPU profile of the throughput run there, and PostgreSQL's top statements (pg_stat_statements)")
	verbose   = flag.Bool("v", false, "log this process's warnings to stderr")
	keep      = flag.Bool("keep", false, "keep each setup's directory: the services' logs and SQLite files")
)

// clockTicks is the unit of /proc/<pid>/stat's times (USER_HZ), 100 on
// every Linux Go runs on.
const clockTicks = 100

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// setup is one configuration measured.
type setup struct {
	engine    string // sqlite or postgres
	instances int
}

func (s setup) String() string {
	if s.engine == "postgres" {
		n := "embedded NATS"
		if *natsURL != "" {
			n = "external NATS"
		}
		return fmt.Sprintf("PostgreSQL + %s, %d×", n, s.instances)
	}
	return fmt.Sprintf("SQLite + embedded NATS, %d×", s.instances)
}

// result is what one setup measured.
type result struct {
	setup
	round                        int
	confirmed, cancelled, failed int64
	took                         time.Duration
	tput                         float64 // confirmed orders/s
	rate                         float64 // of the latency run
	p50, p99, max                time.Duration
	latN, notConfirmed           int
	cpu                          []cpuLine // CPU seconds during the throughput run
}

type cpuLine struct {
	name    string
	seconds float64 // in the throughput run
	idle    float64 // what the process spent idle in as long a time
}

func run() error {
	if *clients < 1 || *duration <= 0 || *rounds < 1 {
		return errors.New("-clients, -duration and -rounds must be positive")
	}
	var setups []setup
	engs := strings.Split(*engines, ",")
	if *engines == "" {
		engs = []string{"sqlite"}
		if *postgres != "" {
			engs = append(engs, "postgres")
		}
	}
	for _, e := range engs {
		if e != "sqlite" && e != "postgres" {
			return fmt.Errorf("-engines: %q is neither sqlite nor postgres", e)
		}
		if e == "postgres" && *postgres == "" {
			return errors.New("-engines postgres needs -postgres")
		}
		for _, f := range strings.Split(*instances, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 4 {
				return fmt.Errorf("-instances: %q is not a number from 1 to 4", f)
			}
			setups = append(setups, setup{engine: e, instances: n})
		}
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			return err
		}
	}
	bin := *soukBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "souk-bench-bin")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "souk")
		fmt.Println("building souk into", bin)
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/souk-shop/souk/cmd/souk").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	var results []result
	for r := range *rounds {
		for _, s := range setups {
			fmt.Printf("\n== %s (round %d)\n", s, r+1)
			res, err := measure(s, bin, fmt.Sprintf("r%d-%s-%d", r+1, s.engine, s.instances))
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			res.round = r + 1
			results = append(results, res)
		}
	}
	report(os.Stdout, results)
	return nil
}

func report(w io.Writer, results []result) {
	fmt.Fprintf(w, "\nSummary (%d clients, %s runs; the CPU is per confirmed order of the throughput run, in ms; the total leaves out PostgreSQL's other processes)\n\n", *clients, *duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "setup\tconfirmed/s\tlatency run\tp50\tp99\tmax\tCPU ms/order: by process")
	for _, r := range results {
		var parts []string
		total, net := 0.0, 0.0
		for _, c := range r.cpu {
			ms := 1000 * c.seconds / float64(r.confirmed)
			parts = append(parts, fmt.Sprintf("%s %.2f", c.name, ms))
			if !strings.HasPrefix(c.name, "postgres (other") {
				total += ms
				net += 1000 * (c.seconds - c.idle) / float64(r.confirmed)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f/s, %d\t%s\t%s\t%s\t%s; total %.2f (%.2f above idle)\n", r.setup, r.tput, r.rate, r.latN,
			ms(r.p50), ms(r.p99), ms(r.max), strings.Join(parts, ", "), total, net)
	}
	tw.Flush()
	// Ratios of the same engine, side by side.
	for _, a := range results {
		for _, b := range results {
			if a.round == b.round && a.engine == b.engine && a.instances == 1 && b.instances > 1 && a.tput > 0 {
				fmt.Fprintf(w, "round %d: %s → %d×: confirmed/s × %.2f\n", a.round, a.setup, b.instances, b.tput/a.tput)
			}
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// measure starts the system as s says, measures it and stops it again.
func measure(s setup, bin, tag string) (res result, err error) {
	res.setup = s
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "souk-bench-orders")
	if err != nil {
		return res, err
	}
	if *keep {
		fmt.Println("data and logs:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	logTo := io.Discard
	if *verbose {
		logTo = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	suffix := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)
	keyring, err := secrets.Ensure(filepath.Join(tmp, "keyring"))
	if err != nil {
		return res, err
	}

	// NATS: embedded in this process (its clients are Souk's identities,
	// with the credentials it makes), or the external one, wiped.
	natsU, creds := *natsURL, func(string) broker.Credentials { return broker.Credentials{} }
	if s.engine == "sqlite" || *natsURL == "" {
		ns, err := system.Start(ctx, system.Config{NATSListen: "127.0.0.1:0", DataDir: tmp, Server: server.DefaultConfig()}, log)
		if err != nil {
			return res, err
		}
		defer ns.Shutdown(context.WithoutCancel(ctx))
		natsU, creds = ns.NATSURL, ns.Credentials
	} else if err := wipe(ctx, natsU); err != nil {
		return res, err
	}

	// Databases: a SQLite file, or a PostgreSQL schema, per service; the
	// connections to PostgreSQL name their service, so that their
	// backends can be found.
	dbs := map[string]string{}
	var schemas []string
	defer func() {
		if err := dropSchemas(ctx, schemas); err != nil {
			fmt.Fprintln(os.Stderr, "bench: dropping the schemas:", err)
		}
	}()
	for _, name := range system.ServiceNames() {
		dbs[name] = "sqlite:" + filepath.Join(tmp, name+".db")
		if s.engine == "postgres" {
			schemaName := "bench_" + suffix + "_" + name
			if dbs[name], err = schema(ctx, *postgres, schemaName, "souk_bench_"+suffix+"_"+name); err != nil {
				return res, err
			}
			schemas = append(schemas, schemaName)
		}
	}

	// The services, each instance a process.
	var procs []*child
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for _, name := range system.ServiceNames() {
		n := 1
		if name == "orders" || name == "inventory" || name == "payments" {
			n = s.instances
		}
		for i := range n {
			p := &child{name: fmt.Sprintf("%s#%d", name, i+1), log: filepath.Join(tmp, fmt.Sprintf("%s-%d.log", name, i+1))}
			ports, err := freePorts(2)
			if err != nil {
				return res, err
			}
			p.addr, p.debug = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
			args := []string{"serve", name, "--addr", p.addr, "--debug-addr", p.debug, "--db", dbs[name],
				"--nats", natsU, "--keyring", keyring.Path(), "--log-level", "warn", "--log-format", "json", "--trace-sample", "0"}
			if c := creds(name); c.NkeySeedFile != "" {
				args = append(args, "--nats-nkey", c.NkeySeedFile)
			}
			if name == "users" && i == 0 {
				args = append(args, "--admin-email", "admin@bench.local", "--admin-password", "bench admin password")
			}
			procs = append(procs, p)
			if err := p.start(bin, args); err != nil {
				return res, err
			}
		}
	}

	// The gateway, rate limits off, in this process.
	gwConfig, err := system.LoadGatewayConfig("", 0, nil)
	if err != nil {
		return res, err
	}
	gsys, err := system.Start(ctx, system.Config{
		NATS: natsU, NATSCredentials: creds, Keyring: keyring, Server: server.DefaultConfig(),
		Registry: discovery.Config{},
		Gateway:  &system.GatewayConfig{Addr: "127.0.0.1:0", Config: gwConfig.WithoutRateLimits()},
	}, log)
	if err != nil {
		return res, err
	}
	defer gsys.Shutdown(context.WithoutCancel(ctx))
	gw := gsys.URLs[system.GatewayName]

	// Watch confirmations on the orders stream.
	nc, err := broker.Connect(natsU, "bench", creds(system.AdminIdentity), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	confirmed := newWatch()
	if err := confirmed.follow(ctx, nc); err != nil {
		return res, err
	}

	var admin string
	for end := time.Now().Add(30 * time.Second); ; {
		// The gateway learns of the instances and users' signing key
		// within moments of their start.
		if admin, err = token(gw, "admin@bench.local", "bench admin password"); err == nil || time.Now().After(end) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return res, fmt.Errorf("admin login: %w", err)
	}
	var products []string
	for _, cents := range []int{1000, 2500, 750} {
		// The first may wait until the gateway has the key of the
		// admin's token.
		var id string
		for end := time.Now().Add(30 * time.Second); ; {
			if id, err = product(gw, admin, cents); err == nil || time.Now().After(end) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return res, err
		}
		products = append(products, id)
	}
	var customers, methods []string // tokens, and their payment methods
	for i := range 20 {
		tok := customer(gw, fmt.Sprintf("c%d-%s@bench.local", i, suffix))
		customers = append(customers, tok)
		methods = append(methods, must(post(gw+"/api/payment-methods", tok, `{"card":"4242424242424242"}`))["token"].(string))
	}
	var names []string
	for _, p := range procs {
		names = append(names, fmt.Sprintf("%s pid %d", p.name, p.pid()))
	}
	fmt.Printf("processes: %s; this one (pid %d): the gateway, the load%s\n", strings.Join(names, ", "), os.Getpid(),
		map[bool]string{true: " and the NATS", false: ""}[natsU != *natsURL])

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	var seq atomic.Int64
	place := func() (string, time.Time, error) {
		i := seq.Add(1)
		body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"payment_method":%q}`, products[i%3], methods[i%int64(len(methods))])
		req, _ := http.NewRequest("POST", gw+"/api/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+customers[i%int64(len(customers))])
		req.Header.Set("Idempotency-Key", fmt.Sprint("bench-", i))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return "", start, err
		}
		defer resp.Body.Close()
		var o struct{ ID string }
		if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&o) != nil {
			b, _ := io.ReadAll(resp.Body)
			return "", start, fmt.Errorf("POST /api/orders: %d %s", resp.StatusCode, b)
		}
		return o.ID, start, nil
	}

	// Idle: what every process spends with no orders (heartbeats, sweeps,
	// polls), to tell it apart from the cost of an order.
	idleFrom, err := sample(ctx, procs, suffix, s.engine == "postgres")
	if err != nil {
		return res, err
	}
	idleFor := max(time.Second, *duration/5)
	time.Sleep(idleFor)
	idleTo, err := sample(ctx, procs, suffix, s.engine == "postgres")
	if err != nil {
		return res, err
	}
	idle := map[string]float64{} // CPU seconds per second
	var idleParts []string
	for _, k := range idleTo.order {
		idle[k] = (idleTo.cpu[k] - idleFrom.cpu[k]) / idleFor.Seconds()
		idleParts = append(idleParts, fmt.Sprintf("%s %.3f", k, idle[k]))
	}
	fmt.Printf("idle CPU, seconds per second: %s\n", strings.Join(idleParts, ", "))

	// Throughput: each client places an order, waits until it is settled,
	// and places the next, so nothing queues beyond what is in flight. A
	// warm-up first (a fifth of the run, not counted), then the run.
	var confirmedN, cancelledN, failed atomic.Int64
	counting := atomic.Bool{}
	var stopAt atomic.Int64
	warm := *duration / 5
	stopAt.Store(time.Now().Add(warm).UnixNano())
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			for time.Now().UnixNano() < stopAt.Load() {
				id, _, err := place()
				counted := counting.Load()
				if err != nil {
					if counted {
						failed.Add(1)
					}
					continue
				}
				how := confirmed.wait(id, time.Minute)
				if !counted {
					continue
				}
				switch how {
				case saga.OrderConfirmed:
					confirmedN.Add(1)
				case saga.OrderCancelled:
					cancelledN.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(warm)
	// Orders placed in the warm-up and settled in the run are not counted,
	// nor are those placed in the run and settled after it: a client's
	// round trip is short against the run.
	stopAt.Store(time.Now().Add(*duration).UnixNano())
	counting.Store(true)
	before, err := sample(ctx, procs, suffix, s.engine == "postgres")
	if err != nil {
		return res, err
	}
	stopProfiles := startProfiles(ctx, procs, tag, s.engine == "postgres")
	begin := time.Now()
	wg.Wait()
	res.took = time.Since(begin)
	after, err := sample(ctx, procs, suffix, s.engine == "postgres")
	if err != nil {
		return res, err
	}
	stopProfiles()
	res.confirmed, res.cancelled, res.failed = confirmedN.Load(), cancelledN.Load(), failed.Load()
	res.tput = float64(res.confirmed) / res.took.Seconds()
	for _, k := range after.order {
		res.cpu = append(res.cpu, cpuLine{name: k, seconds: after.cpu[k] - before.cpu[k], idle: idle[k] * res.took.Seconds()})
	}
	fmt.Printf("throughput: %d clients: %d confirmed, %d cancelled, %d failed in %s: %.0f confirmed orders/s\n",
		*clients, res.confirmed, res.cancelled, res.failed, res.took.Round(time.Millisecond), res.tput)
	if res.confirmed == 0 {
		return res, errors.New("no order was confirmed")
	}
	var cpuParts []string
	for _, c := range res.cpu {
		cpuParts = append(cpuParts, fmt.Sprintf("%s %.2fs (%.2f ms/order; %.2f above idle)", c.name, c.seconds,
			1000*c.seconds/float64(res.confirmed), 1000*(c.seconds-c.idle)/float64(res.confirmed)))
	}
	fmt.Printf("CPU in the run: %s\n", strings.Join(cpuParts, ", "))

	// Latency: open loop at a fixed rate, a bounded number of orders.
	r := *rate
	if r == 0 {
		r = res.tput / 2
	}
	res.rate = r
	interval := time.Duration(float64(time.Second) / r)
	n := max(1, int(duration.Seconds()*r))
	sent := make([]time.Time, n)
	orderIDs := make([]string, n)
	begin = time.Now()
	var lwg sync.WaitGroup
	for i := range n {
		if w := time.Until(begin.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		lwg.Go(func() {
			id, start, err := place()
			if err != nil {
				failed.Add(1)
				return
			}
			sent[i], orderIDs[i] = start, id
		})
	}
	lwg.Wait()
	var lat []time.Duration
	settle := time.Now().Add(time.Minute) // for all of them together
	for i, id := range orderIDs {
		if id == "" {
			res.notConfirmed++
			continue
		}
		if confirmed.wait(id, max(0, time.Until(settle))) != saga.OrderConfirmed {
			res.notConfirmed++
			continue
		}
		lat = append(lat, confirmed.at(id).Sub(sent[i]))
	}
	if len(lat) == 0 {
		return res, fmt.Errorf("no order of the latency run was confirmed")
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	res.p50, res.p99, res.max, res.latN = q(0.5), q(0.99), lat[len(lat)-1], len(lat)
	if res.notConfirmed > 0 {
		fmt.Printf("latency run: %d orders failed, or were not confirmed within a minute of the last POST\n", res.notConfirmed)
	}
	fmt.Printf("latency at %.0f orders/s (%d orders), POST to OrderConfirmed: p50 %s, p99 %s, max %s\n",
		r, len(lat), ms(res.p50), ms(res.p99), ms(res.max))
	return res, nil
}

// child is one `souk serve` process.
type child struct {
	name, addr, debug, log string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// start runs the process and waits until it answers /readyz.
func (c *child) start(bin string, args []string) error {
	out, err := os.Create(c.log)
	if err != nil {
		return err
	}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = out, out
	// Should this process die without stopping it, the kernel does.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		out.Close()
		return err
	}
	c.exited = make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		out.Close()
		close(c.exited)
	}()
	hc := &http.Client{Timeout: time.Second}
	for end := time.Now().Add(60 * time.Second); ; {
		if resp, err := hc.Get("http://" + c.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-c.exited:
			b, _ := os.ReadFile(c.log)
			return fmt.Errorf("%s exited before it was ready: %s", c.name, b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s was not ready in a minute", c.name)
		}
	}
}

// stop ends the process gracefully, or after ten seconds with SIGKILL.
func (c *child) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// cpuSample is the CPU seconds each process has used so far.
type cpuSample struct {
	order []string
	cpu   map[string]float64
}

// sample reads the CPU time of the service processes by service (their
// instances summed), of this process, and on PostgreSQL of the backends
// serving this run's connections, of every other postgres process (its
// background writers, and anyone else's backends) and, with -nats, of the
// machine's nats-server processes (the embedded one's is this process's).
func sample(ctx context.Context, procs []*child, suffix string, pg bool) (cpuSample, error) {
	s := cpuSample{cpu: map[string]float64{}}
	add := func(k string, v float64) {
		if _, ok := s.cpu[k]; !ok {
			s.order = append(s.order, k)
		}
		s.cpu[k] += v
	}
	self, err := procCPU(os.Getpid())
	if err != nil {
		return s, err
	}
	add("bench", self)
	for _, p := range procs {
		v, err := procCPU(p.pid())
		if err != nil {
			return s, err
		}
		svc, _, _ := strings.Cut(p.name, "#")
		add(svc, v)
	}
	if !pg {
		return s, nil
	}
	db, err := store.Open(ctx, *postgres)
	if err != nil {
		return s, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1`, "souk_bench_"+suffix+"_%")
	if err != nil {
		return s, err
	}
	ours := map[int]bool{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			rows.Close()
			return s, err
		}
		ours[pid] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	add("postgres (this run's backends)", 0)
	add("postgres (other processes)", 0)
	if *natsURL != "" {
		add(natsServer, 0)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return s, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		nats := *natsURL != "" && strings.TrimSpace(string(comm)) == "nats-server"
		if err != nil || !strings.HasPrefix(string(comm), "postgres") && !nats {
			continue
		}
		v, err := procCPU(pid)
		if err != nil {
			continue // gone meanwhile
		}
		if nats {
			add(natsServer, v)
		} else if ours[pid] {
			add("postgres (this run's backends)", v)
		} else {
			add("postgres (other processes)", v)
		}
	}
	return s, nil
}

// natsServer names the CPU of the external NATS's processes: every
// nats-server on the machine, so measure on one that runs no other.
const natsServer = "nats-server (external)"

// procCPU is the user and system CPU seconds process pid has used.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted from after its closing parenthesis are the third onwards.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(utime+stime) / clockTicks, nil
}

// startProfiles, with -profile, records a CPU profile of every process for
// the throughput run, and resets pg_stat_statements. The function it
// returns writes them out.
func startProfiles(ctx context.Context, procs []*child, tag string, pg bool) func() {
	if *profile == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	secs := max(1, int(duration.Seconds())-1)
	for _, p := range procs {
		wg.Go(func() {
			if err := fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.debug, secs),
				filepath.Join(*profile, tag+"-"+strings.ReplaceAll(p.name, "#", "")+".pprof")); err != nil {
				fmt.Fprintln(os.Stderr, "bench: profile of", p.name+":", err)
			}
		})
	}
	f, err := os.Create(filepath.Join(*profile, tag+"-bench.pprof"))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
			f = nil
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: own profile:", err)
	}
	if pg {
		if err := pgExec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
			fmt.Fprintln(os.Stderr, "bench: pg_stat_statements (is it in shared_preload_libraries, and created?):", err)
			pg = false
		}
	}
	return func() {
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
		wg.Wait()
		if pg {
			if err := topStatements(ctx, filepath.Join(*profile, tag+"-pg_stat_statements.txt")); err != nil {
				fmt.Fprintln(os.Stderr, "bench: pg_stat_statements:", err)
			}
		}
		fmt.Printf("profiles: %s/%s-*\n", *profile, tag)
	}
}

func fetch(u, path string) error {
	resp, err := (&http.Client{Timeout: *duration + 30*time.Second}).Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pgExec(ctx context.Context, q string) error {
	db, err := store.Open(ctx, *postgres)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, q)
	return err
}

// topStatements writes PostgreSQL's statements by their total execution
// time since the reset, the top 25.
func topStatements(ctx context.Context, path string) error {
	db, err := store.Open(ctx, *postgres)
	if err != nil {
		return err
	}
	defer db.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var calls, commits int64
	var total float64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0),
		coalesce(sum(calls) FILTER (WHERE query ILIKE 'commit%'), 0) FROM pg_stat_statements`).Scan(&calls, &total, &commits); err != nil {
		f.Close()
		return err
	}
	fmt.Fprintf(w, "all statements: %d calls (%d commits), %.0f ms in all\n", calls, commits, total)
	rows, err := db.QueryContext(ctx, `SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3),
		rows, wal_bytes, regexp_replace(query, '\s+', ' ', 'g')
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25`)
	if err != nil {
		f.Close()
		return err
	}
	defer rows.Close()
	fmt.Fprintln(w, "calls\ttotal ms\tmean ms\trows\twal bytes\tquery")
	for rows.Next() {
		var calls, nrows, wal int64
		var total, mean float64
		var query string
		if err := rows.Scan(&calls, &total, &mean, &nrows, &wal, &query); err != nil {
			f.Close()
			return err
		}
		if len(query) > 160 {
			query = query[:160] + "…"
		}
		fmt.Fprintf(w, "%d\t%.1f\t%.3f\t%d\t%d\t%s\n", calls, total, mean, nrows, wal, query)
	}
	if err := errors.Join(rows.Err(), w.Flush()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// wipe deletes, on an external NATS, the Souk streams and the registry
// an earlier run left: they would be consumed again, against fresh
// databases, and list instances that are gone.
func wipe(ctx context.Context, u string) error {
	nc, err := broker.Connect(u, "bench", broker.Credentials{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, name := range system.ServiceNames() {
		if err := js.DeleteStream(ctx, events.StreamName(name)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
	}
	if err := js.DeleteKeyValue(ctx, discovery.DefaultBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}

// watch records when each order was settled, and how.
type watch struct {
	mu      sync.Mutex
	times   map[string]time.Time
	how     map[string]string
	waiters map[string]chan struct{}
}

func newWatch() *watch {
	return &watch{times: map[string]time.Time{}, how: map[string]string{}, waiters: map[string]chan struct{}{}}
}

func (w *watch) follow(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := js.OrderedConsumer(ctx, "souk_orders", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"souk.orders.v1.*"}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	_, err = c.Consume(func(m jetstream.Msg) {
		if m.Subject() != saga.OrderConfirmed && m.Subject() != saga.OrderCancelled {
			return
		}
		var d saga.OrderRef
		if json.Unmarshal(m.Data(), &d) != nil {
			return
		}
		w.mu.Lock()
		w.times[d.OrderID], w.how[d.OrderID] = time.Now(), m.Subject()
		if ch, ok := w.waiters[d.OrderID]; ok {
			close(ch)
			delete(w.waiters, d.OrderID)
		}
		w.mu.Unlock()
	})
	return err
}

func (w *watch) at(id string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.times[id]
}

// wait returns how the order settled (OrderConfirmed or OrderCancelled),
// or "" if it did not within the time given.
func (w *watch) wait(id string, within time.Duration) string {
	w.mu.Lock()
	if how, ok := w.how[id]; ok {
		w.mu.Unlock()
		return how
	}
	ch, ok := w.waiters[id]
	if !ok {
		ch = make(chan struct{})
		w.waiters[id] = ch
	}
	w.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(within):
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.how[id]
}

// schema creates a schema and returns a URL whose connections use it and
// call themselves app.
func schema(ctx context.Context, base, name, app string) (string, error) {
	db, err := store.Open(ctx, base)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", name)
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func dropSchemas(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	db, err := store.Open(ctx, *postgres)
	if err != nil {
		return err
	}
	defer db.Close()
	var errs []error
	for _, n := range names {
		_, err := db.ExecContext(ctx, "DROP SCHEMA "+n+" CASCADE")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// freePorts finds n distinct free ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func post(url, auth, body string) (map[string]any, error) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("POST %s: %d %v", url, resp.StatusCode, m)
	}
	return m, nil
}

// must is for the setup's requests, which the run cannot do without.
func must(m map[string]any, err error) map[string]any {
	if err != nil {
		panic(err)
	}
	return m
}

func token(gw, email, password string) (string, error) {
	m, err := post(gw+"/api/auth/login", "", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password))
	if err != nil {
		return "", err
	}
	t, _ := m["access_token"].(string)
	return t, nil
}

func customer(gw, email string) string {
	must(post(gw+"/api/auth/register", "", fmt.Sprintf(`{"name":"Bench","email":%q,"password":"bench password 123"}`, email)))
	t, err := token(gw, email, "bench password 123")
	if err != nil {
		panic(err)
	}
	return t
}

func product(gw, admin string, cents int) (string, error) {
	m, err := post(gw+"/api/products", admin, fmt.Sprintf(`{"name":"Bench thing","price":{"amount":%d,"currency":"EUR"}}`, cents))
	if err != nil {
		return "", err
	}
	id, _ := m["id"].(string)
	req, _ := http.NewRequest("PUT", gw+"/api/inventory/"+id, strings.NewReader(`{"available":10000000}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("PUT stock: %s", resp.Status)
	}
	return id, nil
}
