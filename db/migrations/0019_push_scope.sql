-- A sync run that a push asked for reads only what the push named: the days around its event
-- (scope_start..scope_end) and the provider's collections it concerns (scope_only).  NULL means
-- the run's own window, or every collection: an ordinary run.
ALTER TABLE sync_runs
    ADD COLUMN scope_start timestamptz,
    ADD COLUMN scope_end   timestamptz,
    ADD COLUMN scope_only  text[],
    ADD CONSTRAINT sync_runs_scope_check
        CHECK ((scope_start IS NULL) = (scope_end IS NULL) AND (scope_start IS NULL OR scope_start <= scope_end));

-- The connect page's confirm button carries this token: the link is spent only by a POST that
-- sends it back, so a chat preview fetching the link (a GET) cannot use it up.  Random, made
-- on the first GET, and worthless without the link token itself, which is kept only hashed.
ALTER TABLE connect_links ADD COLUMN form_token text;
