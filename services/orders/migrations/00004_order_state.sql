-- +goose Up
-- Each order's row keeps the fold of its log (JSON of the state and the
-- last entry's seq), written in the same transaction as the entries it
-- folds: the saga locks and reads that one row instead of the whole log.
-- A row written before has '' and is folded from its log the next time.
ALTER TABLE orders ADD COLUMN state TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN state;
