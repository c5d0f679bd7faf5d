package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// OpenKeyBucket creates or opens KeyBucket: file storage (a NATS restart
// loses no key), each key living ten minutes unless its owner refreshes it.
func OpenKeyBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      KeyBucket,
		Description: "Souk's processes' public keys, <identity>.<id>: what proofs between them are checked with",
		History:     1,
		TTL:         keyTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("key bucket %s: %w", KeyBucket, err)
	}
	return kv, nil
}

const keyTTL = 10 * time.Minute

// PublishKey puts p's public key in kv, and puts it again every minute
// until ctx ends; then it deletes it (a process that dies leaves it to
// expire after its proofs have). It returns once the key is there.
func PublishKey(ctx context.Context, kv jetstream.KeyValue, p *Prover, log *slog.Logger) error {
	// A put is safe to repeat; a busy cluster (a server just lost, a
	// leader moving) may let one time out at start.
	for try := 1; ; try++ {
		_, err := kv.Put(ctx, p.KeyID(), p.PublicKey())
		if err == nil {
			break
		}
		if try == 3 || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return fmt.Errorf("publish key %s: %w", p.KeyID(), err)
		}
		log.Warn("publishing this process's key timed out; trying again", "key", p.KeyID(), "try", try)
	}
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = kv.Delete(dctx, p.KeyID())
				cancel()
				return
			case <-t.C:
				if _, err := kv.Put(ctx, p.KeyID(), p.PublicKey()); err != nil && ctx.Err() == nil {
					log.Warn("refreshing this process's key failed", "key", p.KeyID(), "err", err)
				}
			}
		}
	}()
	return nil
}

// WatchKeys returns a KeySet that follows kv until ctx ends, once it holds
// the keys kv had.
func WatchKeys(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*KeySet, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch keys: %w", err)
	}
	set := NewKeySet(func(kid string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		e, err := kv.Get(ctx, kid)
		if err != nil {
			return nil, err
		}
		return e.Value(), nil
	})
	synced := make(chan struct{})
	go func() {
		defer func() { _ = w.Stop() }()
		for e := range w.Updates() {
			switch {
			case e == nil:
				close(synced)
			case e.Operation() == jetstream.KeyValuePut:
				if err := set.Put(e.Key(), e.Value()); err != nil {
					log.Warn("a key in the key bucket is not one", "err", err)
				}
			default:
				set.Delete(e.Key())
			}
		}
	}()
	select {
	case <-synced:
		return set, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("watch keys: the keys did not arrive in 10s: %w", context.DeadlineExceeded)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
