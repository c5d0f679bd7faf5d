package events

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterOutboxMetrics exports the outbox's backlog, read from the
// database at each scrape: how many events wait, and how long the oldest
// has waited.
func RegisterOutboxMetrics(reg prometheus.Registerer, o *Outbox) {
	query := func() (n float64, age float64) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var count int64
		var oldest *time.Time
		row := o.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(time) FROM outbox WHERE sent_at IS NULL`)
		if err := row.Scan(&count, &oldest); err != nil {
			return -1, -1
		}
		if oldest != nil {
			age = time.Since(*oldest).Seconds()
		}
		return float64(count), age
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "souk_outbox_pending", Help: "Events written to the outbox and not yet published (-1: the database did not answer).",
		}, func() float64 { n, _ := query(); return n }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "souk_outbox_oldest_pending_age_seconds", Help: "How long the oldest unpublished event has waited.",
		}, func() float64 { _, a := query(); return a }),
	)
}

// ConsumerMetrics count what consumers do with events.
type ConsumerMetrics struct {
	events       *prometheus.CounterVec
	redeliveries *prometheus.CounterVec
	js           jetstream.JetStream
	pending      *prometheus.Desc
	mu           chan struct{}
	consumers    map[string]string // consumer → stream
}

// NewConsumerMetrics registers consumer metrics with reg; the lag of each
// consumer is asked of js at each scrape.
func NewConsumerMetrics(reg prometheus.Registerer, js jetstream.JetStream) *ConsumerMetrics {
	m := &ConsumerMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_consumer_events_total",
			Help: "Events handled by a consumer, by outcome: applied, duplicate (already in the inbox), retried, dead_lettered.",
		}, []string{"consumer", "outcome"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_consumer_redeliveries_total", Help: "Events a consumer received more than once.",
		}, []string{"consumer"}),
		js:        js,
		pending:   prometheus.NewDesc("souk_consumer_pending", "Events in the stream the consumer has not yet been given (its lag).", []string{"consumer"}, nil),
		mu:        make(chan struct{}, 1),
		consumers: map[string]string{},
	}
	reg.MustRegister(m.events, m.redeliveries, m)
	return m
}

func (m *ConsumerMetrics) add(consumer, stream string) {
	m.mu <- struct{}{}
	m.consumers[consumer] = stream
	<-m.mu
	// Series start at zero, so that rates and alerts see the first event.
	for _, outcome := range []string{"applied", "duplicate", "retried", "dead_lettered"} {
		m.events.WithLabelValues(consumer, outcome)
	}
	m.redeliveries.WithLabelValues(consumer)
}

// Describe implements prometheus.Collector.
func (m *ConsumerMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.pending }

// Collect implements prometheus.Collector.
func (m *ConsumerMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu <- struct{}{}
	consumers := make(map[string]string, len(m.consumers))
	for c, s := range m.consumers {
		consumers[c] = s
	}
	<-m.mu
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for name, stream := range consumers {
		c, err := m.js.Consumer(ctx, stream, name)
		if err != nil {
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(info.NumPending), name)
	}
}
