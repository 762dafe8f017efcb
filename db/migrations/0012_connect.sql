-- Browser OAuth: one-time connect links handed to users, and the PKCE verifier of a flow.

-- A link to /connect/start for one user and one provider.  As with oauth_states only a
-- SHA-256 of the token is kept: the token travels in a URL (a chat message, an email), and a
-- leaked table must not let anyone start a flow that connects a wearable to someone else.
CREATE TABLE connect_links (
    token_hash  bytea PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider    text NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connect_links_expiry ON connect_links (expires_at);
CREATE INDEX connect_links_user ON connect_links (user_id);

-- RFC 7636 verifier sent with the code exchange.  Kept as is, not hashed (it must be sent
-- back) nor sealed: it lives at most 15 minutes and is useless without the authorization
-- code, which only the user's browser receives, and our client secret.
ALTER TABLE oauth_states ADD COLUMN code_verifier text;
