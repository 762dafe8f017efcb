-- Delivery speed: the cooldown looks up a rule's last send from the patient's own alerts.
--
-- The cooldown asks "did this rule deliver another alert of this patient and metric lately?".
-- It used to walk notification_logs_rule_sent, every send of the rule inside the window, which
-- the planner picks when the log was analysed while empty: quadratic in a rule's traffic.  Now it
-- starts from the patient's alerts keyed as the cooldown keys them (the metric, else the
-- category) and probes each one's delivered rows.  Without the rule-wide index there is no plan
-- that reads the rule's whole history, whatever the statistics say.
CREATE INDEX alerts_user_cooldown_key ON alerts (user_id, (coalesce(metric, category)));
CREATE INDEX notification_logs_alert_sent ON notification_logs (alert_id, rule_id, finished_at DESC)
    WHERE status = 'delivered' AND purpose = 'notify';
DROP INDEX notification_logs_rule_sent;
