-- +goose Up
ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'customer';

-- Ed25519 keys that sign access tokens. A new key is published in the JWK
-- Set at created_at and signs from activates_at, when the key before it
-- retires; a retired key stays published until the tokens it signed expire.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_key  TEXT NOT NULL, -- base64 of the 32-byte Ed25519 seed
    created_at   TIMESTAMP NOT NULL,
    activates_at TIMESTAMP NOT NULL,
    retired_at   TIMESTAMP
);

-- API keys: only a prefix, to find the key, and the SHA-256 of the secret.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    revoked_at  TIMESTAMP
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Failed logins per account and per client address in the current window.
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    window_start TIMESTAMP NOT NULL,
    failures     BIGINT NOT NULL
);

-- +goose Down
DROP TABLE login_failures;
DROP TABLE api_keys;
DROP TABLE signing_keys;
ALTER TABLE users DROP COLUMN role;
ALTER TABLE users DROP COLUMN password_hash;
