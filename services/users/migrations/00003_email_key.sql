-- +goose Up
-- The key accounts are compared by: the email in its canonical form
-- (identity.go), so that two spellings of one address (NFC and NFD, upper
-- and lower case, a Unicode domain and its punycode) are one account. Rows
-- from before have none until the service fills it in at start (Go code:
-- SQL cannot normalize Unicode); the older of two rows that come out equal
-- keeps the address.
ALTER TABLE users ADD COLUMN email_key TEXT;
CREATE UNIQUE INDEX users_by_email_key ON users (email_key);

-- +goose Down
DROP INDEX users_by_email_key;
ALTER TABLE users DROP COLUMN email_key;
