-- +goose Up
-- A session is what one sign-in begins; its access tokens name it (sid)
-- and its refresh tokens renew them. Refresh tokens are kept only as the
-- SHA-256 of the token (256 random bits, so a fast hash is enough), and
-- each is good for one exchange: a second use of one ends its session.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY, -- UUIDv7: sorts by when the session began
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL, -- however often it is refreshed
    ended_at   TIMESTAMP           -- logout, a reused refresh token, a password or role change
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP -- exchanged for the next; a second exchange ends the session
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- +goose Down
DROP TABLE refresh_tokens;
DROP TABLE sessions;
