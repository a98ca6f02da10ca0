-- The audit trail (MLPS level 3): every login, logout, failure and every read or write of
-- patient data. Each row is chained to the one before by a SHA-256 hash over its fields and
-- the previous hash (`appliance audit verify` recomputes the chain). Rows are never updated or
-- deleted: the triggers refuse it, whoever asks; retention is therefore unlimited (>= 180 days).
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY NOT NULL,
    at          TEXT    NOT NULL,
    user_id     INTEGER,
    login       TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    institution INTEGER,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit records cannot be changed');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit records cannot be deleted');
END;
