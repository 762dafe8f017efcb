-- Sleep and workout sessions: intervals with real durations.  The seed platform stored both as
-- metric rows of value 0; here they are rows of their own, and the database refuses one that
-- lasts no time at all.  Keyed by start, like metrics by recorded_at: a provider that revises a
-- session (a later end, new stage minutes) updates the row in place.

CREATE TABLE sessions (
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider       text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('sleep', 'workout')),
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    -- Derived, so it can never disagree with the interval; whole seconds, rounded down.
    duration_s     integer NOT NULL GENERATED ALWAYS AS (floor(extract(epoch FROM ended_at - started_at))::integer) STORED,
    -- The workout type (running, cycling, ...); NULL for sleep.
    activity       text,
    -- Summaries only: stage minutes for sleep; energy, distance and heart rate for workouts.
    details        jsonb NOT NULL DEFAULT '{}',
    connection_id  bigint REFERENCES connections (id) ON DELETE SET NULL,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider, kind, started_at),
    CHECK (ended_at > started_at),
    CHECK (duration_s > 0)
);
-- The primary key serves one provider's nights or workouts; this serves a user's time range.
CREATE INDEX sessions_user_time ON sessions (user_id, started_at);
