package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRetryStart: a step of the start that NATS does not answer in time is
// tried again, within the budget; a refusal is not; a failed try's context
// is cancelled, a successful one's is not.
func TestRetryStart(t *testing.T) {
	slow := fmt.Errorf("watch registry: %w", context.DeadlineExceeded)
	refused := errors.New("nats: permissions violation")
	unavailable := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	offline := &jetstream.APIError{Code: 500, ErrorCode: 10118, Description: "stream is offline"}
	for _, c := range []struct {
		name      string
		failures  []error // what the tries return before they succeed
		budget    time.Duration
		wantErr   error
		wantTries int
	}{
		{"succeeds at once", nil, 10 * time.Second, nil, 1},
		{"slow twice, then answers", []error{slow, nats.ErrTimeout}, 10 * time.Second, nil, 3},
		{"no responders while a leader is elected", []error{nats.ErrNoResponders}, 10 * time.Second, nil, 2},
		{"JetStream temporarily unavailable", []error{fmt.Errorf("registry bucket: %w", unavailable)}, 10 * time.Second, nil, 2},
		{"a stream offline after a server's loss", []error{fmt.Errorf("api key bucket: %w", offline)}, 10 * time.Second, nil, 2},
		{"a refusal is final", []error{refused, nil}, 10 * time.Second, refused, 1},
		{"slow, and no budget left", []error{slow, nil}, 0, slow, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tries int
			var ctxs []context.Context
			err := retryStart(context.Background(), slog.New(slog.DiscardHandler), "a step", c.budget, 10*time.Millisecond,
				func(ctx context.Context) error {
					tries++
					ctxs = append(ctxs, ctx)
					if tries <= len(c.failures) {
						return c.failures[tries-1]
					}
					return nil
				})
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if tries != c.wantTries {
				t.Fatalf("%d tries, want %d", tries, c.wantTries)
			}
			for i, ctx := range ctxs {
				failed := i < len(ctxs)-1 || err != nil
				if (ctx.Err() != nil) != failed {
					t.Errorf("try %d: context ended %v, want %v", i+1, ctx.Err() != nil, failed)
				}
			}
		})
	}
	t.Run("its context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var tries int
		err := retryStart(ctx, slog.New(slog.DiscardHandler), "a step", time.Minute, 10*time.Millisecond, func(context.Context) error {
			tries++
			cancel()
			return slow
		})
		if !errors.Is(err, slow) || tries != 1 {
			t.Fatalf("after its context ended: %d tries, %v", tries, err)
		}
	})
}
