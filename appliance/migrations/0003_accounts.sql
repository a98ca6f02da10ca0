-- Institutions of the alliance, user accounts and login sessions.
CREATE TABLE institutions (
    id         INTEGER PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL CHECK (kind IN ('hospital', 'campus', 'clinic')),
    parent_id  INTEGER REFERENCES institutions (id),
    created_at TEXT    NOT NULL
);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY NOT NULL,
    login               TEXT    NOT NULL UNIQUE,
    display_name        TEXT    NOT NULL,
    role                TEXT    NOT NULL,
    institution_id      INTEGER NOT NULL REFERENCES institutions (id),
    password_hash       TEXT    NOT NULL,
    password_changed_at INTEGER NOT NULL, -- ms since the epoch
    must_change         INTEGER NOT NULL DEFAULT 1,
    failed_count        INTEGER NOT NULL DEFAULT 0,
    locked_until        INTEGER NOT NULL DEFAULT 0,
    active              INTEGER NOT NULL DEFAULT 1,
    created_at          INTEGER NOT NULL
);

-- Only a SHA-256 of each bearer token is kept.
CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
