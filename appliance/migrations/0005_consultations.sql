-- Patients (registered at an institution), consultations and referrals (the workflow's state as
-- JSON, with a version for optimistic concurrency), in-app notifications and the outbox the notification
-- worker sends from. A state change, its notifications and its outbox rows are written in one
-- transaction.
CREATE TABLE patients (
    id             INTEGER PRIMARY KEY NOT NULL,
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    name           TEXT    NOT NULL,
    sex            TEXT    NOT NULL CHECK (sex IN ('M', 'F', 'O', 'U')),
    birth_date     TEXT    NOT NULL,
    phone          TEXT    NOT NULL DEFAULT '',
    created_by     INTEGER NOT NULL REFERENCES users (id),
    created_at     INTEGER NOT NULL
);
CREATE INDEX patients_institution ON patients (institution_id);

ALTER TABLE users ADD COLUMN phone TEXT NOT NULL DEFAULT '';

CREATE TABLE consultations (
    id             INTEGER PRIMARY KEY NOT NULL,
    patient_id     INTEGER NOT NULL REFERENCES patients (id),
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    applicant_id   INTEGER NOT NULL REFERENCES users (id),
    state          TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX consultations_state ON consultations (state, id);
CREATE INDEX consultations_institution ON consultations (institution_id, id);

CREATE TABLE referrals (
    id             INTEGER PRIMARY KEY NOT NULL,
    patient_id     INTEGER NOT NULL REFERENCES patients (id),
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    applicant_id   INTEGER NOT NULL REFERENCES users (id),
    state          TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX referrals_state ON referrals (state, id);

-- Who takes part in a consultation or referral besides its applicant, for scoping:
-- 'user:ID' (an expert, a receiving doctor) or 'institution:ID' (a receiving institution).
CREATE TABLE case_parties (
    kind    TEXT    NOT NULL CHECK (kind IN ('consultation', 'referral')),
    case_id INTEGER NOT NULL,
    party   TEXT    NOT NULL,
    PRIMARY KEY (kind, case_id, party)
);
CREATE INDEX case_parties_party ON case_parties (party, kind);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    event      TEXT    NOT NULL,
    object     TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
);
CREATE INDEX notifications_unread ON notifications (user_id, read_at, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY NOT NULL,
    channel         TEXT    NOT NULL CHECK (channel IN ('sms')),
    recipient       TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER,
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);
