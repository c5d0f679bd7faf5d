package system

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/events"
)

// TestNATSPermissions tries, with one identity's credentials, what only
// another may do, on the embedded server as souk up runs it and on
// Debian's nats-server with deploy/nats/nats.conf: the server refuses
// each, and allows each identity its own.
func TestNATSPermissions(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		creds, users, err := NATSCredentials(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		e, err := broker.StartEmbedded(broker.EmbeddedConfig{Dir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0", Users: users}, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		tryPermissions(t, e.ClientURL(), creds)
	})
	t.Run("nats-server with deploy/nats/nats.conf", func(t *testing.T) {
		bin, err := exec.LookPath("nats-server")
		if err != nil {
			t.Skip("nats-server is not installed (apt-get install nats-server)")
		}
		dir := t.TempDir()
		creds, users, err := NATSCredentials(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		conf, err := os.ReadFile("../../deploy/nats/nats.conf")
		if err != nil {
			t.Fatal(err)
		}
		// The shipped file as it is, but for where JetStream keeps its files.
		local := strings.Replace(string(conf), "store_dir: /var/lib/nats", "store_dir: "+strconv.Quote(filepath.Join(dir, "js")), 1)
		if local == string(conf) {
			t.Fatal("deploy/nats/nats.conf no longer says store_dir: /var/lib/nats; change this test with it")
		}
		os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(local), 0o644)
		os.WriteFile(filepath.Join(dir, "users.conf"), []byte(broker.UsersConfig(users)), 0o644)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(bin, "-c", filepath.Join(dir, "nats.conf"), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
		cmd.Stderr = t.Output()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		url := fmt.Sprintf("nats://127.0.0.1:%d", port)
		if !testenv.Eventually(10*time.Second, func() bool {
			nc, err := broker.Connect(url, "probe", creds[AdminIdentity], testenv.Logger(t))
			if err == nil {
				nc.Close()
			}
			return err == nil
		}) {
			t.Fatal("nats-server did not take the admin's connection in 10s")
		}
		tryPermissions(t, url, creds)

		// And the saga runs, every service as its own identity.
		s := &shop{t: t, dir: t.TempDir()}
		s.sys = startSystem(t, s.dir, io.Discard, nil, func(c *Config) {
			c.NATS, c.NATSListen = url, ""
			c.NATSCredentials = func(identity string) broker.Credentials { return creds[identity] }
		})
		t.Cleanup(func() { s.sys.Shutdown(context.Background()) })
		s.gw = s.sys.URLs[GatewayName]
		s.admin = bearer(login(t, s.gw, adminEmail, adminPassword))
		lamp := s.product(1000, 5)
		ada := s.customer("ada")
		if o := s.settled(ada, s.order(ada, "first", lamp, 2, "4242424242424242").json(t)["id"].(string), 15*time.Second); o["status"] != "confirmed" {
			t.Fatalf("an order on nats-server with Souk's identities: %v", o)
		}
	})
}

func tryPermissions(t *testing.T, url string, creds map[string]broker.Credentials) {
	ctx := context.Background()
	as := func(identity string) (*nats.Conn, jetstream.JetStream) {
		t.Helper()
		nc, err := broker.Connect(url, identity, creds[identity], testenv.Logger(t))
		if err != nil {
			t.Fatalf("connect as %s: %v", identity, err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return nc, js
	}
	if _, err := broker.Connect(url, "stranger", broker.Credentials{}, testenv.Logger(t)); err == nil {
		t.Fatal("a connection without credentials was let in")
	}
	// What the services would have made: their streams and buckets.
	_, admin := as(AdminIdentity)
	for _, svc := range ServiceNames() {
		if err := events.EnsureStream(ctx, admin, svc, events.DefaultStreamConfig()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := auth.OpenAPIKeys(ctx, admin, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.OpenRevocations(ctx, admin, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: discovery.DefaultBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}

	publish := func(identity, subject string) error {
		_, js := as(identity)
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := js.Publish(ctx, subject, []byte(`{"order_id":"o1"}`))
		return err
	}
	kvPut := func(identity, bucket, key string) error {
		_, js := as(identity)
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, key, []byte(`{"service":"users","id":"x","url":"http://evil"}`))
		return err
	}
	for _, c := range []struct {
		name    string
		try     func() error
		allowed bool
	}{
		// Forged saga events: each service publishes only its own.
		{"catalog forges OrderPlaced", func() error { return publish("catalog", "souk.orders.v1.OrderPlaced") }, false},
		{"payments forges PaymentCancelRequested", func() error { return publish("payments", "souk.orders.v1.PaymentCancelRequested") }, false},
		{"inventory forges StockReleaseRequested", func() error { return publish("inventory", "souk.orders.v1.StockReleaseRequested") }, false},
		{"orders forges PaymentAuthorized", func() error { return publish("orders", "souk.payments.v1.PaymentAuthorized") }, false},
		{"catalog forges PaymentDeclined", func() error { return publish("catalog", "souk.payments.v1.PaymentDeclined") }, false},
		{"the gateway forges PaymentRequested", func() error { return publish("gateway", "souk.orders.v2.PaymentRequested") }, false},
		{"orders publishes OrderPlaced", func() error { return publish("orders", "souk.orders.v1.OrderPlaced") }, true},
		// Registry poisoning: an identity registers only as itself.
		{"catalog registers as users", func() error { return kvPut("catalog", discovery.DefaultBucket, "users.evil") }, false},
		{"the gateway registers as catalog", func() error { return kvPut("gateway", discovery.DefaultBucket, "catalog.evil") }, false},
		{"catalog registers as catalog", func() error { return kvPut("catalog", discovery.DefaultBucket, "catalog.x") }, true},
		// Forged API keys: users alone writes them.
		{"orders writes an API key", func() error { return kvPut("orders", auth.APIKeyBucket, "deadbeef") }, false},
		{"the gateway writes an API key", func() error { return kvPut("gateway", auth.APIKeyBucket, "deadbeef") }, false},
		{"users writes an API key", func() error { return kvPut("users", auth.APIKeyBucket, "deadbeef") }, true},
		// Revoking sessions (anyone's, to sign them out) or lifting a
		// revocation: users alone writes the list.
		{"catalog revokes a session", func() error { return kvPut("catalog", auth.RevocationBucket, "session.x") }, false},
		{"the gateway lifts a revocation", func() error { return kvPut("gateway", auth.RevocationBucket, "user.x") }, false},
		{"users revokes a session", func() error { return kvPut("users", auth.RevocationBucket, "session.x") }, true},
		// Another service's consumer: taking it would swallow its events.
		{"catalog takes inventory's consumer", func() error {
			_, js := as("catalog")
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := js.CreateOrUpdateConsumer(ctx, events.StreamName("orders"), jetstream.ConsumerConfig{Durable: "inventory-OrderPlaced", FilterSubject: "souk.orders.v1.OrderPlaced"})
			return err
		}, false},
		{"inventory takes its own consumer", func() error {
			_, js := as("inventory")
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := js.CreateOrUpdateConsumer(ctx, events.StreamName("orders"), jetstream.ConsumerConfig{Durable: "inventory-OrderPlaced", FilterSubject: "souk.orders.v1.OrderPlaced"})
			return err
		}, true},
		// Reading the wire, card numbers and all.
		{"catalog subscribes to every event", func() error {
			nc, _ := as("catalog")
			sub, err := nc.SubscribeSync("souk.>")
			if err != nil {
				return err
			}
			if err := publish("orders", "souk.orders.v1.OrderPlaced"); err != nil {
				return err
			}
			if _, err := sub.NextMsg(300 * time.Millisecond); errors.Is(err, nats.ErrTimeout) {
				return errors.New("nothing arrived")
			}
			return nil
		}, false},
	} {
		err := c.try()
		if c.allowed != (err == nil) {
			t.Errorf("%s: %v; want allowed %v", c.name, err, c.allowed)
		}
		if err != nil && !c.allowed && !strings.Contains(strings.ToLower(err.Error()), "permission") &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && err.Error() != "nothing arrived" {
			t.Logf("%s was refused with %v", c.name, err)
		}
	}
}
