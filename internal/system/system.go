package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"

	"go.opentelemetry.io/otel/trace"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/resilience"
	"github.com/souk-shop/souk/platform/secrets"
	"github.com/souk-shop/souk/platform/server"
	"github.com/souk-shop/souk/platform/service"
	"github.com/souk-shop/souk/platform/store"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
	"github.com/souk-shop/souk/services/gateway/console"
	"github.com/souk-shop/souk/web"
)

// Config says what one process runs.
type Config struct {
	// NATS is the URL of the NATS server(s). Empty starts an embedded
	// server with its files under DataDir/nats.
	NATS string
	// NATSListen is where the embedded server accepts other processes
	// ("" for in-process connections only).
	NATSListen string
	// NATSCredentials, if set, authenticate this process's connections to
	// the NATS at NATS, by identity (the service's name, or the gateway's).
	// The embedded server makes its own: one identity per service, the
	// gateway and admin, in DataDir/credentials.
	NATSCredentials func(identity string) broker.Credentials
	// NATSWait is how long to wait at start for the external NATS to
	// answer at all (souk serve: 30s, for pods that start before it).
	NATSWait time.Duration
	// DataDir holds the embedded NATS files.
	DataDir string
	// Services are every service's settings; Instances says which run.
	Services Services
	// Instances are the service instances to run, in start order.
	Instances []Instance
	// Gateway, if not nil, runs the gateway.
	Gateway *GatewayConfig
	// Registry configures the service registry.
	Registry discovery.Config
	// Streams says how durable the event streams are.
	Streams events.StreamConfig
	// Tracing says where spans go; a zero SampleRatio records none.
	Tracing telemetry.TracingConfig
	// Server bounds every HTTP server.
	Server server.Config
	// Keyring seals what services keep secret at rest; services that seal
	// (service.Sealer) do not start without one.
	Keyring *secrets.Keyring
}

// Instance runs one instance of a service.
type Instance struct {
	// Service is the service's name.
	Service string
	Addr    string // host:port to listen on; port 0 picks one
	// Advertise is the base URL other processes reach this instance at.
	// Empty derives it from the listening address.
	Advertise string
	DB        string // database URL, see store.Open
}

// GatewayName is the gateway's name among the servers.
const GatewayName = gateway.Name

// GatewayOpsName is the gateway's operations listener among the servers.
const GatewayOpsName = gateway.Name + "-ops"

// LoadGatewayConfig reads the gateway's configuration from path (YAML or
// JSON; "" for the built-in one) and applies what the command line says of
// it: a timeout for every route (if not zero), and origins whose pages may
// call every route without CORS settings of its own.
func LoadGatewayConfig(path string, timeout time.Duration, corsOrigins []string) (gateway.Config, error) {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return cfg, err
	}
	if timeout > 0 {
		cfg.Defaults.Timeout = timeout
	}
	if len(corsOrigins) > 0 {
		cfg.Defaults.CORS = &gateway.CORS{Origins: corsOrigins, MaxAge: 10 * time.Minute}
	}
	return cfg, nil
}

// GatewayConfig runs the gateway.
type GatewayConfig struct {
	Addr string
	// OpsAddr is where the gateway serves what is for its operators, not
	// its clients: /metrics and /debug/traces (and /healthz, /readyz). The
	// public Addr serves only the API and the probes. "" serves none.
	OpsAddr string
	Config  gateway.Config
	// TrustTraceparent continues the trace a client's traceparent names,
	// for clients inside the same tracing setup; otherwise each request
	// starts its own trace.
	TrustTraceparent bool
	// TLS, if not nil, makes Addr serve HTTPS (HTTP/2 and HTTP/1.1) with
	// its certificate and HSTS; the operations port stays plain HTTP.
	TLS *server.TLS
	// Prometheus, if set, is where the console reads the traffic from
	// (console.Deps.Prometheus); Jaeger, where it looks for an order's
	// exported trace (console.Deps.Jaeger).
	Prometheus, Jaeger string
}

// System is a running process: its broker connection, services and gateway.
type System struct {
	// NATSURL is where other processes reach the embedded NATS server, if
	// this process runs one that listens.
	NATSURL string
	// NATSCredentialsDir holds the embedded server's credentials, a seed
	// file per identity (nats-<identity>.nk): other processes connect with
	// them. "" with an external NATS.
	NATSCredentialsDir string
	// URLs maps each service, and "gateway", to its base URL.
	URLs map[string]string
	// Notices are what the services' start-up work asked to show the
	// operator once (a generated admin password).
	Notices []string

	log      *slog.Logger
	embedded *broker.Embedded
	// connect opens a NATS connection as one of Souk's identities.
	connect  func(identity string) (*nats.Conn, error)
	creds    map[string]broker.Credentials // the embedded server's, by identity
	streams  events.StreamConfig
	registry discovery.Config
	hasher   *auth.Hasher
	keyring  *secrets.Keyring
	tracing  *telemetry.Tracing
	stopBg   context.CancelFunc // heartbeats and the registry watcher
	units    []*unit
	failed   chan error
}

// Start starts what cfg names and returns once every part is ready. If a
// part fails to start, what was started is stopped again.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (sys *System, err error) {
	if gc := cfg.Gateway; gc != nil {
		for flag, u := range map[string]string{"--prometheus-url": gc.Prometheus, "--jaeger-url": gc.Jaeger} {
			if u == "" {
				continue
			}
			if err := console.CheckURL(u); err != nil {
				return nil, fmt.Errorf("gateway: %s: %w", flag, err)
			}
		}
	}
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	sys = &System{URLs: map[string]string{}, log: log, stopBg: stopBg, failed: make(chan error, 2+len(cfg.Instances))}
	defer func() {
		if err != nil {
			_ = sys.Shutdown(context.WithoutCancel(ctx))
			sys = nil
		}
	}()
	sys.streams = cfg.Streams
	sys.keyring = cfg.Keyring
	if sys.streams == (events.StreamConfig{}) {
		sys.streams = events.DefaultStreamConfig()
	}
	// The registry and the API keys are held by as many servers as the
	// streams: losing one server of a cluster loses none of them.
	sys.registry = cfg.Registry
	sys.registry.Replicas = sys.streams.Replicas
	if cfg.NATS == "" {
		// The embedded server lets in Souk's identities only, each with
		// its own credentials and permissions, its own services too.
		sys.NATSCredentialsDir = filepath.Join(cfg.DataDir, "credentials")
		var users []broker.User
		sys.creds, users, err = NATSCredentials(sys.NATSCredentialsDir, sys.registry.Bucket)
		if err != nil {
			return sys, fmt.Errorf("nats credentials: %w", err)
		}
		sys.embedded, err = broker.StartEmbedded(broker.EmbeddedConfig{
			Dir:    filepath.Join(cfg.DataDir, "nats"),
			Listen: cfg.NATSListen,
			Users:  users,
		}, log)
		if err != nil {
			return sys, err
		}
		sys.NATSURL = sys.embedded.ClientURL()
		sys.connect = func(identity string) (*nats.Conn, error) {
			return sys.embedded.Connect(identity, sys.creds[identity])
		}
	} else {
		sys.connect = func(identity string) (*nats.Conn, error) {
			var creds broker.Credentials
			if cfg.NATSCredentials != nil {
				creds = cfg.NATSCredentials(identity)
			}
			return broker.ConnectWaiting(cfg.NATS, identity, creds, cfg.NATSWait, log)
		}
	}
	if sys.tracing, err = telemetry.NewTracing(ctx, cfg.Tracing); err != nil {
		return sys, err
	}
	for _, in := range cfg.Instances {
		svc, err := cfg.Services.Get(in.Service)
		if err != nil {
			return sys, err
		}
		if err := svc.Validate(); err != nil {
			return sys, fmt.Errorf("%s: %w", in.Service, err)
		}
	}
	// At most four argon2id hashes at once: 76 MiB at worst.
	sys.hasher = auth.NewHasher(4)
	for _, in := range cfg.Instances {
		svc, _ := cfg.Services.Get(in.Service)
		if err := sys.startService(ctx, bg, svc, in, cfg.Server); err != nil {
			return sys, fmt.Errorf("start %s: %w", in.Service, err)
		}
	}
	if cfg.Gateway != nil {
		if err := sys.startGateway(ctx, bg, *cfg.Gateway, cfg.Server); err != nil {
			return sys, fmt.Errorf("start gateway: %w", err)
		}
	}
	return sys, nil
}

// Credentials are the embedded NATS server's credentials of identity
// (one of Identities), for tools and tests that play it.
func (s *System) Credentials(identity string) broker.Credentials { return s.creds[identity] }

// attach connects u to NATS as identity; opens the registry over that
// connection, with a watcher of it; makes u's key, whose proofs say that a
// request comes from identity, and publishes it; and follows every
// process's keys, which check the proofs of requests to u.
func (s *System) attach(ctx, bg context.Context, u *unit, identity string) (*discovery.Registry, *discovery.Watcher, error) {
	var err error
	if u.nc, err = s.connect(identity); err != nil {
		return nil, nil, err
	}
	if u.js, err = jetstream.New(u.nc); err != nil {
		return nil, nil, err
	}
	// Each step is tried again while JetStream does not answer in time.
	var (
		reg       *discovery.Registry
		w         *discovery.Watcher
		keyBucket jetstream.KeyValue
	)
	err = s.retry(ctx, s.log, "open the registry", func(ctx context.Context) (err error) {
		reg, err = discovery.Open(ctx, u.nc, s.registry, s.log)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	err = s.retry(bg, s.log, "watch the registry", func(bg context.Context) (err error) {
		w, err = reg.Watch(bg)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	err = s.retry(ctx, s.log, "open the key bucket", func(ctx context.Context) (err error) {
		keyBucket, err = auth.OpenKeyBucket(ctx, u.js, s.streams.Replicas)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if u.prover, err = auth.NewProver(identity); err != nil {
		return nil, nil, err
	}
	if err := auth.PublishKey(bg, keyBucket, u.prover, s.log); err != nil {
		return nil, nil, err
	}
	err = s.retry(bg, s.log, "watch the keys", func(bg context.Context) (err error) {
		u.keys, err = auth.WatchKeys(bg, keyBucket, s.log)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return reg, w, nil
}

// Failed delivers the error of a server that stopped on its own.
func (s *System) Failed() <-chan error { return s.failed }

// unit is one running HTTP server and what it owns.
type unit struct {
	name   string
	nc     *nats.Conn // its own connection, as its own identity
	js     jetstream.JetStream
	prover *auth.Prover // signs the proofs of its requests to services
	keys   *auth.KeySet // checks the proofs of requests to it
	srv    *server.Server
	ops    *server.Server // the gateway's operations listener
	health *server.Health
	reg    *discovery.Registration
	db     *store.DB
	relay  *events.Relay

	stopWork context.CancelFunc // ends the relay and the consumers
	work     sync.WaitGroup
}

func (s *System) startService(ctx, bg context.Context, svc Service, in Instance, scfg server.Config) error {
	name := svc.Name()
	log := s.log.With("service", name)
	u := &unit{name: name}
	s.units = append(s.units, u)
	reg, watcher, err := s.attach(ctx, bg, u, name)
	if err != nil {
		return err
	}
	if u.db, err = store.Open(ctx, in.DB); err != nil {
		return err
	}
	db := u.db
	if err := migrate(ctx, db, svc, log); err != nil {
		return err
	}
	err = s.retry(ctx, log, "its stream", func(ctx context.Context) error {
		return events.EnsureStream(ctx, u.js, name, s.streams)
	})
	if err != nil {
		return err
	}
	err = s.retry(ctx, log, "the dead-letter stream", func(ctx context.Context) error {
		return events.EnsureDeadLetterStream(ctx, u.js, s.streams)
	})
	if err != nil {
		return err
	}
	outbox := events.NewOutbox(db)
	metrics := telemetry.NewRegistry(name)
	for kind, pool := range db.Pools() {
		metrics.MustRegister(collectors.NewDBStatsCollector(pool, strings.Trim(name+"_"+kind, "_")))
	}
	events.RegisterOutboxMetrics(metrics, outbox)
	consumerMetrics := events.NewConsumerMetrics(metrics, u.js)
	tp := s.tracing.Provider(name)
	deps := service.Deps{
		DB: db, Outbox: outbox, Hasher: s.hasher, Log: log,
		APIKeys: func(ctx context.Context) (jetstream.KeyValue, error) {
			return s.openBucket(ctx, log, "the API-key bucket", u.js, auth.OpenAPIKeys)
		},
		Revocations: func(ctx context.Context) (jetstream.KeyValue, error) {
			return s.openBucket(ctx, log, "the revocation list", u.js, auth.OpenRevocations)
		},
		Client: &http.Client{Transport: traced(u.prover.Proving(resilience.Upstream(watcher, resilience.DefaultConfig(), metrics)), tp), Timeout: 10 * time.Second},
	}
	if _, ok := svc.(service.Sealer); ok {
		if s.keyring == nil {
			return fmt.Errorf("%s keeps secrets sealed and needs a keyring (--keyring FILE)", name)
		}
		deps.Keyring = s.keyring
	}
	parts, err := svc.Build(deps)
	if err != nil {
		return err
	}
	if err := events.PurgeRetired(ctx, u.js, name, parts.Retired); err != nil {
		return err
	}
	if parts.Init != nil {
		notice, err := parts.Init(ctx)
		if err != nil {
			return err
		}
		if notice != "" {
			s.Notices = append(s.Notices, notice)
		}
	}

	work, stop := context.WithCancel(bg)
	u.stopWork = stop
	u.relay = events.NewRelay(outbox, u.js, name, events.RelayConfig{}, log)
	u.work.Go(func() { u.relay.Run(work) })
	for _, cc := range parts.Consumers {
		// The stream a consumer reads may belong to a service that has not
		// started yet: the consumer waits for it (only its producer may
		// make it).
		cc.Tracer = tp.Tracer("souk/events")
		cc.Metrics = consumerMetrics
		c, err := events.NewConsumer(db, u.js, cc, log)
		if err != nil {
			return err
		}
		u.work.Go(func() {
			if err := c.Run(work); err != nil {
				log.Error("consumer stopped", "consumer", cc.Name, "err", err)
			}
		})
	}
	for _, loop := range parts.Loops {
		u.work.Go(func() { loop(work) })
	}

	u.health = server.NewHealth(map[string]server.Check{
		"database": db.PingContext,
		"nats":     broker.Check(u.nc),
	})
	rt := s.router(name, log, u.health, metrics)
	rt.Trace(tp, true)
	// Every request but probes and scrapes must prove who sent it.
	verifier := auth.NewVerifier(name, u.keys)
	rt.Verify(func(r *http.Request) (context.Context, error) {
		c, err := verifier.Verify(r)
		return auth.WithCaller(r.Context(), c), err
	})
	parts.Routes(rt)
	// The console replays a dead letter through the service whose event
	// it is: the one process that may publish it.
	rt.Handle("POST /dead-letters/{seq}/replay", console.ReplayHandler(name, u.js))
	if err := s.serve(u, in.Addr, rt, log, scfg, nil); err != nil {
		return err
	}
	advertise, err := advertiseURL(in.Advertise, u.srv.Addr())
	if err != nil {
		return err
	}
	u.reg, err = reg.Register(bg, discovery.Instance{
		Service: name, ID: discovery.NewInstanceID(), URL: advertise, Started: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	log.Info("service ready", "addr", u.srv.Addr(), "advertise", advertise, "db", string(db.Dialect))
	return nil
}

func (s *System) startGateway(ctx, bg context.Context, gc GatewayConfig, scfg server.Config) error {
	log := s.log.With("service", gateway.Name)
	u := &unit{name: gateway.Name}
	s.units = append(s.units, u)
	reg, w, err := s.attach(ctx, bg, u, gateway.Name)
	if err != nil {
		return err
	}
	apiKeys, err := s.openBucket(ctx, log, "the API-key bucket", u.js, auth.OpenAPIKeys)
	if err != nil {
		return err
	}
	revocations, err := s.openBucket(ctx, log, "the revocation list", u.js, auth.OpenRevocations)
	if err != nil {
		return err
	}
	u.health = server.NewHealth(map[string]server.Check{
		"nats": broker.Check(u.nc),
		"registry": func(context.Context) error {
			select {
			case <-w.Done():
				return errors.New("registry watch stopped")
			default:
				return nil
			}
		},
	})
	metrics := telemetry.NewRegistry(gateway.Name)
	tp := s.tracing.Provider(gateway.Name)
	// The public port: the API and the probes; what operators read is on
	// the operations port.
	httpMetrics := telemetry.NewHTTPMetrics(metrics)
	rt := server.NewRouter(log, httpMetrics)
	u.health.Routes(rt)
	rt.Trace(tp, gc.TrustTraceparent)
	if gc.OpsAddr != "" {
		ops := server.NewRouter(log, httpMetrics)
		u.health.Routes(ops)
		s.operations(ops, metrics)
		if u.ops, err = server.Listen(gc.OpsAddr, ops, log, scfg); err != nil {
			return err
		}
		s.URLs[GatewayOpsName] = u.ops.URL()
		go func() {
			if err := u.ops.Serve(); err != nil {
				s.failed <- fmt.Errorf("%s server: %w", GatewayOpsName, err)
			}
		}()
	}

	// Requests leave for services as every service's calls do.
	upstream := resilience.Upstream(w, gc.Config.Upstream, metrics)

	jwksClient := &http.Client{Transport: u.prover.Proving(discovery.NewTransport(discovery.NewP2C(w))), Timeout: 5 * time.Second}
	authn, err := gateway.NewAuthenticator(bg, "http://users/.well-known/jwks.json", jwksClient, apiKeys, revocations, metrics, log)
	if err != nil {
		return err
	}
	limiter := gateway.NewRateLimiter(bg, func() int { return len(w.Instances(gateway.Name)) })
	gw := gateway.New(gc.Config, authn, limiter, upstream, u.prover, metrics, log)
	gw.Trace(tp)
	gw.Routes(rt)
	// The operators' console API, over what the gateway holds; it samples
	// the services' metrics until the gateway stops, which waits for it.
	con := console.New(console.Deps{
		Services: ServiceNames(), Instances: w, Breakers: upstream.Breakers(), Gateway: metrics.Gatherer(),
		Ring: s.tracing.Ring(), JS: u.js, Upstream: upstream, Prover: u.prover, Prometheus: gc.Prometheus, Jaeger: gc.Jaeger, Log: log,
	})
	gw.Host(console.Name, con)
	work, stop := context.WithCancel(bg)
	u.stopWork = stop
	u.work.Go(func() { con.Run(work) })
	// The storefront and the console, whose pages call the API above.
	site, err := web.New()
	if err != nil {
		return err
	}
	for _, p := range web.Patterns() {
		rt.HandleHTTP(p, site)
	}
	rt.NoTrace(func(path string) bool { return web.Untraced(path) || strings.HasPrefix(path, "/api/admin/") })
	if err := s.serve(u, gc.Addr, rt, log, scfg, gc.TLS); err != nil {
		return err
	}
	// Gateways list themselves too: rate limits are split by their number.
	advertise, err := advertiseURL("", u.srv.Addr())
	if err != nil {
		return err
	}
	if gc.TLS != nil {
		advertise = "https" + strings.TrimPrefix(advertise, "http")
	}
	u.reg, err = reg.Register(bg, discovery.Instance{
		Service: gateway.Name, ID: discovery.NewInstanceID(), URL: advertise, Started: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	log.Info("gateway ready", "addr", u.srv.Addr())
	return nil
}

// router returns a router with the endpoints every server has, serving
// metrics.
func (s *System) router(name string, log *slog.Logger, health *server.Health, metrics *telemetry.Registry) *server.Router {
	rt := server.NewRouter(log, telemetry.NewHTTPMetrics(metrics))
	health.Routes(rt)
	s.operations(rt, metrics)
	return rt
}

// operations serves what operators read: metrics (open to scrapes) and the
// recent traces.
func (s *System) operations(rt *server.Router, metrics *telemetry.Registry) {
	rt.HandleHTTP("GET /metrics", metrics.Handler())
	if ring := s.tracing.Ring(); ring != nil {
		rt.HandleHTTP("GET /debug/traces", ring.Handler())
		rt.HandleHTTP("GET /debug/traces/{id}", ring.Handler())
	}
}

// traced records a client span per call through next and passes the trace
// on in the traceparent header.
func traced(next http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return &telemetry.Transport{Next: next, Tracer: tp.Tracer("souk/client")}
}

// serve serves rt on addr, over HTTPS if tc is not nil.
func (s *System) serve(u *unit, addr string, rt *server.Router, log *slog.Logger, scfg server.Config, tc *server.TLS) error {
	var srv *server.Server
	var err error
	if tc != nil {
		srv, err = server.ListenTLS(addr, rt, log, scfg, *tc)
	} else {
		srv, err = server.Listen(addr, rt, log, scfg)
	}
	if err != nil {
		return err
	}
	u.srv = srv
	s.URLs[u.name] = srv.URL()
	go func() {
		if err := srv.Serve(); err != nil {
			s.failed <- fmt.Errorf("%s server: %w", u.name, err)
		}
	}()
	return nil
}

// Shutdown stops everything in the reverse order of start: each server
// first leaves the registry and fails /readyz, then finishes its in-flight
// requests; then its consumers stop, its relay publishes what is left, its
// database closes; the broker goes last.
func (s *System) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(s.units) - 1; i >= 0; i-- {
		u := s.units[i]
		if u.health != nil {
			u.health.Drain()
		}
		if u.reg != nil {
			errs = append(errs, u.reg.Deregister(ctx))
		}
		if u.ops != nil {
			errs = append(errs, u.ops.Shutdown(ctx))
		}
		if u.srv != nil {
			errs = append(errs, u.srv.Shutdown(ctx))
		}
		if u.stopWork != nil {
			u.stopWork()
			u.work.Wait()
		}
		if u.relay != nil {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			switch _, err := u.relay.Flush(fctx); {
			case errors.Is(err, events.ErrTurnTaken):
				s.log.Info("another replica relays the events left in the outbox", "service", u.name)
			case err != nil:
				s.log.Warn("events left in the outbox for the next start", "service", u.name, "err", err)
			}
			cancel()
		}
		if u.db != nil {
			errs = append(errs, u.db.Close())
		}
	}
	s.stopBg()
	if s.tracing != nil {
		_ = s.tracing.Shutdown(context.WithoutCancel(ctx))
	}
	for _, u := range s.units {
		if u.nc != nil {
			u.nc.Close()
		}
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
	}
	return errors.Join(errs...)
}

// advertiseURL is the base URL other processes use to reach a server
// listening on addr: explicit if given; else addr, with an unspecified host
// (0.0.0.0, ::) replaced by this machine's first non-loopback address.
func advertiseURL(explicit, addr string) (string, error) {
	if explicit != "" {
		u, err := url.Parse(explicit)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return "", fmt.Errorf("advertise %q: want a URL like http://10.0.0.7:5001", explicit)
		}
		return explicit, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host, err = outboundHost()
		if err != nil {
			return "", err
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func outboundHost() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	if h, err := os.Hostname(); err == nil {
		return h, nil
	}
	return "", errors.New("no address to advertise: pass --advertise")
}

// Migrate applies the named service's migrations to the database at dbURL.
func Migrate(ctx context.Context, name, dbURL string, log *slog.Logger) error {
	svc, err := (&Services{}).Get(name)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	return migrate(ctx, db, svc, log.With("service", name))
}

// migrate makes a service's database current: the outbox and inbox first,
// which the service's own migrations may change data in, then those.
func migrate(ctx context.Context, db *store.DB, svc Service, log *slog.Logger) error {
	if err := events.Migrate(ctx, db, svc.Name(), log); err != nil {
		return err
	}
	return db.Migrate(ctx, svc.Name(), svc.Migrations(), log)
}
