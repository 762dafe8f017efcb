-- Readings are the one table written in bulk, so it keeps only what a bulk write must pay for.
--
-- No foreign keys.  Each one runs a lookup per inserted row: on a 2-core box the two checks
-- took about half of the server's time in a bulk load (docs/benchmarks.md, "Bulk ingest").
-- db/metrics.py takes the same guarantee once per write instead of once per row: it locks the
-- owning users and connections FOR KEY SHARE, as the checks did, and stores nothing when one
-- is missing.  The delete side, which the foreign keys did with ON DELETE, is the two triggers
-- below, so an erased user's readings go in the same transaction whichever way the user goes
-- (db/users.py erase, a tenant's deletion, plain SQL).
ALTER TABLE metrics DROP CONSTRAINT metrics_user_id_fkey, DROP CONSTRAINT metrics_connection_id_fkey;

-- One index serves every reader.  Each reads one user's readings by time: since a date
-- (analytics, the API's pages, ordered by time, metric, provider), before one (cleanup), or
-- whether there are any in a range (reports, the daily aggregate).  A key led by user and time
-- serves them all, and the separate (user_id, recorded_at) index, a second write per row,
-- goes.  A sync streams day by day, so its new rows also land next to each other in the key.
-- ON CONFLICT names the columns, not their order, so the upsert is unchanged.
DROP INDEX metrics_user_time;
ALTER TABLE metrics DROP CONSTRAINT metrics_pkey,
    ADD CONSTRAINT metrics_pkey PRIMARY KEY (user_id, recorded_at, metric, provider);

CREATE FUNCTION metrics_forget_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM metrics m USING gone g WHERE m.user_id = g.id;
    RETURN NULL;
END $$;

CREATE TRIGGER metrics_forget_users AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION metrics_forget_users();

-- A deleted connection's readings stay, unlinked, until the weekly cleanup takes them (as ON
-- DELETE SET NULL did).  Not when the user went too: their readings are deleted anyway.
CREATE FUNCTION metrics_forget_connections() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE metrics m SET connection_id = NULL
      FROM gone g
     WHERE m.user_id = g.user_id AND m.connection_id = g.id
       AND EXISTS (SELECT FROM users u WHERE u.id = g.user_id);
    RETURN NULL;
END $$;

CREATE TRIGGER metrics_forget_connections AFTER DELETE ON connections
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION metrics_forget_connections();
