-- +goose Up
-- A read model fed by the users service's UserRegistered events.
CREATE TABLE user_stats (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    registered_users BIGINT NOT NULL
);
INSERT INTO user_stats (id, registered_users) VALUES (1, 0);

-- +goose Down
DROP TABLE user_stats;
