package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/souk-shop/souk/internal/chaos"
	"github.com/souk-shop/souk/internal/load"
)

type chaosCmd struct {
	Binary        string        `help:"The souk binary to run the processes from (default: this one)."`
	Data          string        `placeholder:"DIR" help:"Directory for the SQLite and NATS files and every process's log (default: a new temporary one, removed at the end unless --keep)."`
	Keep          bool          `help:"Keep the data directory and the PostgreSQL schemas, to look into."`
	Instances     int           `default:"2" help:"Instances of every service (the gateway runs once)."`
	NATSNodes     int           `name:"nats-nodes" default:"3" help:"Nodes of the NATS cluster, run in this process."`
	Postgres      string        `placeholder:"URL" help:"A PostgreSQL URL: each service gets a schema of its own there, dropped at the end (default: SQLite files)."`
	Duration      time.Duration `default:"10m" help:"How long the load and the faults last."`
	Rate          float64       `default:"120" help:"Operations per second of the load (the default mix orders at a quarter of it)."`
	Clients       int           `default:"100" help:"Simulated shoppers."`
	Mix           string        `default:"${load_mix}" help:"The load's mix, as souk load takes it."`
	KillEvery     time.Duration `default:"15s" help:"SIGKILL a random service instance this often (0: never)."`
	RestartAfter  time.Duration `default:"1s" help:"Start a killed instance again after this long."`
	NATSKillEvery time.Duration `name:"nats-kill-every" default:"2m" help:"Take a random NATS node down this often (0: never)."`
	NATSDownFor   time.Duration `name:"nats-down-for" default:"10s" help:"How long a NATS node stays down."`
	StopEvery     time.Duration `help:"SIGSTOP a random service instance this often (0: never)."`
	StopFor       time.Duration `default:"5s" help:"How long before SIGCONT."`
	LatencyEvery  time.Duration `help:"Add latency in front of a random instance this often (0: never)."`
	Latency       time.Duration `default:"200ms" help:"The latency added, each way."`
	LatencyFor    time.Duration `default:"10s" help:"How long the latency lasts."`
	CutEvery      time.Duration `help:"Cut the link to a random instance this often (0: never)."`
	CutFor        time.Duration `default:"5s" help:"How long the link stays cut."`
	Settle        time.Duration `default:"90s" help:"After the load, how long every order may take to end before souk check's verdict."`
	Seed          uint64        `help:"Seed of the load and of the choice of victims (0: random)."`
	JSON          string        `name:"json" placeholder:"FILE" help:"Also write the report as JSON to FILE."`
	HTML          string        `name:"html" placeholder:"FILE" help:"Also write the report as a page (the timeline with the faults marked) to FILE."`
}

func (c *chaosCmd) run(ctx context.Context, stdout io.Writer) error {
	mix, err := load.ParseMix(c.Mix)
	if err != nil {
		return fmt.Errorf("--mix: %w", err)
	}
	cfg := chaos.DefaultConfig()
	cfg.Binary, cfg.Dir, cfg.Instances, cfg.NATSNodes, cfg.Postgres = c.Binary, c.Data, c.Instances, c.NATSNodes, c.Postgres
	cfg.Load.Duration, cfg.Load.Rate, cfg.Load.Clients, cfg.Load.Mix, cfg.Load.Seed = c.Duration, c.Rate, c.Clients, mix, c.Seed
	cfg.KillEvery, cfg.RestartAfter, cfg.NATSKillEvery, cfg.NATSDownFor = c.KillEvery, c.RestartAfter, c.NATSKillEvery, c.NATSDownFor
	cfg.StopEvery, cfg.StopFor, cfg.LatencyEvery, cfg.Latency, cfg.LatencyFor = c.StopEvery, c.StopFor, c.LatencyEvery, c.Latency, c.LatencyFor
	cfg.CutEvery, cfg.CutFor, cfg.Settle, cfg.Seed, cfg.Keep = c.CutEvery, c.CutFor, c.Settle, c.Seed, c.Keep
	if cfg.Binary == "" {
		if cfg.Binary, err = os.Executable(); err != nil {
			return err
		}
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "souk-chaos-"); err != nil {
			return err
		}
		if !c.Keep {
			defer os.RemoveAll(cfg.Dir)
		}
	} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := cfg.Load.Validate(); err != nil {
		return err
	}
	begin := time.Now()
	cfg.Log = func(line string) {
		fmt.Fprintf(stdout, "[%7.1fs] %s\n", time.Since(begin).Seconds(), line)
	}
	rep, err := chaos.Run(ctx, cfg)
	if rep != nil {
		fmt.Fprintln(stdout)
		if werr := rep.WriteText(stdout); werr != nil {
			return werr
		}
		if c.JSON != "" {
			if werr := writeFile(c.JSON, rep.WriteJSON); werr != nil {
				return werr
			}
			fmt.Fprintf(stdout, "wrote %s\n", c.JSON)
		}
		if c.HTML != "" && rep.Load != nil {
			if werr := writeFile(c.HTML, rep.WriteHTML); werr != nil {
				return werr
			}
			fmt.Fprintf(stdout, "wrote %s\n", c.HTML)
		}
		if c.Keep || c.Data != "" {
			fmt.Fprintf(stdout, "data and logs: %s\n", cfg.Dir)
		}
	}
	if err != nil {
		return err
	}
	switch {
	case len(rep.Check.Violations) > 0:
		return fmt.Errorf("souk check found %d violations", len(rep.Check.Violations))
	case !rep.Settled:
		return fmt.Errorf("%d orders were still open %s after the load", rep.Check.Open, c.Settle)
	case rep.Left > 0:
		return errors.New("processes were left running")
	}
	return nil
}
