-- +goose Up
-- Orders are paid with a payment method's token now (payments keeps the
-- card, sealed), and the card numbers stored before go: from the orders,
-- from the logs' v1 PaymentRequested entries, and from the outbox, whose
-- v1 PaymentRequested rows payments no longer reads (an order that was
-- waiting for one is cancelled at its deadline). The stream's copies are
-- purged at start (Parts.Retired).
UPDATE order_events
SET data = replace(data, '"card":"' || (SELECT card FROM orders WHERE orders.id = order_events.order_id) || '"', '"card":""')
WHERE type = 'souk.orders.v1.PaymentRequested';
DELETE FROM outbox WHERE type = 'souk.orders.v1.PaymentRequested';
ALTER TABLE orders DROP COLUMN card;

-- +goose Down
ALTER TABLE orders ADD COLUMN card TEXT NOT NULL DEFAULT '';
