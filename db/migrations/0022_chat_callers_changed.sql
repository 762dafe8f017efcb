-- Who a chat identity is (its workspace's tenant, its linked user) is asked before every command
-- and click.  A web process keeps the answers (bot/chat/callers.py) and forgets them all when
-- this channel says a workspace or a link changed: a revoked link, an uninstalled app or a new
-- link counts as soon as its transaction commits.  Row triggers, so the deletes that a tenant's
-- or a user's deletion cascades to are heard too, and statement triggers for TRUNCATE; Postgres
-- folds a transaction's notifications with the same payload into one.
CREATE FUNCTION chat_callers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_callers_changed', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER chat_callers_changed AFTER INSERT OR UPDATE OR DELETE ON chat_workspaces
    FOR EACH ROW EXECUTE FUNCTION chat_callers_changed();
CREATE TRIGGER chat_callers_changed AFTER INSERT OR UPDATE OR DELETE ON chat_identities
    FOR EACH ROW EXECUTE FUNCTION chat_callers_changed();
CREATE TRIGGER chat_callers_truncated AFTER TRUNCATE ON chat_workspaces
    FOR EACH STATEMENT EXECUTE FUNCTION chat_callers_changed();
CREATE TRIGGER chat_callers_truncated AFTER TRUNCATE ON chat_identities
    FOR EACH STATEMENT EXECUTE FUNCTION chat_callers_changed();
