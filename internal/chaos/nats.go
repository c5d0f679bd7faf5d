package chaos

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsCluster is a cluster of NATS servers with JetStream, each running
// inside this process on its own loopback ports and directory, so that
// one can be lost and brought back.
type natsCluster struct {
	dir    string
	client []int // client ports
	route  []int // cluster ports

	mu   sync.Mutex
	srvs []*server.Server // nil while a node is down
}

// startNATS starts n clustered servers and waits until JetStream has a
// leader.
func startNATS(ctx context.Context, dir string, n int) (*natsCluster, error) {
	c := &natsCluster{dir: dir, srvs: make([]*server.Server, n)}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c.client, c.route = ports[:n], ports[n:]
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.shutdown()
			return nil, err
		}
	}
	if err := c.waitJetStream(ctx, time.Minute); err != nil {
		c.shutdown()
		return nil, err
	}
	return c, nil
}

// URLs are the client URLs of every node, comma-separated, as souk serve
// --nats takes them.
func (c *natsCluster) URLs() string {
	var urls []string
	for _, p := range c.client {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) start(i int) error {
	opts := &server.Options{
		ServerName: fmt.Sprintf("chaos-nats-%d", i),
		Host:       "127.0.0.1",
		Port:       c.client[i],
		JetStream:  true,
		StoreDir:   filepath.Join(c.dir, fmt.Sprintf("nats-%d", i)),
		// A shop's events need little memory; JetStream would reserve
		// a share of the machine's.
		JetStreamMaxMemory: 256 << 20,
		NoLog:              true,
		NoSigs:             true,
		Cluster:            server.ClusterOpts{Name: "souk-chaos", Host: "127.0.0.1", Port: c.route[i]},
	}
	for j, p := range c.route {
		if j != i {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats node %d: %w", i, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("nats node %d did not start in 20s", i)
	}
	c.mu.Lock()
	c.srvs[i] = srv
	c.mu.Unlock()
	return nil
}

// waitJetStream waits until a client can use JetStream: the nodes have
// elected a meta leader.
func (c *natsCluster) waitJetStream(ctx context.Context, d time.Duration) error {
	nc, err := nats.Connect(c.URLs(), nats.Name("souk-chaos"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	end := time.Now().Add(d)
	for {
		_, err := js.AccountInfo()
		if err == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("the NATS cluster has no JetStream leader after %s: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kill stops node i at once (its clients see their connections drop).
func (c *natsCluster) kill(i int) {
	c.mu.Lock()
	srv := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// up reports whether node i runs.
func (c *natsCluster) up(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srvs[i] != nil
}

func (c *natsCluster) shutdown() {
	for i := range c.srvs {
		c.kill(i)
	}
}
