-- Service accounts: systems (a PACS, a clinic's viewer, OHIF) that read imaging over DICOMweb
-- with a bearer token. The token itself is shown once and never stored; its id (`jti`) is, so
-- revoking lists it in DATA_DIR/keys/revoked-tokens, which imaging checks on every request.
CREATE TABLE service_accounts (
    id          INTEGER PRIMARY KEY NOT NULL,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    write       INTEGER NOT NULL DEFAULT 0,
    jti         TEXT    NOT NULL UNIQUE,
    created_by  INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
