// Command events measures the event backbone end to end: events written to
// a service's outbox, relayed to JetStream and applied by a consumer in
// another service's database. It reports the throughput at full speed, then
// the latency from the producing transaction to the consumer's effect at
// half that rate.
//
//	go run ./bench/events                                  # SQLite + embedded NATS
//	go run ./bench/events -producer-db postgres://… -consumer-db postgres://… -nats nats://127.0.0.1:4222
//
// Every run uses fresh files, schemas and streams, and traffic stays on this
// machine.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/store"
)

func main() {
	var (
		producerDB = flag.String("producer-db", "", "producer database URL (default: a SQLite file in a temp dir)")
		consumerDB = flag.String("consumer-db", "", "consumer database URL (default: a SQLite file in a temp dir)")
		natsURL    = flag.String("nats", "", "NATS URL (default: an embedded server)")
		n          = flag.Int("n", 50_000, "events in the throughput run")
		writers    = flag.Int("writers", 8, "concurrent producing transactions")
		perTx      = flag.Int("per-tx", 1, "events per producing transaction")
		latencyFor = flag.Duration("latency-for", 10*time.Second, "length of the half-rate latency run")
	)
	flag.Parse()
	if err := run(*producerDB, *consumerDB, *natsURL, *n, *writers, *perTx, *latencyFor); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(producerURL, consumerURL, natsURL string, n, writers, perTx int, latencyFor time.Duration) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tmp, err := os.MkdirTemp("", "souk-bench-events")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	suffix := fmt.Sprint(time.Now().UnixNano())
	service := "bench" + suffix

	var nc *nats.Conn
	if natsURL == "" {
		e, err := broker.StartEmbedded(broker.EmbeddedConfig{Dir: filepath.Join(tmp, "nats")}, log)
		if err != nil {
			return err
		}
		defer e.Shutdown()
		nc, err = e.Connect("bench", broker.Credentials{})
		if err != nil {
			return err
		}
	} else if nc, err = broker.Connect(natsURL, "bench", broker.Credentials{}, log); err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := events.EnsureStream(ctx, js, service, events.DefaultStreamConfig()); err != nil {
		return err
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), events.StreamName(service))
	if err := events.EnsureDeadLetterStream(ctx, js, events.DefaultStreamConfig()); err != nil {
		return err
	}

	pdb, err := openDB(ctx, producerURL, filepath.Join(tmp, "producer.db"), "p"+suffix, log)
	if err != nil {
		return err
	}
	defer pdb.Close()
	cdb, err := openDB(ctx, consumerURL, filepath.Join(tmp, "consumer.db"), "c"+suffix, log)
	if err != nil {
		return err
	}
	defer cdb.Close()
	if _, err := cdb.ExecContext(ctx, `CREATE TABLE effects (event_id TEXT NOT NULL, latency_us BIGINT NOT NULL)`); err != nil {
		return err
	}

	typ := "souk." + service + ".v1.Tick"
	var applied atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	recording := atomic.Bool{}
	type tick struct{ T int64 }
	handler := func(ctx context.Context, tx *sql.Tx, e events.Event, d tick) error {
		lat := time.Since(time.Unix(0, d.T))
		if _, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, latency_us) VALUES ($1, $2)`, e.ID, lat.Microseconds()); err != nil {
			return err
		}
		applied.Add(1)
		if recording.Load() {
			mu.Lock()
			latencies = append(latencies, lat)
			mu.Unlock()
		}
		return nil
	}

	outbox := events.NewOutbox(pdb)
	c, err := events.NewConsumer(cdb, js, events.ConsumerConfig{
		Name:     "bench-" + suffix,
		Handlers: map[string]events.Handler{typ: events.On(handler)},
		Batch:    256, // its effects lock no shared row: batches are safe on PostgreSQL too
	}, log)
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { events.NewRelay(outbox, js, service, events.RelayConfig{}, log).Run(wctx) })
	wg.Go(func() { c.Run(wctx) })
	defer func() { stop(); wg.Wait() }()

	write := func() error {
		return outbox.Do(ctx, func(tx *sql.Tx) error {
			for range perTx {
				if err := outbox.Emit(ctx, tx, typ, "agg", map[string]int64{"t": time.Now().UnixNano()}); err != nil {
					return err
				}
			}
			return nil
		})
	}

	fmt.Printf("producer %s, consumer %s, nats %s; %d writers, %d event(s) per transaction\n",
		pdb.Dialect, cdb.Dialect, map[bool]string{true: "embedded", false: natsURL}[natsURL == ""], writers, perTx)

	// Throughput: as fast as the writers go, until every effect is applied.
	start := time.Now()
	var next atomic.Int64
	var werr error
	var once sync.Once
	var ww sync.WaitGroup
	for range writers {
		ww.Go(func() {
			for next.Add(int64(perTx)) <= int64(n) {
				if err := write(); err != nil {
					once.Do(func() { werr = err })
					return
				}
			}
		})
	}
	ww.Wait()
	if werr != nil {
		return werr
	}
	written := time.Since(start)
	if err := waitFor(&applied, int64(n), time.Minute); err != nil {
		return err
	}
	took := time.Since(start)
	rate := float64(n) / took.Seconds()
	fmt.Printf("throughput: %d events in %s: %.0f events/s end to end (writes alone: %.0f events/s)\n",
		n, took.Round(time.Millisecond), rate, float64(n)/written.Seconds())

	// Latency at half that rate, open loop: a write is due every interval
	// whether or not the last one finished.
	half := rate / 2
	interval := time.Duration(float64(time.Second) * float64(perTx) / half)
	applied.Store(0)
	recording.Store(true)
	sent := int64(0)
	begin := time.Now()
	total := int64(latencyFor / interval)
	sem := make(chan struct{}, writers)
	for i := range total {
		// The ith write is due at begin + i·interval; sleep only when ahead,
		// so a slow write delays, but never thins, the schedule.
		if wait := time.Until(begin.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		sent += int64(perTx)
		go func() {
			defer func() { <-sem }()
			if err := write(); err != nil {
				once.Do(func() { werr = err })
			}
		}()
	}
	for range writers {
		sem <- struct{}{}
	}
	if werr != nil {
		return werr
	}
	if err := waitFor(&applied, sent, time.Minute); err != nil {
		return err
	}
	mu.Lock()
	slices.Sort(latencies)
	q := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	fmt.Printf("latency at %.0f events/s (%d events in %s), write to effect: p50 %s, p99 %s, max %s\n",
		half, len(latencies), time.Since(begin).Round(time.Millisecond), q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), latencies[len(latencies)-1].Round(10*time.Microsecond))
	mu.Unlock()
	return nil
}

func waitFor(counter *atomic.Int64, want int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for counter.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d effects after %s", counter.Load(), want, within)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// openDB opens url, or a SQLite file at path when url is empty; on
// PostgreSQL it works in a schema of its own.
func openDB(ctx context.Context, rawURL, path, schema string, log *slog.Logger) (*store.DB, error) {
	if rawURL == "" {
		rawURL = "sqlite:" + path
	} else {
		db, err := store.Open(ctx, rawURL)
		if err != nil {
			return nil, err
		}
		_, err = db.ExecContext(ctx, "CREATE SCHEMA "+schema)
		db.Close()
		if err != nil {
			return nil, err
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	db, err := store.Open(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	return db, events.Migrate(ctx, db, "bench", log)
}
