// Package testenv gives tests real dependencies: a SQLite file in a temp
// dir, a fresh PostgreSQL schema when SOUK_TEST_POSTGRES_URL is set, an
// embedded NATS server, and the external NATS at SOUK_TEST_NATS_URL when it
// is set. External ones are skipped with a message when their variable is
// not set, so `go test ./...` passes on a machine with only Go.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for the schema setup
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/store"
)

// The environment variables that point tests at external engines.
const (
	PostgresEnv = "SOUK_TEST_POSTGRES_URL"
	NATSEnv     = "SOUK_TEST_NATS_URL"
)

// Logger logs to the test's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Name returns prefix and a random suffix, for names that must not clash
// between tests sharing an external engine.
func Name(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Database is a way to get a fresh, empty database URL.
type Database struct {
	Name string
	URL  func(t testing.TB) string
}

// Databases are SQLite, always, and PostgreSQL when SOUK_TEST_POSTGRES_URL
// is set: run a store's contract test against each.
func Databases() []Database {
	return []Database{
		{Name: "sqlite", URL: SQLiteURL},
		{Name: "postgres", URL: PostgresURL},
	}
}

// SQLiteURL is a new SQLite file in the test's temp dir.
func SQLiteURL(t testing.TB) string {
	return "sqlite:" + t.TempDir() + "/test.db"
}

// PostgresURL creates a schema of its own in the database at
// SOUK_TEST_POSTGRES_URL, drops it when the test ends, and returns a URL
// whose connections use it. The test is skipped if the variable is unset.
func PostgresURL(t testing.TB) string {
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skipf("PostgreSQL not tested: set %s (e.g. postgres://postgres@127.0.0.1:5432/test)", PostgresEnv)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	schema := Name("t_")
	if _, err := db.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema in %s: %v", base, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Broker is a way to get a NATS connection.
type Broker struct {
	Name    string
	Connect func(t testing.TB) *nats.Conn
}

// Brokers are an embedded NATS server, always, and the external one at
// SOUK_TEST_NATS_URL when it is set.
func Brokers() []Broker {
	return []Broker{
		{Name: "embedded", Connect: EmbeddedNATS},
		{Name: "external", Connect: ExternalNATS},
	}
}

// NATSServer starts a NATS server with JetStream in the test's temp dir,
// listening on a random loopback port until the test ends, and returns its
// client URL.
func NATSServer(t testing.TB) string {
	e, err := broker.StartEmbedded(broker.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"}, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e.ClientURL()
}

// NATSCluster starts a cluster of n NATS servers with JetStream, each with
// its files in the test's temp dir and its client port on loopback, and
// returns them and the client URL that names them all. It returns once
// JetStream has a meta leader.
func NATSCluster(t testing.TB, n int) ([]*broker.Embedded, string) {
	t.Helper()
	// Clustered JetStream needs each node to know its routes from the
	// start: the route ports are chosen first.
	routes := make([]string, n)
	for i := range routes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes[i] = l.Addr().String()
		l.Close()
	}
	nodes := make([]*broker.Embedded, n)
	urls := make([]string, n)
	name := Name("cluster_")
	var wg sync.WaitGroup
	for i := range n {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats-route://"+r)
			}
		}
		wg.Go(func() { // together: a node waits for its routes to form
			e, err := broker.StartEmbedded(broker.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", Cluster: &broker.ClusterConfig{
				Name: name, ServerName: fmt.Sprintf("n%d", i+1), Listen: routes[i], Routes: others,
			}}, Logger(t))
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(e.Shutdown)
			nodes[i], urls[i] = e, e.ClientURL()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	clientURL := strings.Join(urls, ",")
	nc, err := broker.Connect(clientURL, "cluster-check", broker.Credentials{}, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Ready when a stream can be placed on every node.
	js, _ := jetstream.New(nc)
	probe := Name("probe_")
	if !Eventually(20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: probe, Subjects: []string{probe}, Replicas: n, Storage: jetstream.MemoryStorage})
		return err == nil && js.DeleteStream(ctx, probe) == nil
	}) {
		t.Fatalf("the NATS cluster's JetStream could not place a stream on its %d nodes in 20s", n)
	}
	return nodes, clientURL
}

// EmbeddedNATS starts a NATSServer and returns a connection to it.
func EmbeddedNATS(t testing.TB) *nats.Conn {
	nc, err := broker.Connect(NATSServer(t), t.Name(), broker.Credentials{}, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ExternalNATS connects to SOUK_TEST_NATS_URL, or skips the test.
func ExternalNATS(t testing.TB) *nats.Conn {
	u := os.Getenv(NATSEnv)
	if u == "" {
		t.Skipf("external NATS not tested: set %s (e.g. nats://127.0.0.1:4222)", NATSEnv)
	}
	nc, err := broker.Connect(u, t.Name(), broker.Credentials{}, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ForEachDatabase runs fn as a subtest on a fresh database of each engine,
// with the service's migrations applied.
func ForEachDatabase(t *testing.T, service string, migrations fs.FS, fn func(t *testing.T, db *store.DB)) {
	for _, engine := range Databases() {
		t.Run(engine.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := store.Open(ctx, engine.URL(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.Migrate(ctx, service, migrations, Logger(t)); err != nil {
				t.Fatal(err)
			}
			fn(t, db)
		})
	}
}

// OutboxTypes lists the types of the events in db's outbox, oldest first.
func OutboxTypes(t testing.TB, db *store.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT type FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var types []string
	for rows.Next() {
		var typ string
		if err := rows.Scan(&typ); err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
	}
	return types
}

// Eventually polls cond every 10 ms for up to d and reports whether it
// came true.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
