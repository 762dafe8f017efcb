-- Daily stats are written in bulk too: every analysis upserts each metric's window of days, ~30
-- to 60 rows a user, and the foreign key to users ran a lookup and a row lock per row (about a
-- quarter of a millisecond of the server's time per user in the analytics recompute,
-- docs/benchmarks.md).  As for readings (migration 0017), db/analytics.py takes the same guarantee
-- once per write: it locks the users it writes for FOR KEY SHARE, as the check did per row, and
-- writes rows only for the users it found.  A DELETE of a user then either waits for the write to
-- commit and the trigger below deletes what was written, or it ran first and the write skips them.
ALTER TABLE daily_stats DROP CONSTRAINT daily_stats_user_id_fkey;

CREATE FUNCTION daily_stats_forget_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM daily_stats d USING gone g WHERE d.user_id = g.id;
    RETURN NULL;
END $$;

CREATE TRIGGER daily_stats_forget_users AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION daily_stats_forget_users();
