-- +goose Up
-- One payment per order, as the saga has moved it: authorized, declined,
-- captured, voided, refunded, or cancelled (a tombstone: cancelled before
-- the authorization was asked for, so a late request is refused).
CREATE TABLE payments (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    reference  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- The simulated payment provider's own books: every operation, by its
-- idempotency key. A real provider keeps these on its side; the simulator
-- keeps them here so that `souk check` can audit what was charged.
CREATE TABLE simulated_provider_operations (
    idempotency_key TEXT PRIMARY KEY,
    operation       TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    reference       TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX simulated_provider_operations_order ON simulated_provider_operations (order_id);

-- +goose Down
DROP TABLE simulated_provider_operations;
DROP TABLE payments;
