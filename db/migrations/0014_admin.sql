-- The admin console: its login sessions, and the indexes its pages page through.

-- A console session.  The cookie holds a random id; only its SHA-256 is kept, so a leaked
-- table opens no session.  A session bound to an API key (api_key_id, tenant_id) sees that
-- tenant; a password session has neither and sees the whole deployment.  Revoking the key
-- ends its sessions (the lookup joins api_keys; the cascade removes them on delete).
CREATE TABLE admin_sessions (
    id_hash     bytea PRIMARY KEY,
    api_key_id  bigint REFERENCES api_keys (id) ON DELETE CASCADE,
    tenant_id   bigint REFERENCES tenants (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((api_key_id IS NULL) = (tenant_id IS NULL))
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- Sync runs filtered by status, newest first (keyset on id); the failed-only index of 0003
-- orders by finished_at, which a keyset on id cannot use.
CREATE INDEX sync_runs_status_id ON sync_runs (status, id DESC);
-- Deliveries filtered by outcome, newest first.
CREATE INDEX notification_logs_status_id ON notification_logs (status, id DESC);
CREATE INDEX webhook_deliveries_status_id ON webhook_deliveries (status, id DESC);
-- Connections that are not active, for the "inactive and why" list.
CREATE INDEX connections_inactive ON connections (id DESC) WHERE status <> 'active';
