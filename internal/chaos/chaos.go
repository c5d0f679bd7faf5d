// Package chaos is `souk chaos`: it runs Souk as many processes (N
// instances of every service with `souk serve`, a gateway, a NATS cluster
// of three in this process, PostgreSQL or SQLite), puts `souk load` on it,
// injects faults on a schedule (SIGKILL and restart of an instance,
// SIGSTOP and SIGCONT, the loss of a NATS node, added latency or a cut
// link through a proxy in front of an instance), then audits the saga
// with souk check and reports availability, latency, recovery times and
// invariant violations. Everything listens on loopback; every process it
// started is killed by its PID before it returns.
package chaos

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/souk-shop/souk/internal/check"
	"github.com/souk-shop/souk/internal/load"
	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/store"
)

// Config is a chaos run.
type Config struct {
	// Binary is the souk binary to start the processes from.
	Binary string
	// Dir holds the SQLite files, the NATS files and each process's log.
	Dir string
	// Instances of every service (the gateway runs once).
	Instances int
	// NATSNodes in the cluster; 3 survives the loss of one.
	NATSNodes int
	// Postgres, if set, is a PostgreSQL URL: each service gets a schema
	// of its own in it. Otherwise each service has a SQLite file in Dir,
	// shared by its instances.
	Postgres string
	// Load is the load; its Gateway is set by Run, its Duration is the
	// run's.
	Load load.Config
	// KillEvery SIGKILLs a random service instance that often and starts
	// it again RestartAfter later.
	KillEvery, RestartAfter time.Duration
	// NATSKillEvery shuts a random NATS node down that often, for
	// NATSDownFor.
	NATSKillEvery, NATSDownFor time.Duration
	// StopEvery SIGSTOPs a random instance that often, for StopFor.
	StopEvery, StopFor time.Duration
	// LatencyEvery adds Latency each way in front of a random instance,
	// for LatencyFor.
	LatencyEvery, LatencyFor, Latency time.Duration
	// CutEvery cuts the link to a random instance, for CutFor.
	CutEvery, CutFor time.Duration
	// Settle bounds the wait, after the load, for every order to end and
	// souk check to pass.
	Settle time.Duration
	// Keep leaves the PostgreSQL schemas in place, to look into.
	Keep bool
	// Seed chooses the victims (0: random).
	Seed uint64
	// Log, if not nil, gets a line per step and per fault.
	Log func(string)
}

// DefaultConfig is the schedule of the goals: two instances of every
// service, a NATS cluster of three, 30 orders a second (the default mix
// at 120 operations a second), a SIGKILL of a random instance every 15 s
// and of a NATS node every 2 minutes, for 10 minutes.
func DefaultConfig() Config {
	lc := load.DefaultConfig()
	lc.Rate, lc.Duration = 120, 10*time.Minute
	return Config{
		Instances: 2, NATSNodes: 3, Load: lc,
		KillEvery: 15 * time.Second, RestartAfter: time.Second,
		NATSKillEvery: 2 * time.Minute, NATSDownFor: 10 * time.Second,
		StopFor: 5 * time.Second, LatencyFor: 10 * time.Second, Latency: 200 * time.Millisecond, CutFor: 5 * time.Second,
		Settle: 90 * time.Second,
	}
}

// Validate checks the settings before anything starts.
func (c Config) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("no souk binary to start")
	case c.Dir == "":
		return errors.New("no directory for data and logs")
	case c.Instances < 1 || c.Instances > 10:
		return errors.New("--instances must be from 1 to 10")
	case c.NATSNodes < 1 || c.NATSNodes > 5:
		return errors.New("--nats-nodes must be from 1 to 5")
	case c.Load.Duration <= 0:
		return errors.New("--duration must be above 0: a chaos run is bounded in time")
	case c.KillEvery < 0 || c.NATSKillEvery < 0 || c.StopEvery < 0 || c.LatencyEvery < 0 || c.CutEvery < 0:
		return errors.New("fault intervals cannot be negative (0 turns a fault off)")
	case c.NATSKillEvery > 0 && c.NATSNodes < 2:
		return errors.New("--nats-kill-every needs a cluster: --nats-nodes 3")
	case c.Settle <= 0:
		return errors.New("--settle must be above 0")
	}
	if c.Postgres != "" {
		if u, err := url.Parse(c.Postgres); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("--postgres %q: want postgres://user@host:port/db", c.Postgres)
		}
	}
	return nil
}

// Fault is one fault injected.
type Fault struct {
	At     float64 `json:"at"` // seconds from the load's start
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	// For is how long the fault lasted: until the killed process answered
	// /readyz again (tries included, if it failed to start at first), the node was back, the process continued, the link
	// was restored.
	For float64 `json:"for"`
	// Recovery is the seconds from the fault to the first second back at
	// 99% success or more, 0 if no second fell below it within 10 s, -1 if
	// the run ended first.
	Recovery int `json:"recovery"`
	// WorstP99 is the worst p99 latency, in ms, of the 10 s after the
	// fault.
	WorstP99 float64 `json:"worst_p99_ms"`
	// Err says why the fault could not be undone (a killed instance that
	// never came back); Note what happened on the way (it took two tries).
	Err  string `json:"error,omitempty"`
	Note string `json:"note,omitempty"`
}

// noted is a fault's outcome that is worth a note but is no failure.
type noted string

func (n noted) Error() string { return string(n) }

// Report is what a chaos run found.
type Report struct {
	Instances int          `json:"instances"`
	NATSNodes int          `json:"nats_nodes"`
	Database  string       `json:"database"`
	Load      *load.Report `json:"load"`
	Faults    []Fault      `json:"faults"`
	Check     check.Report `json:"check"`
	// Settled says every order was terminal at the end.
	Settled bool `json:"settled"`
	// Started counts the processes started, restarts included; Left those
	// still running after the clean-up (0, or something is wrong).
	Started int `json:"processes_started"`
	Left    int `json:"processes_left"`
}

// Run starts the system, runs the load and the faults, audits, cleans up
// and reports. The report is returned even with an error when the run got
// far enough to have one.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			cfg.Log(fmt.Sprintf(format, args...))
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := &run{cfg: cfg, rnd: rand.New(rand.NewPCG(seed, 7)), logf: logf}
	rep = &Report{Instances: cfg.Instances, NATSNodes: cfg.NATSNodes, Database: "sqlite"}
	if cfg.Postgres != "" {
		rep.Database = "postgresql"
	}
	defer func() {
		r.cleanup()
		rep.Started, rep.Left = len(r.pids), r.left()
		if rep.Left > 0 && err == nil {
			err = fmt.Errorf("%d processes still run after the clean-up", rep.Left)
		}
	}()

	logf("starting a NATS cluster of %d", cfg.NATSNodes)
	if r.nats, err = startNATS(ctx, cfg.Dir, cfg.NATSNodes); err != nil {
		return rep, err
	}
	dbs, err := r.databases(ctx)
	if err != nil {
		return rep, err
	}
	if err := r.startAll(ctx, dbs); err != nil {
		return rep, err
	}

	// The load, and the faults against its clock.
	lc := cfg.Load
	lc.Gateway = fmt.Sprintf("http://127.0.0.1:%d", r.gateway.port)
	lc.AdminEmail, lc.AdminPassword, lc.Existing = r.adminEmail, r.adminPassword, false
	started := make(chan time.Time, 1)
	faultsDone := make(chan []Fault, 1)
	fctx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	go func() {
		select {
		case t := <-started:
			faultsDone <- r.faults(fctx, t, lc.Duration)
		case <-fctx.Done():
			faultsDone <- nil
		}
	}()
	logf("load: %g operations/s for %s against %s", lc.Rate, lc.Duration, lc.Gateway)
	lrep, lerr := load.Run(ctx, lc, nil, started)
	stopFaults()
	faults := <-faultsDone
	if lrep == nil {
		return rep, fmt.Errorf("load: %w", lerr)
	}
	rep.Load = lrep
	for i := range faults {
		f := &faults[i]
		f.Recovery = load.Recovery(lrep.Timeline, f.At, 0.99, 10)
		for s := int(f.At); s < len(lrep.Timeline) && s <= int(f.At)+10; s++ {
			f.WorstP99 = max(f.WorstP99, lrep.Timeline[s].P99)
		}
		lrep.Marks = append(lrep.Marks, load.Mark{At: f.At, Label: f.Kind + " " + f.Target})
	}
	rep.Faults = faults
	if lerr != nil {
		return rep, fmt.Errorf("load: %w", lerr)
	}

	// Every order must end, and the saga's invariants hold: with every
	// instance running, as after any outage.
	for _, in := range r.instances {
		if !in.running() {
			logf("%s is down after the faults; starting it for the audit", in.name)
			if _, err := r.restart(in); err != nil {
				logf("%s: %v", in.name, err)
			}
		}
	}
	logf("load done; auditing the saga with souk check (up to %s for every order to end)", cfg.Settle)
	rep.Check, err = r.audit(ctx, dbs)
	if err != nil {
		return rep, err
	}
	rep.Settled = rep.Check.Open == 0
	return rep, nil
}

// run is the state of one chaos run.
type run struct {
	cfg  Config
	rnd  *rand.Rand
	logf func(string, ...any)
	nats *natsCluster

	adminEmail, adminPassword string
	schemas                   []string // PostgreSQL schemas to drop

	mu        sync.Mutex
	instances []*instance // the services'
	gateway   *instance
	busy      map[string]bool // services under a fault
	pids      []int           // every process started
}

// databases makes a database per service: a schema each on PostgreSQL,
// a file each on SQLite.
func (r *run) databases(ctx context.Context) (map[string]string, error) {
	dbs := map[string]string{}
	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)
	for _, svc := range system.ServiceNames() {
		if r.cfg.Postgres == "" {
			dbs[svc] = "sqlite:" + filepath.Join(r.cfg.Dir, svc+".db")
			continue
		}
		name := "souk_chaos_" + runID + "_" + svc
		db, err := store.Open(ctx, r.cfg.Postgres)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		_, err = db.ExecContext(ctx, "CREATE SCHEMA "+name)
		db.Close()
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		r.schemas = append(r.schemas, name)
		u, _ := url.Parse(r.cfg.Postgres)
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		dbs[svc] = u.String()
	}
	return dbs, nil
}

// startAll starts every instance, then the gateway.
func (r *run) startAll(ctx context.Context, dbs map[string]string) error {
	secret := make([]byte, 12)
	_, _ = crand.Read(secret)
	r.adminEmail, r.adminPassword = "admin@chaos.souk.test", "chaos-"+hex.EncodeToString(secret)
	replicas := "1"
	if r.cfg.NATSNodes >= 3 {
		replicas = "3"
	}
	// One keyring for every instance: payments' instances open each
	// other's cards.
	keyring := filepath.Join(r.cfg.Dir, "keyring")
	if _, err := secrets.Ensure(keyring); err != nil {
		return err
	}
	common := []string{"--nats", r.nats.URLs(), "--keyring", keyring, "--registry-ttl", "3s", "--log-level", "warn", "--log-format", "json", "--trace-sample", "0"}
	for n := range r.cfg.Instances {
		for _, svc := range system.ServiceNames() {
			ports, err := freePorts(1)
			if err != nil {
				return err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
			proxy, err := NewProxy("127.0.0.1:0", addr)
			if err != nil {
				return err
			}
			in := &instance{name: fmt.Sprintf("%s#%d", svc, n+1), svc: svc, port: ports[0], proxy: proxy,
				log: filepath.Join(r.cfg.Dir, fmt.Sprintf("%s-%d.log", svc, n+1))}
			r.instances = append(r.instances, in)
			in.args = append([]string{"serve", svc, "--db", dbs[svc], "--addr", addr,
				"--advertise", "http://" + proxy.Addr(), "--stream-replicas", replicas}, common...)
			if svc == "users" && n == 0 {
				in.args = append(in.args, "--admin-email", r.adminEmail, "--admin-password", r.adminPassword)
			}
		}
	}
	// The first instance of each service, one after the other: each
	// creates its stream and the shared buckets, which a new JetStream
	// cluster does not like to be asked for all at once. Then the others
	// together.
	first := len(system.ServiceNames())
	for _, in := range r.instances[:first] {
		if err := r.start(ctx, in); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(r.instances))
	for i, in := range r.instances[first:] {
		wg.Go(func() { errs[i] = r.start(ctx, in) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	r.gateway = &instance{name: "gateway", svc: system.GatewayName, port: ports[0], log: filepath.Join(r.cfg.Dir, "gateway.log")}
	r.gateway.args = append([]string{"serve", "gateway", "--addr", fmt.Sprintf("127.0.0.1:%d", ports[0])}, common...)
	return r.start(ctx, r.gateway)
}

// restart starts a killed instance again as a supervisor would: if it
// fails (it may, while a NATS node it needs is down), again every two
// seconds, for a minute at most. note says how many tries it took and why
// the first failed; err is set only if it never came up.
func (r *run) restart(in *instance) (note string, err error) {
	var first error
	for try, end := 1, time.Now().Add(time.Minute); ; try++ {
		err := r.start(context.Background(), in)
		if err == nil {
			if first != nil {
				note = fmt.Sprintf("up at try %d; the first: %v", try, first)
				r.logf("%s: %s", in.name, note)
			}
			return note, nil
		}
		if first == nil {
			first = err
			r.logf("restart of %s: %v; trying again", in.name, err)
		}
		if time.Now().After(end) {
			return "", fmt.Errorf("%w; still down after a minute", first)
		}
		time.Sleep(2 * time.Second)
	}
}

func (r *run) start(ctx context.Context, in *instance) error {
	err := in.start(ctx, r.cfg.Binary, 60*time.Second)
	if pid := in.pid(); pid != 0 {
		r.mu.Lock()
		r.pids = append(r.pids, pid)
		r.mu.Unlock()
	}
	if err == nil {
		r.logf("%s ready on 127.0.0.1:%d (pid %d)", in.name, in.port, in.pid())
	}
	return err
}

// faults injects each kind of fault on its own schedule from start until
// d has passed, and returns what it did once every fault is undone.
func (r *run) faults(ctx context.Context, start time.Time, d time.Duration) []Fault {
	var mu sync.Mutex
	var out []Fault
	var wg sync.WaitGroup
	every := func(interval time.Duration, inject func() (Fault, bool)) {
		if interval <= 0 {
			return
		}
		wg.Go(func() {
			for next := interval; next < d; next += interval {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(start.Add(next))):
				}
				at := time.Since(start).Seconds()
				f, ok := inject()
				if !ok {
					continue
				}
				f.At = at
				mu.Lock()
				out = append(out, f)
				mu.Unlock()
			}
		})
	}
	c := r.cfg
	every(c.KillEvery, func() (Fault, bool) {
		return r.onInstance(ctx, "SIGKILL", func(in *instance) (time.Duration, error) {
			t := time.Now()
			in.kill()
			sleep(ctx, c.RestartAfter)
			note, err := r.restart(in)
			if note != "" {
				err = noted(note)
			}
			return time.Since(t), err
		})
	})
	every(c.StopEvery, func() (Fault, bool) {
		return r.onInstance(ctx, "SIGSTOP", func(in *instance) (time.Duration, error) {
			t := time.Now()
			if err := in.signal(syscall.SIGSTOP); err != nil {
				return 0, err
			}
			sleep(ctx, c.StopFor)
			return time.Since(t), in.signal(syscall.SIGCONT)
		})
	})
	every(c.LatencyEvery, func() (Fault, bool) {
		return r.onInstance(ctx, fmt.Sprintf("latency %s", c.Latency), func(in *instance) (time.Duration, error) {
			t := time.Now()
			in.proxy.SetLatency(c.Latency)
			sleep(ctx, c.LatencyFor)
			in.proxy.SetLatency(0)
			return time.Since(t), nil
		})
	})
	every(c.CutEvery, func() (Fault, bool) {
		return r.onInstance(ctx, "cut link", func(in *instance) (time.Duration, error) {
			t := time.Now()
			in.proxy.Cut(true)
			sleep(ctx, c.CutFor)
			in.proxy.Cut(false)
			return time.Since(t), nil
		})
	})
	every(c.NATSKillEvery, func() (Fault, bool) {
		var up []int
		for i := range c.NATSNodes {
			if r.nats.up(i) {
				up = append(up, i)
			}
		}
		if len(up) < c.NATSNodes {
			return Fault{}, false // one node down at a time
		}
		r.mu.Lock()
		i := up[r.rnd.IntN(len(up))]
		r.mu.Unlock()
		f := Fault{Kind: "NATS node down", Target: fmt.Sprintf("nats-%d", i)}
		r.logf("%s: %s", f.Kind, f.Target)
		wg.Go(func() {
			t := time.Now()
			r.nats.kill(i)
			sleep(ctx, c.NATSDownFor)
			err := r.nats.start(i)
			mu.Lock()
			defer mu.Unlock()
			for j := range out {
				if out[j].Target == f.Target && out[j].For == 0 {
					out[j].For = time.Since(t).Seconds()
					if err != nil {
						out[j].Err = err.Error()
					}
				}
			}
			r.logf("nats-%d back after %s", i, time.Since(t).Round(time.Millisecond))
		})
		return f, true
	})
	wg.Wait()
	slices.SortFunc(out, func(a, b Fault) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return out
}

// onInstance picks a random service instance whose service is under no
// other fault (so that a sibling stays healthy), and runs the fault
// against it in the background; the fault's For is filled in when it
// ends.
func (r *run) onInstance(ctx context.Context, kind string, fault func(*instance) (time.Duration, error)) (Fault, bool) {
	r.mu.Lock()
	if r.busy == nil {
		r.busy = map[string]bool{}
	}
	var free []*instance
	for _, in := range r.instances {
		if !r.busy[in.svc] {
			free = append(free, in)
		}
	}
	if len(free) == 0 {
		r.mu.Unlock()
		return Fault{}, false
	}
	in := free[r.rnd.IntN(len(free))]
	r.busy[in.svc] = true
	r.mu.Unlock()
	f := Fault{Kind: kind, Target: in.name}
	r.logf("%s: %s (pid %d)", kind, in.name, in.pid())
	took, err := fault(in)
	r.mu.Lock()
	r.busy[in.svc] = false
	r.mu.Unlock()
	f.For = took.Seconds()
	var n noted
	switch {
	case errors.As(err, &n):
		f.Note = string(n)
	case err != nil:
		f.Err = err.Error()
		r.logf("%s of %s: %v", kind, in.name, err)
	}
	return f, true
}

// audit runs souk check until every order has ended and no invariant is
// broken, or Settle has passed; it returns the last report.
func (r *run) audit(ctx context.Context, urls map[string]string) (check.Report, error) {
	var dbs check.Databases
	for _, d := range []struct {
		name string
		db   **store.DB
	}{{"orders", &dbs.Orders}, {"inventory", &dbs.Inventory}, {"payments", &dbs.Payments}} {
		db, err := store.Open(ctx, urls[d.name])
		if err != nil {
			return check.Report{}, fmt.Errorf("souk check: %s: %w", d.name, err)
		}
		defer db.Close()
		*d.db = db
	}
	end := time.Now().Add(r.cfg.Settle)
	for {
		rep, err := check.Run(ctx, dbs, time.Now())
		if err == nil && rep.Open == 0 && len(rep.Violations) == 0 {
			return rep, nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return rep, err
		}
		sleep(ctx, 2*time.Second)
	}
}

// cleanup kills every process this run started, by PID, shuts the NATS
// nodes down, closes the proxies and drops the PostgreSQL schemas.
func (r *run) cleanup() {
	all := slices.Clone(r.instances)
	if r.gateway != nil {
		all = append(all, r.gateway)
	}
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Go(func() {
			in.mu.Lock()
			stopped := in.stopped
			in.mu.Unlock()
			if stopped {
				_ = in.signal(syscall.SIGCONT)
			}
			in.kill()
			if in.proxy != nil {
				in.proxy.Close()
			}
		})
	}
	wg.Wait()
	if r.nats != nil {
		r.nats.shutdown()
	}
	if len(r.schemas) > 0 && r.cfg.Keep {
		r.logf("kept the PostgreSQL schemas %s", strings.Join(r.schemas, ", "))
	} else if len(r.schemas) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if db, err := store.Open(ctx, r.cfg.Postgres); err == nil {
			for _, s := range r.schemas {
				if _, err := db.ExecContext(ctx, "DROP SCHEMA "+s+" CASCADE"); err != nil {
					r.logf("drop schema %s: %v", s, err)
				}
			}
			db.Close()
		}
	}
}

// left counts the processes of this run that still exist.
func (r *run) left() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, pid := range r.pids {
		if syscall.Kill(pid, 0) == nil {
			n++
		}
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// WriteText writes the report: the load's, then the faults, the audit
// and the clean-up.
func (rep *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "souk chaos: %d instance(s) of every service, 1 gateway, a NATS cluster of %d, %s\n\n",
		rep.Instances, rep.NATSNodes, rep.Database)
	if rep.Load != nil {
		if err := rep.Load.WriteText(w); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nfaults: %d\n", len(rep.Faults))
	if len(rep.Faults) > 0 {
		fmt.Fprintf(w, "  %7s  %-26s  %-12s  %8s  %9s  %s\n", "at", "fault", "target", "lasted", "recovery", "worst p99 in 10 s")
	}
	worst := 0
	for _, f := range rep.Faults {
		rec := fmt.Sprintf("%ds", f.Recovery)
		switch {
		case f.Recovery == 0:
			rec = "none lost"
		case f.Recovery < 0:
			rec = "not seen"
		}
		worst = max(worst, f.Recovery)
		line := fmt.Sprintf("  %6.1fs  %-26s  %-12s  %7.1fs  %9s  %.0f ms", f.At, f.Kind, f.Target, f.For, rec, f.WorstP99)
		if f.Err != "" {
			line += "  (failed: " + f.Err + ")"
		} else if f.Note != "" {
			line += "  (" + f.Note + ")"
		}
		fmt.Fprintln(w, line)
	}
	if rep.Load != nil {
		fmt.Fprintf(w, "availability: %.3f%% of requests succeeded at the first attempt; longest outage (seconds below 90%%): %ds; below 99%%: %ds; slowest recovery to 99%%: %ds\n",
			100*rep.Load.SuccessRate, rep.Load.LongestBelow90, rep.Load.LongestBelow99, worst)
	}
	c := rep.Check
	fmt.Fprintf(w, "souk check: %d orders (%d confirmed, %d cancelled, %d open); %d captures, %d refunds; %d violations\n",
		c.Orders, c.Confirmed, c.Cancelled, c.Open, c.Captures, c.Refunds, len(c.Violations))
	for _, v := range c.Violations {
		fmt.Fprintf(w, "  VIOLATION %s: %s\n", v.Rule, v.Detail)
	}
	fmt.Fprintf(w, "clean-up: %d processes started (restarts included), %d left running\n", rep.Started, rep.Left)
	return nil
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteHTML writes the report as a page: the load's timeline with the
// faults marked, and the text.
func (rep *Report) WriteHTML(w io.Writer) error {
	if rep.Load == nil {
		return errors.New("no load report to draw")
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		return err
	}
	return rep.Load.WritePage(w, "souk chaos", text.String())
}
