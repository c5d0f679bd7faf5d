-- +goose Up
-- Failed logins as leaky counters (throttle.go), per (account, address),
-- per account and per address: level in thousandths of a failure at
-- last_failure, draining from then on. They replace the fixed windows
-- after which an account was locked, its owner too.
DROP TABLE login_failures;
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    level        BIGINT NOT NULL,
    last_failure TIMESTAMP NOT NULL
);
CREATE INDEX login_throttle_last_failure ON login_throttle (last_failure);

-- +goose Down
DROP TABLE login_throttle;
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    window_start TIMESTAMP NOT NULL,
    failures     BIGINT NOT NULL
);
