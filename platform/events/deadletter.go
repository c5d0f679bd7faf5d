package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is an event a consumer gave up on.
type DeadLetter struct {
	Seq        uint64    `json:"seq"` // its sequence in the dead-letter stream: the id to replay it by
	Consumer   string    `json:"consumer"`
	Stream     string    `json:"stream"`
	Subject    string    `json:"subject"`
	EventID    string    `json:"event_id"`
	Reason     string    `json:"reason"`
	Deliveries int       `json:"deliveries"`
	Time       time.Time `json:"time"`
	Data       string    `json:"data"`
}

// ListDeadLetters returns up to limit dead letters, oldest first: those of
// consumer, or all if consumer is "".
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, consumer string, limit int) ([]DeadLetter, error) {
	s, err := js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	filter := "souk.dlq.>"
	if consumer != "" {
		filter = DeadLetterSubject(consumer)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for len(out) < limit {
		info, err := c.Info(ctx)
		if err != nil {
			return out, err
		}
		if info.NumPending == 0 {
			break
		}
		batch, err := c.Fetch(min(limit-len(out), 500), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return out, err
			}
			out = append(out, deadLetterOf(&jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Header: m.Headers(), Data: m.Data()}))
			n++
		}
		if err := batch.Error(); err != nil {
			return out, err
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// ReadDeadLetters returns up to limit dead letters, oldest first, getting
// them from the stream one by one rather than through a consumer: for a
// reader allowed only to get the stream's messages, such as the gateway's
// console.
func ReadDeadLetters(ctx context.Context, js jetstream.JetStream, limit int) ([]DeadLetter, error) {
	s, err := js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for seq := uint64(1); len(out) < limit; {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("souk.dlq.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, err
		}
		out = append(out, deadLetterOf(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	d := DeadLetter{
		Seq:      m.Sequence,
		Consumer: h.Get(HdrDeadConsumer),
		Stream:   h.Get(HdrDeadStream),
		Subject:  h.Get(HdrDeadSubject),
		EventID:  eventID(h, m.Data),
		Reason:   h.Get(HdrDeadReason),
		Data:     string(m.Data),
	}
	d.Deliveries, _ = strconv.Atoi(h.Get(HdrDeadDeliveries))
	d.Time, _ = time.Parse(time.RFC3339Nano, h.Get(HdrDeadTime))
	return d
}

// ReplayDeadLetter publishes the dead letter seq again on its original
// subject and, once the broker has it, deletes it from the dead-letter
// stream. Every consumer of that subject sees it again; those that
// processed it before drop it through their inbox.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	return ReplayDeadLetterFrom(ctx, js, seq, "")
}

// Errors of the dead-letter functions.
var (
	ErrNoDeadLetter = errors.New("no such dead letter")
	ErrNotOurs      = errors.New("the dead letter came from another stream")
)

// GetDeadLetter returns the dead letter seq, or ErrNoDeadLetter.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	_, raw, err := getDeadLetter(ctx, js, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	return deadLetterOf(raw), nil
}

func getDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (jetstream.Stream, *jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, fmt.Errorf("dead letter %d: %w", seq, ErrNoDeadLetter)
	}
	if err != nil {
		return nil, nil, err
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil, fmt.Errorf("dead letter %d: %w", seq, ErrNoDeadLetter)
	}
	return s, raw, err
}

// ReplayDeadLetterFrom is ReplayDeadLetter for a dead letter of stream
// only ("" for any): a service replays the events of its own stream,
// which are the only ones it may publish, and refuses the others with
// ErrNotOurs.
func ReplayDeadLetterFrom(ctx context.Context, js jetstream.JetStream, seq uint64, stream string) (DeadLetter, error) {
	s, raw, err := getDeadLetter(ctx, js, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	d := deadLetterOf(raw)
	if d.Subject == "" || d.Stream == "" {
		return d, fmt.Errorf("dead letter %d does not say where it came from", seq)
	}
	if stream != "" && d.Stream != stream {
		return d, fmt.Errorf("dead letter %d is from %s, not %s: %w", seq, d.Stream, stream, ErrNotOurs)
	}
	m := nats.NewMsg(d.Subject)
	for k, v := range raw.Header {
		if !strings.HasPrefix(k, "Souk-Dead-") && k != nats.MsgIdHdr {
			m.Header[k] = v
		}
	}
	m.Data = raw.Data
	// A msg id of its own: the original's may still be in the broker's
	// dedupe window, and replaying the same dead letter twice publishes once.
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("replay-%d-%s", seq, d.EventID)), jetstream.WithExpectStream(d.Stream)); err != nil {
		return d, fmt.Errorf("replay %d to %s: %w", seq, d.Subject, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return d, fmt.Errorf("replayed %d, but could not delete it from the dead letters: %w", seq, err)
	}
	return d, nil
}
