package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream that holds a service's events.
func StreamName(service string) string { return "souk_" + service }

// StreamOwner is the service whose events stream holds: StreamName's inverse.
func StreamOwner(stream string) string { return strings.TrimPrefix(stream, "souk_") }

// DeadLetterStream holds the events consumers gave up on.
const DeadLetterStream = "souk_dead_letters"

// DeadLetterSubject is where the dead letters of consumer go.
func DeadLetterSubject(consumer string) string { return "souk.dlq." + consumer }

// StreamConfig says how durable the streams are.
type StreamConfig struct {
	// Replicas is how many servers hold each message: 1 for a single
	// server, 3 in a cluster, so that losing one server loses nothing.
	Replicas int
	// MaxAge is how long events are kept, and so how long a consumer may
	// be down and still catch up.
	MaxAge time.Duration
	// Duplicates is the broker's dedupe window: a message whose
	// Nats-Msg-Id was seen within it is acknowledged and dropped. It must
	// cover the time between a relay publishing a row and marking it sent,
	// crashes included; past it, consumers' inboxes still drop the copy.
	Duplicates time.Duration
}

// DefaultStreamConfig suits one server.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{Replicas: 1, MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Minute}
}

// EnsureStream creates the stream for service's events, or updates it to
// cfg. It is safe to call from every replica at every start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, service string, cfg StreamConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName(service),
		Description: "Events published by the " + service + " service",
		Subjects:    []string{"souk." + service + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", StreamName(service), err)
	}
	return nil
}

// EnsureDeadLetterStream creates the dead-letter stream, or updates it.
// Dead letters are kept until replayed or for 30 days.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Events that consumers could not process, with the reason",
		Subjects:    []string{"souk.dlq.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
		MaxAge:      30 * 24 * time.Hour,
		Duplicates:  cfg.Duplicates,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", DeadLetterStream, err)
	}
	return nil
}

// PurgeRetired removes from service's stream every message of the event
// types it no longer publishes (each type is its NATS subject). Purging
// what is gone already does nothing, so it runs at every start.
func PurgeRetired(ctx context.Context, js jetstream.JetStream, service string, types []string) error {
	if len(types) == 0 {
		return nil
	}
	s, err := js.Stream(ctx, StreamName(service))
	if err != nil {
		return fmt.Errorf("stream %s: %w", StreamName(service), err)
	}
	for _, typ := range types {
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(typ)); err != nil {
			return fmt.Errorf("purge %s from %s: %w", typ, StreamName(service), err)
		}
	}
	return nil
}
