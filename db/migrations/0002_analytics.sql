-- Analytics results: daily aggregates, correlations, CGM summaries; alert provenance;
-- per-patient clinical thresholds.

CREATE TABLE daily_stats (
    user_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    metric    text NOT NULL,
    day       date NOT NULL,           -- the user's local day
    avg       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    count     integer NOT NULL,
    avg_7d    double precision NOT NULL,
    avg_30d   double precision NOT NULL,
    PRIMARY KEY (user_id, metric, day)
);

-- The latest 90-day result per pair and lag; each analysis replaces the user's set.
CREATE TABLE correlations (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    metric_a     text NOT NULL,
    metric_b     text NOT NULL,
    lag_days     smallint NOT NULL CHECK (lag_days BETWEEN 0 AND 7),
    n            integer NOT NULL,
    spearman     double precision NOT NULL,
    pearson      double precision NOT NULL,
    p_value      double precision NOT NULL,
    q_value      double precision NOT NULL,
    ci_low       double precision NOT NULL,
    ci_high      double precision NOT NULL,
    description  text NOT NULL,
    period_end   date NOT NULL,
    PRIMARY KEY (user_id, metric_a, metric_b, lag_days)
);

CREATE TABLE cgm_summaries (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period_end  date NOT NULL,
    days        smallint NOT NULL,
    metrics     jsonb NOT NULL,
    PRIMARY KEY (user_id, period_end, days)
);

ALTER TABLE alerts
    ADD COLUMN kind text NOT NULL DEFAULT 'clinical' CHECK (kind IN ('clinical', 'statistical')),
    ADD COLUMN rule text,
    ADD COLUMN rule_version integer;

-- Care teams tune thresholds per patient (a COPD patient's SpO2 target, say); keys as in
-- pipeline/analytics/thresholds.py, absent keys take the defaults.
ALTER TABLE users ADD COLUMN alert_thresholds jsonb NOT NULL DEFAULT '{}';
