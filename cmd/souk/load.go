package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/souk-shop/souk/internal/load"
)

type loadCmd struct {
	Gateway       string        `default:"http://127.0.0.1:8080" help:"The gateway's base URL. On loopback each shopper dials from its own address in 127.0.0.0/8."`
	Rate          float64       `default:"40" help:"Operations started per second (open loop: on time whether or not earlier ones have finished). Orders are the mix's share of them."`
	Duration      time.Duration `default:"30s" help:"How long to keep starting operations (0: until --requests)."`
	Requests      int           `help:"Stop after this many operations (0: until --duration)."`
	Concurrency   int           `default:"256" help:"Operations in flight at most; one due when all are busy waits, and its wait counts as latency."`
	Mix           string        `default:"${load_mix}" help:"Relative weights of browse, search, view, signup, login and order."`
	Clients       int           `default:"100" help:"Simulated shoppers, each with its own account, token and source address."`
	Timeout       time.Duration `default:"10s" help:"How long one request may take."`
	Follow        time.Duration `default:"45s" help:"How long to follow a placed order to its end."`
	DeclineShare  float64       `default:"0.1" help:"Share of orders paid with the always-declined test card (a cancelled order is a success of the system)."`
	AdminEmail    string        `default:"admin@souk.local" help:"The admin who creates the run's products."`
	AdminPassword string        `help:"The admin's password (souk up prints it at first start, or takes --admin-password)."`
	Products      int           `default:"20" help:"Products to create and stock for the run."`
	Stock         int           `default:"1000000" help:"Stock of each product created."`
	Existing      bool          `help:"Order the products already in the shop instead of creating some (no admin needed)."`
	Seed          uint64        `help:"Seed of the choice of operations (0: random)."`
	JSON          string        `name:"json" placeholder:"FILE" help:"Also write the report as JSON to FILE."`
	HTML          string        `name:"html" placeholder:"FILE" help:"Also write the report as a page (inline SVG, nothing to fetch) to FILE."`
	SVG           string        `name:"svg" placeholder:"FILE" help:"Also write the timeline as SVG to FILE."`
	MinSuccess    float64       `help:"Exit 1 when fewer than this share of requests succeeded (0 to 1)."`
}

func (l *loadCmd) config() (load.Config, error) {
	mix, err := load.ParseMix(l.Mix)
	if err != nil {
		return load.Config{}, fmt.Errorf("--mix: %w", err)
	}
	cfg := load.DefaultConfig()
	cfg.Gateway, cfg.Rate, cfg.Duration, cfg.Requests, cfg.Concurrency = l.Gateway, l.Rate, l.Duration, l.Requests, l.Concurrency
	cfg.Mix, cfg.Clients, cfg.Timeout, cfg.Follow, cfg.DeclineShare = mix, l.Clients, l.Timeout, l.Follow, l.DeclineShare
	cfg.AdminEmail, cfg.AdminPassword, cfg.Products, cfg.Stock, cfg.Existing = l.AdminEmail, l.AdminPassword, l.Products, l.Stock, l.Existing
	cfg.Seed = l.Seed
	return cfg, cfg.Validate()
}

func (l *loadCmd) run(ctx context.Context, stdout io.Writer) error {
	cfg, err := l.config()
	if err != nil {
		return err
	}
	var progress func(load.Progress)
	if isTerminal(stdout) {
		fmt.Fprintf(stdout, "souk load: setting up %d shoppers and %d products at %s…\n", cfg.Clients, cfg.Products, cfg.Gateway)
		progress = func(p load.Progress) { fmt.Fprintf(stdout, "\r\033[K%s", p.Line()) }
	}
	// The first interrupt (the end of ctx) ends the schedule as --duration
	// would: what is in flight finishes and placed orders are followed, so
	// the report is whole. Signals then go back to their default, and a
	// second interrupt ends the process at once. The line printed when the
	// schedule starts tells a script that the setup is over.
	stop, started, done := make(chan struct{}), make(chan time.Time, 1), make(chan struct{})
	defer close(done)
	cfg.Stop = stop
	go func() {
		for {
			select {
			case <-started:
				fmt.Fprintf(stdout, "souk load: set up; running %g operations/s\n", cfg.Rate)
				started = nil
				continue
			case <-ctx.Done():
				signal.Reset(os.Interrupt, syscall.SIGTERM)
				fmt.Fprintf(stdout, "\nsouk load: stopping: finishing what is in flight and following placed orders (interrupt again to quit at once)\n")
				close(stop)
			case <-done:
			}
			return
		}
	}()
	rep, err := load.Run(context.WithoutCancel(ctx), cfg, progress, started)
	if progress != nil {
		fmt.Fprint(stdout, "\r\033[K")
	}
	if rep == nil {
		return err
	}
	if werr := l.write(rep, stdout); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if rep.SuccessRate < l.MinSuccess {
		return fmt.Errorf("%.3f%% of requests succeeded, below --min-success %g", 100*rep.SuccessRate, l.MinSuccess)
	}
	return nil
}

// write prints the report and writes the files asked for.
func (l *loadCmd) write(rep *load.Report, stdout io.Writer) error {
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{l.JSON, rep.WriteJSON}, {l.HTML, rep.WriteHTML}, {l.SVG, rep.WriteSVG}} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.write); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", out.path)
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// isTerminal says whether w is a terminal, where a progress line that
// rewrites itself helps rather than litters.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
