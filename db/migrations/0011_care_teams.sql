-- Care-team members and patients, and the alert states the API sets: snoozed and resolved.

-- People of the tenant (rows in users: a clinician can be a user too) who work in a team, with
-- a role: clinician, nurse and coach may act on the team's alerts; a viewer may only look.
CREATE TABLE care_team_members (
    care_team_id  bigint NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('clinician', 'nurse', 'coach', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (care_team_id, user_id)
);
CREATE INDEX care_team_members_user ON care_team_members (user_id);

-- The patients a team looks after.
CREATE TABLE care_team_patients (
    care_team_id  bigint NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
    patient_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (care_team_id, patient_id)
);
CREATE INDEX care_team_patients_patient ON care_team_patients (patient_id);

-- A snoozed alert neither escalates nor pages again until snoozed_until; then it wakes, as it
-- was before (open or acknowledged).  Resolved is final.  The who-and-when columns are
-- free text like acknowledged_by: a chat user or an API key's prefix.
ALTER TABLE alerts
    DROP CONSTRAINT alerts_status_check,
    ADD CONSTRAINT alerts_status_check CHECK (status IN ('open', 'acknowledged', 'snoozed', 'resolved')),
    ADD COLUMN snoozed_until  timestamptz,
    ADD COLUMN snoozed_by     text,
    ADD COLUMN resolved_at    timestamptz,
    ADD COLUMN resolved_by    text,
    ADD CONSTRAINT alerts_snoozed_until CHECK ((status = 'snoozed') = (snoozed_until IS NOT NULL));
CREATE INDEX alerts_snoozed ON alerts (snoozed_until) WHERE status = 'snoozed';
