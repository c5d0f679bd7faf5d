package payments

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/souk-shop/souk/api/money"
	"github.com/souk-shop/souk/platform/store"
)

// Provider is a payment provider, as the payments service uses one. Every
// call carries an idempotency key: the same key never has a second effect,
// and returns the first call's outcome.
type Provider interface {
	// Authorize holds amount on card and returns the authorization's
	// reference, or ErrDeclined.
	Authorize(ctx context.Context, key, orderID string, amount money.Money, card string) (ref string, err error)
	// Capture takes the money held by ref; ErrVoided if it was voided.
	Capture(ctx context.Context, key, orderID, ref string) error
	// Void releases the hold; ErrCaptured if it was captured.
	Void(ctx context.Context, key, orderID, ref string) error
	// Refund gives captured money back.
	Refund(ctx context.Context, key, orderID, ref string) error
}

// Provider outcomes that are answers, not failures.
var (
	ErrDeclined = errors.New("card declined")
	ErrVoided   = errors.New("authorization voided")
	ErrCaptured = errors.New("authorization already captured")
	// ErrUnavailable is a failure worth trying again.
	ErrUnavailable = errors.New("payment provider unavailable")
)

// Test cards of the simulated provider.
const (
	DeclineCard = "4000000000000002" // always declined
	TimeoutCard = "4000000000000119" // the provider never answers in time
)

// SimulatedConfig shapes the simulated provider's behaviour.
type SimulatedConfig struct {
	// FailureRate is the chance that a call fails with ErrUnavailable
	// (before doing anything).
	FailureRate float64
	// Latency is how long each call takes.
	Latency time.Duration
}

// Simulated is a payment provider that does not exist: it keeps its books
// in the payments database (simulated_provider_operations) and declines,
// fails and dawdles as configured. It is the only fake in Souk, standing in
// for a third party outside the system.
type Simulated struct {
	db  *store.DB
	cfg SimulatedConfig
}

var _ Provider = (*Simulated)(nil)

// NewSimulated returns a simulated provider keeping its books in db.
func NewSimulated(db *store.DB, cfg SimulatedConfig) *Simulated { return &Simulated{db: db, cfg: cfg} }

func (p *Simulated) Authorize(ctx context.Context, key, orderID string, amount money.Money, card string) (string, error) {
	if err := p.behave(ctx, card); err != nil {
		return "", err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	ref := "sim_" + hex.EncodeToString(b[:])
	outcome := "authorized"
	if card == DeclineCard {
		outcome, ref = "declined", ""
	}
	got, err := p.record(ctx, key, "authorize", orderID, ref, amount, outcome)
	if err != nil {
		return "", err
	}
	if got.outcome == "declined" {
		return "", ErrDeclined
	}
	return got.ref, nil
}

func (p *Simulated) Capture(ctx context.Context, key, orderID, ref string) error {
	return p.change(ctx, key, "capture", orderID, ref, map[string]error{"voided": ErrVoided})
}

func (p *Simulated) Void(ctx context.Context, key, orderID, ref string) error {
	return p.change(ctx, key, "void", orderID, ref, map[string]error{"captured": ErrCaptured, "refunded": ErrCaptured})
}

func (p *Simulated) Refund(ctx context.Context, key, orderID, ref string) error {
	return p.change(ctx, key, "refund", orderID, ref, map[string]error{"voided": ErrVoided})
}

// change applies operation to the authorization ref unless its state is
// one of refuse; the state is the outcome of its last successful change.
func (p *Simulated) change(ctx context.Context, key, operation, orderID, ref string, refuse map[string]error) error {
	if err := p.behave(ctx, ""); err != nil {
		return err
	}
	outcome := map[string]string{"capture": "captured", "void": "voided", "refund": "refunded"}[operation]
	var recorded op
	err := p.db.InTx(ctx, func(tx *sql.Tx) error {
		// Changes of one authorization take turns, as at a real provider:
		// a capture and a void (from two consumers, or two instances) that
		// both read it as authorized would both succeed. SQLite's
		// transactions take turns anyway; on PostgreSQL the authorization's
		// row is locked until the change commits.
		if p.db.Dialect == store.Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT 1 FROM simulated_provider_operations
				WHERE reference = $1 AND operation = 'authorize' FOR UPDATE`, ref); err != nil {
				return err
			}
		}
		// The authorization's state, the outcome of its last successful
		// change, and what the key did if it was used on it before.
		rows, err := tx.QueryContext(ctx, `SELECT idempotency_key, outcome, amount, currency FROM simulated_provider_operations
			WHERE reference = $1 ORDER BY created_at, idempotency_key`, ref)
		if err != nil {
			return err
		}
		defer rows.Close()
		state, used := "", false
		var amount int64
		var currency string
		for rows.Next() {
			var k, o, c string
			var a int64
			if err := rows.Scan(&k, &o, &a, &c); err != nil {
				return err
			}
			if k == key {
				recorded, used = op{ref: ref, outcome: o}, true
			}
			if slices.Contains([]string{"authorized", "captured", "voided", "refunded"}, o) {
				state, amount, currency = o, a, c
			}
		}
		if err := rows.Err(); err != nil || used {
			return err
		}
		if state == "" {
			return fmt.Errorf("no authorization %s", ref)
		}
		result := outcome
		if refused, ok := refuse[state]; ok {
			result = "refused:" + refused.Error()
		}
		recorded = op{ref: ref, outcome: result}
		res, err := tx.ExecContext(ctx, `INSERT INTO simulated_provider_operations
			(idempotency_key, operation, order_id, reference, amount, currency, outcome, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (idempotency_key) DO NOTHING`,
			key, operation, orderID, ref, amount, currency, result, time.Now().UTC())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		// The key was used on another authorization: its first outcome stands.
		recorded, err = keyed(ctx, tx, key)
		return err
	})
	if err != nil {
		return err
	}
	for _, refused := range refuse {
		if recorded.outcome == "refused:"+refused.Error() {
			return refused
		}
	}
	return nil
}

type op struct{ ref, outcome string }

// record stores an operation under key unless key was used before, and
// returns what the key stands for: one statement, unless the key was used.
func (p *Simulated) record(ctx context.Context, key, operation, orderID, ref string, amount money.Money, outcome string) (op, error) {
	res, err := p.db.ExecContext(ctx, `INSERT INTO simulated_provider_operations
		(idempotency_key, operation, order_id, reference, amount, currency, outcome, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (idempotency_key) DO NOTHING`,
		key, operation, orderID, ref, amount.Amount, amount.Currency, outcome, time.Now().UTC())
	if err != nil {
		return op{}, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return op{ref: ref, outcome: outcome}, err
	}
	return keyed(ctx, p.db, key)
}

// keyed returns what the operation recorded under key did.
func keyed(ctx context.Context, q querier, key string) (op, error) {
	var o op
	err := q.QueryRowContext(ctx, `SELECT reference, outcome FROM simulated_provider_operations WHERE idempotency_key = $1`, key).Scan(&o.ref, &o.outcome)
	return o, err
}

// behave waits the configured latency and fails at the configured rate;
// TimeoutCard waits until ctx gives up.
func (p *Simulated) behave(ctx context.Context, card string) error {
	if card == TimeoutCard {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	if p.cfg.Latency > 0 {
		select {
		case <-time.After(p.cfg.Latency):
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	if p.cfg.FailureRate > 0 && mrand.Float64() < p.cfg.FailureRate {
		return ErrUnavailable
	}
	return nil
}
