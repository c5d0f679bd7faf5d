-- +goose Up
-- received is all the stock ever put in; at every moment
-- received = available + reserved + sold.
CREATE TABLE stock (
    product_id TEXT PRIMARY KEY,
    available  BIGINT NOT NULL CHECK (available >= 0),
    reserved   BIGINT NOT NULL CHECK (reserved >= 0),
    sold       BIGINT NOT NULL CHECK (sold >= 0),
    received   BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- One reservation per order: reserved, committed (sold), released,
-- expired, failed (nothing was reserved), or a tombstone (released before
-- the reservation request arrived).
CREATE TABLE reservations (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX reservations_expiry ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_items (
    order_id   TEXT NOT NULL REFERENCES reservations (order_id),
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- +goose Down
DROP TABLE reservation_items;
DROP TABLE reservations;
DROP TABLE stock;
