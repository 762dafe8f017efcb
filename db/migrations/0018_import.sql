-- An uploaded Apple Health export is read by a sync run of its own trigger, 'import': its
-- window is the retention period, not the days since the last sync.
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_trigger_check,
    ADD CONSTRAINT sync_runs_trigger_check
    CHECK (trigger IN ('manual', 'initial', 'webhook', 'scheduled', 'daily', 'demo', 'ingest', 'import'));
