-- +goose Up
-- An order is its log of events (order_events); status is the state the
-- log folds to, kept beside it in the same transaction so that the deadline
-- sweep can find unfinished orders without folding them all.
CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    card            TEXT NOT NULL, -- a test card of the simulated provider
    status          TEXT NOT NULL,
    deadline_at     TIMESTAMP NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_open ON orders (deadline_at) WHERE status NOT IN ('confirmed', 'cancelled');

CREATE TABLE order_events (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq      BIGINT NOT NULL,
    type     TEXT NOT NULL,
    data     TEXT NOT NULL,
    at       TIMESTAMP NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- +goose Down
DROP TABLE order_events;
DROP TABLE orders;
