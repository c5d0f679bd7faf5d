package system

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// How long a process keeps trying a step of its start that JetStream did
// not answer in time, and how long it waits between tries.
const (
	startBudget = 30 * time.Second
	startPause  = 500 * time.Millisecond
)

// retryStart runs step until it succeeds, fails for another reason than
// NATS's slowness, or budget is spent. While its cluster elects a leader
// (a server was just lost) or the machine is busy, a JetStream request at
// start may time out, and the next one usually gets through: exiting would
// cost a restart by a supervisor instead, whose back-off grows.
//
// step gets a context of its own, a child of ctx: what a failed try left
// running (a watcher) is stopped with it; what a successful one started
// lives as long as ctx.
func retryStart(ctx context.Context, log *slog.Logger, what string, budget, pause time.Duration, step func(context.Context) error) error {
	give := time.Now().Add(budget)
	for try := 1; ; try++ {
		err := runTry(ctx, step)
		if err == nil {
			return nil
		}
		if !slowNATS(err) || ctx.Err() != nil || time.Now().Add(pause).After(give) {
			return err
		}
		log.Warn("NATS did not answer a step of the start in time; trying again", "step", what, "try", try, "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
	}
}

// retry is retryStart with the start's budget and pause.
func (s *System) retry(ctx context.Context, log *slog.Logger, what string, step func(context.Context) error) error {
	return retryStart(ctx, log, what, startBudget, startPause, step)
}

func runTry(ctx context.Context, step func(context.Context) error) (err error) {
	tctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	return step(tctx)
}

// jsStreamOffline is JetStream's error code for a stream whose replicas
// have no leader yet (a server of the cluster was just lost or is back).
const jsStreamOffline jetstream.ErrorCode = 10118

// slowNATS tells whether err is NATS not answering in time, or JetStream
// saying it is temporarily unavailable (503, while it has no meta leader)
// or that a stream is offline, as opposed to refusing (a permission, a
// configuration that conflicts).
func slowNATS(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		(errors.As(err, &api) && (api.Code == 503 || api.ErrorCode == jsStreamOffline))
}

// openBucket opens a KV bucket with open, trying again while JetStream is
// slow, as the other steps of a start.
func (s *System) openBucket(ctx context.Context, log *slog.Logger, what string, js jetstream.JetStream,
	open func(context.Context, jetstream.JetStream, int) (jetstream.KeyValue, error)) (kv jetstream.KeyValue, err error) {
	err = s.retry(ctx, log, what, func(ctx context.Context) (err error) {
		kv, err = open(ctx, js, s.streams.Replicas)
		return err
	})
	return kv, err
}
