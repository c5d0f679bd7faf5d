package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/souk-shop/souk/internal/check"
	"github.com/souk-shop/souk/internal/load"
	"github.com/souk-shop/souk/platform/store"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/events"

	"github.com/alecthomas/kong"

	"github.com/souk-shop/souk/internal/system"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/telemetry"
)

// cli is the command line. Every flag can also be set from the environment
// as SOUK_<FLAG>, e.g. SOUK_DB or SOUK_LOG_FORMAT.
type cli struct {
	Version   kong.VersionFlag `help:"Print the version and exit."`
	LogFormat string           `default:"auto" enum:"auto,text,json" help:"Log format: text for a terminal, json for a log pipeline; auto picks text when stderr is a terminal, json otherwise."`
	LogLevel  string           `default:"info" enum:"debug,info,warn,error" help:"Lowest level logged."`

	Up      upCmd      `cmd:"" help:"Run the whole shop in one process: embedded NATS, a SQLite file per service, every service and the gateway."`
	Serve   serveCmd   `cmd:"" help:"Run one service, or the gateway, as its own process against an external NATS."`
	Migrate migrateCmd `cmd:"" help:"Apply a service's database migrations and exit."`
	Events  eventsCmd  `cmd:"" help:"Inspect the event backbone."`
	NATS    natsCmd    `cmd:"" name:"nats" help:"Credentials for a NATS of your own."`
	Secrets secretsCmd `cmd:"" help:"The keyring that seals secrets at rest (cards, signing keys): make it, rotate its keys."`
	Check   checkCmd   `cmd:"" help:"Audit the order saga's invariants across the orders, inventory and payments databases."`
	Load    loadCmd    `cmd:"" help:"Put a shop's load on a gateway, open loop at a fixed rate, and report success, latency and orders' outcomes."`
	Chaos   chaosCmd   `cmd:"" help:"Run Souk as many processes on loopback, put load on it, inject faults on a schedule, audit the saga, and report availability and recovery."`
}

type checkCmd struct {
	Data        string `default:".souk" help:"Directory of souk up's SQLite files, for the databases not given below."`
	OrdersDB    string `name:"orders-db" help:"The orders database URL."`
	InventoryDB string `name:"inventory-db" help:"The inventory database URL."`
	PaymentsDB  string `name:"payments-db" help:"The payments database URL."`
	JSON        bool   `name:"json" help:"Print the report as JSON."`
}

type natsCmd struct {
	Setup natsSetupCmd `cmd:"" help:"Make an nkey seed per identity (each service, the gateway, admin) and users.conf, the nats-server configuration that lets in those identities only, each with its permissions."`
}

type natsSetupCmd struct {
	Dir            string `required:"" placeholder:"DIR" help:"Where to write the seeds (mode 0600, kept if there) and users.conf."`
	RegistryBucket string `help:"The registry's bucket, if not the default."`
}

func (n *natsSetupCmd) run(stdout io.Writer) error {
	_, users, err := system.NATSCredentials(n.Dir, n.RegistryBucket)
	if err != nil {
		return err
	}
	conf := filepath.Join(n.Dir, "users.conf")
	if err := os.WriteFile(conf, []byte(broker.UsersConfig(users)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and an nkey seed per identity (%s) in %s\n", conf, strings.Join(system.Identities(), ", "), n.Dir)
	fmt.Fprintf(stdout, "give nats-server users.conf (deploy/nats/nats.conf includes it), and each process its own seed: --nats-nkey %s\n",
		filepath.Join(n.Dir, "nats-<identity>.nk"))
	return nil
}

type eventsCmd struct {
	DLQ dlqCmd `cmd:"" name:"dlq" help:"The dead-letter stream: events consumers gave up on."`
}

// natsFlags say which NATS a command uses and as whom.
type natsFlags struct {
	NATS         string `name:"nats" default:"nats://127.0.0.1:4222" help:"NATS server URL(s), comma-separated for a cluster (souk up's embedded one is nats://127.0.0.1:4223)."`
	NATSNkey     string `name:"nats-nkey" type:"existingfile" placeholder:"FILE" help:"Authenticate with this nkey seed file (souk up and souk nats setup make one per identity: nats-<identity>.nk)."`
	NATSCreds    string `name:"nats-creds" type:"existingfile" placeholder:"FILE" help:"Authenticate with this NATS .creds file (decentralized JWT auth)."`
	NATSUser     string `name:"nats-user" help:"Authenticate with this user, and --nats-password."`
	NATSPassword string `name:"nats-password" help:"The password of --nats-user."`
}

func (f natsFlags) credentials() broker.Credentials {
	return broker.Credentials{NkeySeedFile: f.NATSNkey, CredsFile: f.NATSCreds, User: f.NATSUser, Password: f.NATSPassword}
}

type dlqCmd struct {
	natsFlags `embed:""`
	Data      string       `default:".souk" help:"souk up's data directory: without credentials, its admin's are used if it has them."`
	List      dlqListCmd   `cmd:"" help:"List dead letters, oldest first."`
	Replay    dlqReplayCmd `cmd:"" help:"Publish a dead letter again on its original subject and remove it from the dead letters."`
}

type dlqListCmd struct {
	Consumer string `help:"Only this consumer's dead letters."`
	Limit    int    `default:"100" help:"At most this many."`
	JSON     bool   `name:"json" help:"One JSON object per line, data included."`
}

type dlqReplayCmd struct {
	Seq uint64 `arg:"" help:"The dead letter's SEQ, from dlq list."`
}

type upCmd struct {
	Data          string            `default:".souk" help:"Directory for the SQLite files and the embedded NATS's JetStream files."`
	Addr          map[string]string `placeholder:"NAME=HOST:PORT" help:"Where a server listens, e.g. --addr users=127.0.0.1:6001 (repeat it for several); port 0 picks a free one. Defaults: 127.0.0.1 and ${ports}."`
	NATSListen    string            `name:"nats-listen" default:"127.0.0.1:4223" help:"Where the embedded NATS accepts other processes (empty: in-process only). Not 4222, so it never clashes with a NATS you already run."`
	Timeout       time.Duration     `help:"Gateway: how long a forwarded request may take (default: the gateway config's, 5s)."`
	GatewayConfig string            `help:"Gateway routes, policies and limits, YAML or JSON (default: the built-in services/gateway/default.yaml)." type:"existingfile"`
	CORSOrigins   []string          `name:"cors-origins" help:"Gateway: origins whose pages may call every route without CORS settings of its own (a storefront served elsewhere, e.g. http://localhost:5173); comma-separated."`
	TraceSample   float64           `default:"1" help:"The share of requests traced (0 to 1); souk up keeps them all, for /debug/traces."`
	TLS           bool              `name:"tls" help:"Serve the gateway over HTTPS (HTTP/2 and HTTP/1.1) with a certificate for localhost from a local CA that souk up makes in <data>/tls at first start and keeps; it prints how to trust the CA."`
	HSTSMaxAge    time.Duration     `name:"hsts-max-age" default:"5m" help:"With --tls: how long browsers are told to use only HTTPS with localhost (Strict-Transport-Security), on every port of it; 0 for not at all."`
	Services      system.Services   `embed:""`
	traceFlags    `embed:""`
	consoleFlags  `embed:""`
}

// consoleFlags configure the operators' console, for souk up and souk
// serve gateway.
type consoleFlags struct {
	PrometheusURL string `name:"prometheus-url" placeholder:"URL" help:"Gateway: the console's traffic charts come from this Prometheus (e.g. http://127.0.0.1:9090), which scrapes the services, instead of the gateway's own samples of their /metrics."`
	JaegerURL     string `name:"jaeger-url" placeholder:"URL" help:"Gateway: the console looks for an order's trace in this Jaeger query service (e.g. http://127.0.0.1:16686) when it is not among the traces kept in memory (with --otlp-endpoint, none are)."`
}

// traceFlags say where traces go, for souk up and souk serve.
type traceFlags struct {
	OTLPEndpoint string `name:"otlp-endpoint" help:"Export traces over OTLP/HTTP to this collector (base URL, e.g. http://127.0.0.1:4318; spans go to /v1/traces); the standard OTEL_EXPORTER_OTLP_* variables work too. Without either, recent traces stay in memory at /debug/traces."`
}

func (f traceFlags) config(getenv func(string) string, ratio float64) telemetry.TracingConfig {
	otlp := f.OTLPEndpoint != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	return telemetry.TracingConfig{OTLP: otlp, Endpoint: f.OTLPEndpoint, SampleRatio: ratio}
}

type serveCmd struct {
	Service          string `arg:"" enum:"${services}" help:"What to run: ${services_list}."`
	Addr             string `help:"host:port to listen on (default: 127.0.0.1 and the service's usual port: ${ports})."`
	Advertise        string `help:"Base URL other processes reach this instance at (default: derived from --addr)."`
	natsFlags        `embed:""`
	DB               string          `help:"Database URL: postgres://… or a SQLite file (default: <data>/<service>.db)."`
	Data             string          `default:".souk" help:"Directory for the default SQLite file."`
	Keyring          string          `type:"path" placeholder:"FILE" help:"${sealers}: the keyring that seals their secrets at rest, the same file for every instance (souk secrets init makes one). Default: <data>/keyring, made at first start if the database is a SQLite file."`
	Timeout          time.Duration   `help:"Gateway: how long a forwarded request may take (default: the config's, 5s)."`
	Config           string          `help:"Gateway: routes, policies and limits, YAML or JSON (default: the built-in one)." type:"existingfile"`
	OpsAddr          string          `name:"ops-addr" default:"127.0.0.1:8081" help:"Gateway: where it serves its operators (/metrics, /debug/traces), apart from its public port; empty for nowhere."`
	CORSOrigins      []string        `name:"cors-origins" help:"Gateway: origins whose pages may call every route without CORS settings of its own; comma-separated."`
	RegistryTTL      time.Duration   `default:"3s" help:"How long an instance stays listed after its last heartbeat."`
	StreamReplicas   int             `default:"1" help:"Servers holding each event: 1 for one NATS server, 3 on a cluster."`
	DebugAddr        string          `help:"Serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off by default."`
	TraceSample      float64         `default:"0.05" help:"The share of new traces recorded (0 to 1); requests in a sampled trace are always recorded."`
	TrustTraceparent bool            `help:"Gateway: continue the trace a client's traceparent names (for clients inside your tracing), instead of starting one."`
	TLSCert          string          `name:"tls-cert" placeholder:"FILE" help:"Gateway: serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain, PEM, the server's first; read again whenever it changes. Needs --tls-key."`
	TLSKey           string          `name:"tls-key" placeholder:"FILE" help:"Gateway: the private key (PEM) of --tls-cert; read again whenever it changes."`
	HSTSMaxAge       time.Duration   `name:"hsts-max-age" default:"8760h" help:"Gateway, with --tls-cert: how long browsers are told to reach this host over HTTPS only (Strict-Transport-Security); 0 for not at all."`
	Services         system.Services `embed:""`
	traceFlags       `embed:""`
	consoleFlags     `embed:""`
}

type migrateCmd struct {
	Service string `arg:"" enum:"${db_services}" help:"Whose migrations to apply: ${db_services_list}."`
	DB      string `help:"Database URL: postgres://… or a SQLite file (default: <data>/<service>.db)."`
	Data    string `default:".souk" help:"Directory for the default SQLite file."`
}

// exit is panicked by kong's Exit hook (after --help, say) so that run
// returns instead of the process exiting.
type exit int

// run is the whole program; main only supplies the process's context,
// arguments, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int) {
	start := time.Now()
	var c cli
	parser, err := kong.New(&c,
		kong.Name("souk"),
		kong.Description("Souk: an online shop's backend as microservices. Every flag can be set as SOUK_<FLAG> in the environment."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exit(code)) }),
		kong.Resolvers(envResolver(getenv)),
		kong.UsageOnError(),
		kong.Vars{
			"version":          versionString(),
			"services":         strings.Join(append(system.ServiceNames(), system.GatewayName), ","),
			"services_list":    strings.Join(append(system.ServiceNames(), system.GatewayName), ", "),
			"db_services":      strings.Join(system.ServiceNames(), ","),
			"db_services_list": strings.Join(system.ServiceNames(), ", "),
			"ports":            system.Ports(),
			"load_mix":         load.DefaultMix,
			"sealers":          strings.Join(system.SealerNames(), ", "),
		},
	)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer func() {
		if v := recover(); v != nil {
			c, ok := v.(exit)
			if !ok {
				panic(v)
			}
			code = int(c)
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		parser.Errorf("%s", err)
		return 2
	}
	log, err := telemetry.NewLogger(stderr, logFormat(c.LogFormat, stderr), c.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	switch kctx.Command() {
	case "up":
		err = c.Up.run(ctx, start, getenv, stdout, log)
	case "serve <service>":
		err = c.Serve.run(ctx, getenv, stdout, log)
	case "migrate <service>":
		db := c.Migrate.DB
		if db == "" {
			db = filepath.Join(c.Migrate.Data, c.Migrate.Service+".db")
		}
		err = system.Migrate(ctx, c.Migrate.Service, db, log)
		if err == nil {
			fmt.Fprintf(stdout, "%s: migrations applied to %s\n", c.Migrate.Service, db)
		}
	case "check":
		err = c.Check.run(ctx, stdout)
	case "load":
		err = c.Load.run(ctx, stdout)
	case "chaos":
		err = c.Chaos.run(ctx, stdout)
	case "nats setup":
		err = c.NATS.Setup.run(stdout)
	case "secrets init":
		err = c.Secrets.Init.run(stdout)
	case "secrets rotate":
		err = c.Secrets.Rotate.run(ctx, stdout)
	case "events dlq list":
		err = c.Events.DLQ.list(ctx, stdout, log)
	case "events dlq replay <seq>":
		err = c.Events.DLQ.replay(ctx, stdout, log)
	default:
		err = fmt.Errorf("unknown command %q", kctx.Command())
	}
	if err != nil {
		fmt.Fprintln(stderr, "souk:", err)
		return 1
	}
	return 0
}

// envResolver reads flag --foo-bar from SOUK_FOO_BAR.
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		name := "SOUK_" + strings.ToUpper(strings.ReplaceAll(flag.Name, "-", "_"))
		if v := getenv(name); v != "" {
			return v, nil
		}
		return nil, nil
	})
}

// BeforeApply runs before the flags are read, and so before the
// services' settings are validated: souk up makes sure there is an admin,
// admin@souk.local unless --admin-email says otherwise, with a generated
// password at first start unless --admin-password gives one.
func (u *upCmd) BeforeApply() error {
	u.Services.Users.AdminEmail = "admin@souk.local"
	u.Services.Users.GenerateAdmin = true
	return nil
}

func (u *upCmd) run(ctx context.Context, start time.Time, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	gw, err := system.LoadGatewayConfig(u.GatewayConfig, u.Timeout, u.CORSOrigins)
	if err != nil {
		return err
	}
	names := system.Servers()
	for name := range u.Addr {
		if !slices.Contains(names, name) {
			return fmt.Errorf("--addr %s=…: no such server; there are %s", name, strings.Join(names, ", "))
		}
	}
	addr := func(name string) string {
		if a, ok := u.Addr[name]; ok {
			return a
		}
		return system.DefaultAddr(name)
	}
	ltls, err := u.localTLS(log)
	if err != nil {
		return err
	}
	cfg := system.Config{
		NATSListen: u.NATSListen,
		DataDir:    u.Data,
		Services:   u.Services,
		Tracing:    u.traceFlags.config(getenv, u.TraceSample),
		Gateway:    &system.GatewayConfig{Addr: addr(system.GatewayName), OpsAddr: addr(system.GatewayOpsName), Config: gw, TLS: ltls.config(), Prometheus: u.PrometheusURL, Jaeger: u.JaegerURL},
		Server:     server.DefaultConfig(),
	}
	for _, name := range system.ServiceNames() {
		cfg.Instances = append(cfg.Instances, system.Instance{Service: name, Addr: addr(name), DB: filepath.Join(u.Data, name+".db")})
	}
	if err := os.MkdirAll(u.Data, 0o700); err != nil {
		return err
	}
	if cfg.Keyring, err = secrets.Ensure(filepath.Join(u.Data, "keyring")); err != nil {
		return err
	}
	sys, err := system.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "souk is up in %s\n", time.Since(start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, name := range append([]string{system.GatewayName, system.GatewayOpsName}, system.ServiceNames()...) {
		fmt.Fprintf(tw, "  %s\t%s\n", name, sys.URLs[name])
	}
	if sys.NATSURL != "" {
		fmt.Fprintf(tw, "  %s\t%s\n", "nats", sys.NATSURL)
		fmt.Fprintf(tw, "  %s\t%s\n", "credentials", sys.NATSCredentialsDir)
	}
	fmt.Fprintf(tw, "  %s\t%s\n", "keyring", cfg.Keyring.Path())
	fmt.Fprintf(tw, "  %s\t%s\n", "data", u.Data)
	if err := tw.Flush(); err != nil {
		return err
	}
	ltls.print(stdout, sys.URLs[system.GatewayName])
	for _, n := range sys.Notices {
		fmt.Fprintln(stdout, n)
	}
	fmt.Fprintln(stdout, "Try: curl -s"+ltls.curlFlag()+" -XPOST "+sys.URLs[system.GatewayName]+`/api/auth/register -H 'Content-Type: application/json' -d '{"name":"Ada","email":"ada@example.com","password":"correct horse battery"}'`)
	return wait(ctx, sys, stdout)
}

func (s *serveCmd) run(ctx context.Context, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	addr := s.Addr
	if addr == "" {
		addr = system.DefaultAddr(s.Service)
	}
	if s.RegistryTTL < 300*time.Millisecond {
		return fmt.Errorf("--registry-ttl %s is too short: heartbeats come every third of it; use at least 300ms", s.RegistryTTL)
	}
	streams := events.DefaultStreamConfig()
	streams.Replicas = s.StreamReplicas
	tc, err := s.gatewayTLS(log)
	if err != nil {
		return err
	}
	cfg := system.Config{NATS: s.NATS, NATSCredentials: func(string) broker.Credentials { return s.credentials() }, NATSWait: 30 * time.Second,
		Registry: discovery.Config{TTL: s.RegistryTTL}, Streams: streams,
		Services: s.Services, Tracing: s.traceFlags.config(getenv, s.TraceSample), Server: server.DefaultConfig()}
	if s.Service == system.GatewayName {
		if getenv("GOGC") == "" {
			// The gateway allocates per request and keeps little: a heap
			// of five times the live data (tens of MiB) costs less than
			// collecting four times as often (~8% of its CPU, measured
			// with bench/gateway).
			debug.SetGCPercent(400)
		}
		gw, err := system.LoadGatewayConfig(s.Config, s.Timeout, s.CORSOrigins)
		if err != nil {
			return err
		}
		cfg.Gateway = &system.GatewayConfig{Addr: addr, OpsAddr: s.OpsAddr, Config: gw, TrustTraceparent: s.TrustTraceparent, TLS: tc, Prometheus: s.PrometheusURL, Jaeger: s.JaegerURL}
	} else {
		db := s.DB
		if db == "" {
			db = filepath.Join(s.Data, s.Service+".db")
		}
		cfg.Instances = []system.Instance{{Service: s.Service, Addr: addr, Advertise: s.Advertise, DB: db}}
		if slices.Contains(system.SealerNames(), s.Service) {
			k, err := s.keyring(db)
			if err != nil {
				return err
			}
			cfg.Keyring = k
		}
	}
	if s.DebugAddr != "" {
		ln, err := net.Listen("tcp", s.DebugAddr)
		if err != nil {
			return fmt.Errorf("--debug-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		dbg := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go dbg.Serve(ln)
		defer dbg.Close()
	}
	sys, err := system.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, n := range sys.Notices {
		fmt.Fprintln(stdout, n)
	}
	fmt.Fprintf(stdout, "%s is serving on %s\n", s.Service, sys.URLs[s.Service])
	return wait(ctx, sys, stdout)
}

// wait blocks until ctx ends (SIGINT, SIGTERM) or a server fails, then
// shuts the system down gracefully.
func wait(ctx context.Context, sys *system.System, stdout io.Writer) error {
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-sys.Failed():
	}
	fmt.Fprintln(stdout, "shutting down: finishing in-flight requests")
	err := errors.Join(failed, sys.Shutdown(context.WithoutCancel(ctx)))
	if err == nil {
		fmt.Fprintln(stdout, "stopped")
	}
	return err
}

func (d *dlqCmd) connect(log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	creds := d.credentials()
	if creds == (broker.Credentials{}) {
		// souk up's NATS lets in its identities only: the admin's seed is
		// in its data directory.
		if seed := filepath.Join(d.Data, "credentials", "nats-"+system.AdminIdentity+".nk"); fileExists(seed) {
			creds.NkeySeedFile = seed
		}
	}
	nc, err := broker.Connect(d.NATS, "souk-cli", creds, log)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (souk up's NATS listens on nats://127.0.0.1:4223 by default; pass --nats)", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func (d *dlqCmd) list(ctx context.Context, stdout io.Writer, log *slog.Logger) error {
	nc, js, err := d.connect(log)
	if err != nil {
		return err
	}
	defer nc.Close()
	dls, err := events.ListDeadLetters(ctx, js, d.List.Consumer, d.List.Limit)
	if err != nil {
		return err
	}
	if d.List.JSON {
		enc := json.NewEncoder(stdout)
		for _, dl := range dls {
			if err := enc.Encode(dl); err != nil {
				return err
			}
		}
		return nil
	}
	if len(dls) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tCONSUMER\tSUBJECT\tEVENT ID\tTRIES\tREASON")
	for _, dl := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", dl.Seq, dl.Time.Format(time.RFC3339), dl.Consumer,
			dl.Subject, dl.EventID, dl.Deliveries, dl.Reason)
	}
	return tw.Flush()
}

func (d *dlqCmd) replay(ctx context.Context, stdout io.Writer, log *slog.Logger) error {
	nc, js, err := d.connect(log)
	if err != nil {
		return err
	}
	defer nc.Close()
	dl, err := events.ReplayDeadLetter(ctx, js, d.Replay.Seq)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed dead letter %d: event %s on %s\n", dl.Seq, dl.EventID, dl.Subject)
	return nil
}

func (c *checkCmd) run(ctx context.Context, stdout io.Writer) error {
	open := func(url, name string) (*store.DB, error) {
		if url == "" {
			url = filepath.Join(c.Data, name+".db")
		}
		// An audit reads: a file that is not there is a wrong directory,
		// not a database to create.
		if path, ok := store.SQLitePath(url); ok {
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no such file %s: run souk check where souk up keeps its data (--data), or name the databases (--%s-db)", path, name)
			}
		}
		return store.Open(ctx, url)
	}
	var dbs check.Databases
	var err error
	for _, d := range []struct {
		url, name string
		db        **store.DB
	}{{c.OrdersDB, "orders", &dbs.Orders}, {c.InventoryDB, "inventory", &dbs.Inventory}, {c.PaymentsDB, "payments", &dbs.Payments}} {
		if *d.db, err = open(d.url, d.name); err != nil {
			return fmt.Errorf("%s database: %w", d.name, err)
		}
		defer (*d.db).Close()
	}
	rep, err := check.Run(ctx, dbs, time.Now())
	if err != nil {
		return err
	}
	if c.JSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "orders: %d (%d confirmed, %d cancelled, %d open); products: %d; captures: %d; refunds: %d\n",
			rep.Orders, rep.Confirmed, rep.Cancelled, rep.Open, rep.Products, rep.Captures, rep.Refunds)
		for _, v := range rep.Violations {
			fmt.Fprintf(stdout, "VIOLATION %s: %s\n", v.Rule, v.Detail)
		}
		if len(rep.Violations) == 0 {
			fmt.Fprintln(stdout, "0 violations")
		}
	}
	if n := len(rep.Violations); n > 0 {
		return fmt.Errorf("%d violations", n)
	}
	return nil
}

// logFormat resolves auto: text on a terminal, JSON anywhere else (a
// container's log, a file, a pipe to a log shipper).
func logFormat(format string, w io.Writer) string {
	if format != "auto" {
		return format
	}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return "text"
		}
	}
	return "json"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
