-- The simulated provider finds an authorization's operations by its
-- reference, and locks its row, at every capture, void and refund: without
-- an index each was a scan of every operation ever made.
-- +goose Up
CREATE INDEX simulated_provider_operations_reference ON simulated_provider_operations (reference);

-- +goose Down
DROP INDEX simulated_provider_operations_reference;
