// Package broker connects to NATS, or starts an embedded NATS server with
// JetStream for the one-process mode. Either way callers get a *nats.Conn:
// the rest of Souk cannot tell the two apart.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an embedded NATS server.
type EmbeddedConfig struct {
	// Dir holds JetStream's files; they survive restarts.
	Dir string
	// Listen is the host:port other processes can connect to. Empty means
	// in-process connections only.
	Listen string
	// Cluster, if set, makes the server one node of a NATS cluster.
	Cluster *ClusterConfig
	// Users, if any, are the only clients the server lets in, in-process
	// ones included, each with what it may publish and subscribe to.
	Users []User
}

// User is an identity a NATS server lets in: the public key of its nkey,
// and the subjects it may publish and subscribe to (NATS wildcards; all
// else is refused).
type User struct {
	Name       string // for people: the identity's name
	NkeyPublic string
	Publish    []string
	Subscribe  []string
}

// ClusterConfig joins an embedded server to a cluster.
type ClusterConfig struct {
	Name       string   // the cluster's name, the same on every node
	ServerName string   // this node's name, unique in the cluster
	Listen     string   // host:port where it accepts the other nodes' routes
	Routes     []string // the other nodes' route URLs, nats-route://host:port
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv *server.Server
	log *slog.Logger
}

// StartEmbedded starts a NATS server with JetStream and file storage and
// waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "souk-embedded",
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		DontListen: cfg.Listen == "",
		// JetStream reserves memory and disk relative to the machine;
		// a shop's events need little of either.
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := hostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if c := cfg.Cluster; c != nil {
		host, port, err := hostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats cluster listen address: %w", err)
		}
		opts.ServerName = c.ServerName
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("nats route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	for _, u := range cfg.Users {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.NkeyPublic, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: u.Publish},
			Subscribe: &server.SubjectPermission{Allow: u.Subscribe},
		}})
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(natsLogger{log.With("component", "nats-server")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		if cfg.Listen != "" {
			return nil, fmt.Errorf("embedded nats did not start; is %s already in use?", cfg.Listen)
		}
		return nil, errors.New("embedded nats did not start in 10s")
	}
	return &Embedded{srv: srv, log: log}, nil
}

// UsersConfig renders users as a nats-server configuration block
// (authorization { users = [...] }), for a server of your own: include it
// from its configuration file. Subjects are quoted: a bare $JS would be a
// variable there.
func UsersConfig(users []User) string {
	var b strings.Builder
	b.WriteString("# Souk's identities on NATS and what each may do. Made by souk nats setup;\n")
	b.WriteString("# each identity's nkey seed, the secret, is beside this file, never in it.\n")
	b.WriteString("authorization {\n  users = [\n")
	list := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	for _, u := range users {
		fmt.Fprintf(&b, "    # %s\n    {nkey: %q, permissions: {\n      publish: {allow: %s}\n      subscribe: {allow: %s}\n    }}\n",
			u.Name, u.NkeyPublic, list(u.Publish), list(u.Subscribe))
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// hostPort splits host:port; port 0 asks the server for a random one.
func hostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q", addr, port)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	return host, p, nil
}

// ClusterURL is the nats-route:// URL other nodes reach this one at, or ""
// if it is not clustered.
func (e *Embedded) ClusterURL() string {
	if a := e.srv.ClusterAddr(); a != nil {
		return "nats-route://" + a.String()
	}
	return ""
}

// ClientURL is the nats:// URL other processes connect to, or "" when the
// server only accepts in-process connections.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Connect returns a connection that talks to the server in memory, without
// a socket, authenticated by creds.
func (e *Embedded) Connect(name string, creds Credentials) (*nats.Conn, error) {
	opts, err := creds.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect("", append(append(connOptions(name, e.log), opts...), nats.InProcessServer(e.srv))...)
	if err != nil {
		return nil, fmt.Errorf("connect to the embedded nats as %s: %w", name, err)
	}
	return nc, nil
}

// Credentials say who a connection is: an nkey seed file (what souk up and
// `souk nats setup` make), a .creds file (NATS's decentralized JWTs), or a
// user and password. The zero value connects without.
type Credentials struct {
	NkeySeedFile string
	CredsFile    string
	User         string
	Password     string
}

func (c Credentials) options() ([]nats.Option, error) {
	switch {
	case c.NkeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", c.NkeySeedFile, err)
		}
		return []nats.Option{opt}, nil
	case c.CredsFile != "":
		return []nats.Option{nats.UserCredentials(c.CredsFile)}, nil
	case c.User != "":
		return []nats.Option{nats.UserInfo(c.User, c.Password)}, nil
	}
	return nil, nil
}

// Shutdown stops the server after its clients are gone; JetStream flushes
// its files.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect dials the NATS server(s) at url (comma-separated for a cluster),
// authenticated by creds.
// Once connected, the connection reconnects forever; the first connection
// must succeed within the timeout, so that a wrong URL fails at start.
func Connect(url, name string, creds Credentials, log *slog.Logger) (*nats.Conn, error) {
	return ConnectWaiting(url, name, creds, 0, log)
}

// ConnectWaiting is Connect for a process that often starts before its
// NATS (a pod before the NATS pods, a container before the server is up):
// while no server answers at all, it tries again every second, for up to
// wait, rather than exiting to be restarted with a growing back-off.
func ConnectWaiting(url, name string, creds Credentials, wait time.Duration, log *slog.Logger) (*nats.Conn, error) {
	opts, err := creds.options()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		nc, err := nats.Connect(url, append(connOptions(name, log), opts...)...)
		if err == nil {
			return nc, nil
		}
		if !errors.Is(err, nats.ErrNoServers) || !time.Now().Before(deadline) {
			return nil, fmt.Errorf("connect to nats at %s: %w", url, err)
		}
		log.Warn("no NATS server answers yet; waiting", "url", url, "for", time.Until(deadline).Round(time.Second))
		time.Sleep(time.Second)
	}
}

func connOptions(name string, log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats error", "subject", subject, "err", err)
		}),
	}
}

// Check reports whether nc is connected, for /readyz.
func Check(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats connection is %s", s)
		}
		return nil
	}
}

// natsLogger sends the embedded server's log to slog: notices at debug (it
// is chatty at start), warnings and errors as such.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
