-- Consultation reports, one row per version. A signed row is final (the trigger refuses any
-- change) and rows are never deleted: amending a signed report makes the next version.
CREATE TABLE reports (
    consultation_id  INTEGER NOT NULL REFERENCES consultations (id),
    version          INTEGER NOT NULL,
    template         TEXT    NOT NULL,
    content          TEXT    NOT NULL,
    updated_by       INTEGER NOT NULL REFERENCES users (id),
    updated_at       INTEGER NOT NULL,
    signed_by        INTEGER REFERENCES users (id),
    signed_at        INTEGER,
    content_sha256   TEXT,
    signature_sha256 TEXT,
    seal_sha256      TEXT,
    PRIMARY KEY (consultation_id, version)
);
CREATE TRIGGER reports_signed_are_final BEFORE UPDATE ON reports WHEN OLD.signed_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a signed report cannot be changed');
END;
CREATE TRIGGER reports_are_kept BEFORE DELETE ON reports
BEGIN
    SELECT RAISE(ABORT, 'reports cannot be deleted');
END;

-- Each expert's signature image (PNG or JPEG), bound into the reports they sign by its hash.
CREATE TABLE signatures (
    user_id     INTEGER PRIMARY KEY NOT NULL REFERENCES users (id),
    mime        TEXT    NOT NULL,
    image       BLOB    NOT NULL,
    sha256      TEXT    NOT NULL,
    uploaded_at INTEGER NOT NULL
);
