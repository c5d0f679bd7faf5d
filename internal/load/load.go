// Package load is `souk load`: an open-loop load generator for any Souk
// gateway. It starts the operations of a shop's mix (browse, search, view,
// sign up, log in, order and follow the order to its end) at a fixed rate,
// each at its scheduled time whether or not earlier ones have finished,
// and measures latency from that time, so that a stall shows as latency
// rather than as fewer requests (no coordinated omission). Each simulated
// shopper has its own account, token and, when the gateway is on
// loopback, source address, so that per-address rate limits see many
// users. Nothing is retried: the report counts success at the first
// attempt.
package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is a run.
type Config struct {
	// Gateway is the gateway's base URL.
	Gateway string
	// Rate is how many operations start per second.
	Rate float64
	// Duration and Requests bound the schedule; at least one is set.
	Duration time.Duration
	Requests int
	// Stop, when closed, ends the schedule early as reaching Duration
	// would: operations in flight finish and placed orders are still
	// followed to their end. Cancelling Run's context instead abandons
	// them. Nil: the schedule runs its course.
	Stop <-chan struct{}
	// Concurrency bounds the operations in flight; an operation due when
	// all are busy waits, and its wait counts in its latency.
	Concurrency int
	// Mix weighs the operations.
	Mix Mix
	// Clients is the number of simulated shoppers, each with its own
	// account and (on loopback) source address.
	Clients int
	// Timeout bounds each request.
	Timeout time.Duration
	// Follow bounds how long a placed order is followed.
	Follow time.Duration
	// DeclineShare is the share of orders paid with the declining card.
	DeclineShare float64
	// Setup: the admin account that creates Products products with Stock
	// each; or, with Existing, the products already in the shop.
	AdminEmail    string
	AdminPassword string
	Products      int
	Stock         int
	Existing      bool
	// SetupTimeout bounds the setup (accounts, products).
	SetupTimeout time.Duration
	// Seed makes the choice of operations repeatable (0: random).
	Seed uint64
}

// DefaultConfig is what souk load does without flags, but for the
// gateway and the admin's password.
func DefaultConfig() Config {
	mix, _ := ParseMix(DefaultMix)
	return Config{
		Gateway: "http://127.0.0.1:8080", Rate: 40, Duration: 30 * time.Second, Concurrency: 256,
		Mix: mix, Clients: 100, Timeout: 10 * time.Second, Follow: 45 * time.Second, DeclineShare: 0.1,
		AdminEmail: "admin@souk.local", Products: 20, Stock: 1_000_000, SetupTimeout: 2 * time.Minute,
	}
}

// Validate checks the settings before anything is sent.
func (c Config) Validate() error {
	u, err := url.Parse(c.Gateway)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("--gateway %q: want a URL like http://127.0.0.1:8080", c.Gateway)
	case c.Rate <= 0:
		return errors.New("--rate must be above 0")
	case c.Duration <= 0 && c.Requests <= 0:
		return errors.New("bound the run: --duration or --requests")
	case c.Duration < 0 || c.Requests < 0:
		return errors.New("--duration and --requests cannot be negative")
	case c.Concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case c.Clients < 1 || c.Clients > 64000:
		return errors.New("--clients must be between 1 and 64000")
	case c.Timeout <= 0 || c.Follow <= 0 || c.SetupTimeout <= 0:
		return errors.New("--timeout, --follow and --setup-timeout must be above 0")
	case c.DeclineShare < 0 || c.DeclineShare > 1:
		return errors.New("--decline-share is a share, from 0 to 1")
	case !c.Existing && (c.Products < 1 || c.Stock < 1):
		return errors.New("--products and --stock must be at least 1")
	case len(c.Mix.names) == 0:
		return errors.New("the mix is empty")
	}
	return nil
}

// Progress is what a run has done so far, for a live line.
type Progress struct {
	Elapsed   time.Duration
	Scheduled int
	Total     int   // operations the schedule holds
	Done      int64 // requests answered, follows included
	Errors    int64
	InFlight  int64
	Following int64
	Draining  bool
}

// Line is the progress as one line of a terminal.
func (p Progress) Line() string {
	ok := 100.0
	if p.Done > 0 {
		ok = 100 * float64(p.Done-p.Errors) / float64(p.Done)
	}
	state := fmt.Sprintf("%d/%d scheduled", p.Scheduled, p.Total)
	if p.Draining {
		state = "draining"
	}
	return fmt.Sprintf("%5.0fs  %s  %d done  %.2f%% ok  %d errors  %d in flight  %d orders followed",
		p.Elapsed.Seconds(), state, p.Done, ok, p.Errors, p.InFlight, p.Following)
}

// Run sets up the accounts and products, runs the schedule, waits for
// what is in flight and for the orders to end (cfg.Follow at most), sends
// failed placements again to see whether they got through, and returns
// the report. onProgress, if not nil, is called every second. started, if
// not nil and with room for a value, gets the moment the schedule starts
// (souk chaos times its faults from it).
func Run(ctx context.Context, cfg Config, onProgress func(Progress), started chan<- time.Time) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	gw, _ := url.Parse(cfg.Gateway)
	base := strings.TrimSuffix(cfg.Gateway, "/")
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &shop{cfg: cfg, base: base, runID: fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)}

	// The shoppers, each with its connections and, on loopback, address.
	clients := make([]*client, cfg.Clients)
	onLoopback := loopback(gw)
	conns := max(2, cfg.Concurrency/cfg.Clients+1)
	for i := range clients {
		c := &client{n: i, email: fmt.Sprintf("shopper-%s-%d@load.souk.test", s.runID, i), password: "load shopper password"}
		if onLoopback {
			c.addr = sourceAddr(i)
		}
		c.http = newHTTP(c.addr, conns)
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.http.CloseIdleConnections()
		}
	}()

	sctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	if err := s.setup(sctx, func() *client { return clients[0] }); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	// Accounts, a few at a time: each costs the users service a password
	// hash to sign up and another to log in.
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	sem := make(chan struct{}, 4)
	for _, c := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.account(sctx, c); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}

	// The schedule.
	sched := Schedule{Rate: cfg.Rate, Duration: cfg.Duration, Requests: cfg.Requests}
	start := time.Now()
	s.rec = newRecorder(start)
	if started != nil {
		select {
		case started <- start:
		default: // no room: the caller did not want to wait for it
		}
	}
	type job struct {
		op       string
		c        *client
		intended time.Time
		seq      int
	}
	jobs := make(chan job)
	var inFlight atomic.Int64
	rctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var workers sync.WaitGroup
	for w := range cfg.Concurrency {
		r := rand.New(rand.NewPCG(seed, uint64(w)+1))
		workers.Go(func() {
			for j := range jobs {
				inFlight.Add(1)
				s.do(rctx, j.op, j.c, r, j.intended, j.seq)
				inFlight.Add(-1)
			}
		})
	}

	var scheduled atomic.Int64
	progressDone := make(chan struct{})
	draining := atomic.Bool{}
	total := sched.Len()
	if onProgress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-progressDone:
					return
				case <-t.C:
				}
				requests, errors, open := s.rec.sofar()
				onProgress(Progress{Elapsed: time.Since(start), Scheduled: int(scheduled.Load()), Total: total, Done: requests,
					Errors: errors, InFlight: inFlight.Load(), Following: open, Draining: draining.Load()})
			}
		}()
	}

	pick := rand.New(rand.NewPCG(seed, 0))
	timer := time.NewTimer(0)
	defer timer.Stop()
schedule:
	for i := 0; ; i++ {
		at, ok := sched.At(i)
		if !ok {
			break
		}
		intended := start.Add(at)
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				break schedule
			case <-cfg.Stop:
				break schedule
			case <-timer.C:
			}
		}
		j := job{op: cfg.Mix.Pick(pick), c: clients[pick.IntN(len(clients))], intended: intended, seq: i}
		select {
		case jobs <- j:
			scheduled.Add(1)
		case <-ctx.Done():
			break schedule
		case <-cfg.Stop:
			break schedule
		}
	}
	ran := time.Since(start)
	if sched.Duration > 0 {
		ran = min(ran, sched.Duration)
	}
	close(jobs)
	draining.Store(true)
	workers.Wait()
	s.recheck(rctx)
	s.follows.Wait()
	close(progressDone)

	rep := s.rec.report(ran)
	rep.Gateway, rep.Rate, rep.Mix, rep.Clients = cfg.Gateway, cfg.Rate, cfg.Mix.String(), cfg.Clients
	if onLoopback {
		rep.Addresses = cfg.Clients
	} else {
		rep.Addresses = 1
	}
	if err := ctx.Err(); err != nil {
		return &rep, fmt.Errorf("the run was interrupted: %w", err)
	}
	return &rep, nil
}

// sofar is what the progress line shows: requests and errors so far, and
// orders being followed.
func (r *recorder) sofar() (requests, errors, open int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.ops {
		requests += o.count
		errors += o.errors
	}
	return requests, errors, r.orders.Placed - r.orders.Terminal() - r.orders.Open
}
