package broker

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestConnectWaiting starts connecting before any server listens, as a pod
// does before the NATS pods are up: ConnectWaiting keeps trying and
// connects once one answers; Connect does not wait.
func TestConnectWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	url := "nats://" + addr
	log := slog.New(slog.DiscardHandler)

	if _, err := Connect(url, "test", Credentials{}, log); err == nil {
		t.Fatal("Connect with no server answering succeeded")
	}
	if _, err := ConnectWaiting(url, "test", Credentials{}, 1500*time.Millisecond, log); err == nil {
		t.Fatal("ConnectWaiting with no server answering in its wait succeeded")
	}

	started := make(chan *Embedded, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		srv, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir(), Listen: addr}, log)
		if err != nil {
			t.Error(err)
		}
		started <- srv
	}()
	nc, err := ConnectWaiting(url, "test", Credentials{}, 30*time.Second, log)
	if srv := <-started; srv != nil {
		defer srv.Shutdown()
	}
	if err != nil {
		t.Fatalf("ConnectWaiting with a server up 1.5 s later: %v", err)
	}
	defer nc.Close()
	if nc.Status() != nats.CONNECTED {
		t.Errorf("connection is %s", nc.Status())
	}
}
