-- +goose Up
-- A customer's orders, newest first (GET /orders): UUIDv7 ids sort by
-- creation time, so one index serves the list and its cursor.
CREATE INDEX orders_by_customer ON orders (customer_id, id);

-- +goose Down
DROP INDEX orders_by_customer;
