-- The Dramatiq message that claimed a running sync run.  A retry of that same message may
-- take its run back at once: when its attempt failed while the database was away, the run
-- could not be handed back as pending and would otherwise wait out the stale interval.
ALTER TABLE sync_runs ADD COLUMN claimed_by text;
