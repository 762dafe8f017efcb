-- The cooldown holds across worker processes.
--
-- Routing reads a rule's cooldown evidence in one statement and claims its sends in another, so
-- two workers could each read no recent send for two alerts of one patient and key, and both
-- send.  A send under a rule with a cooldown now also claims the rule's cooldown on the patient
-- and key, in the statement that claims the send (db/delivery_log.py), and only while this row
-- is still the one routing read: the second worker finds it changed and decides again.
-- log_id, the claiming attempt's log row, tells one claim from the next; severity lets a more
-- severe alert through, as the cooldown does.
--
-- One index: the primary key, which leads with the patient, so an erase finds its rows.  A second
-- index ties with it in a plan made while the table is empty (db.pool's plans): routing's read
-- then took a patient-wide one and read every claim of the patient.  Every claim rewrites its
-- row, and no updated column is indexed: room on the page keeps the update on it (HOT).
CREATE TABLE cooldown_claims (
    user_id   bigint NOT NULL,
    rule_id   bigint NOT NULL,
    key       text NOT NULL,
    alert_id  bigint NOT NULL,
    severity  text NOT NULL,
    log_id    bigint NOT NULL,
    PRIMARY KEY (user_id, rule_id, key)
) WITH (fillfactor = 90);

-- No foreign keys: most sends make a claim (the first of a patient and key), and the checks of
-- two keys, with a row lock on the user and on the rule (one row every worker locks), doubled the
-- claim statement's cost (as for readings and daily stats, migrations 0017 and 0020).  The claim
-- holds its alerts' row locks, so a user's delete (an erase, or its tenant's) waits for it, and
-- these triggers remove what it wrote; a claim of a rule deleted meanwhile is never read again.
CREATE FUNCTION cooldown_claims_forget_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cooldown_claims c USING gone g WHERE c.user_id = g.id;
    RETURN NULL;
END $$;

CREATE TRIGGER cooldown_claims_forget_users AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION cooldown_claims_forget_users();

-- A rule's claims go with it, in one scan of the table per delete (there is no index on rule_id;
-- a rule's delete already scans the delivery log, whose rule_id has none since 0015).
CREATE FUNCTION cooldown_claims_forget_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cooldown_claims c USING gone g WHERE c.rule_id = g.id;
    RETURN NULL;
END $$;

CREATE TRIGGER cooldown_claims_forget_rules AFTER DELETE ON notification_rules
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION cooldown_claims_forget_rules();
