-- +goose Up
-- Cards customers gave payments, each exchanged for a token that orders
-- and the saga carry instead. The number is sealed with a data key of its
-- own, wrapped by the keyring's key-encryption key (platform/secrets) and
-- bound to the token: a copy of this table reveals brands and last digits,
-- never a number.
CREATE TABLE payment_methods (
    token       TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    brand       TEXT NOT NULL,
    last4       TEXT NOT NULL,
    card        TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id, created_at);

-- +goose Down
DROP TABLE payment_methods;
