-- Report templates beyond the built-in ones, configured by the consultation centre or the
-- system administrator. Kept once used (reports name their template by key).
CREATE TABLE report_templates (
    key        TEXT    PRIMARY KEY NOT NULL,
    title      TEXT    NOT NULL,
    sections   TEXT    NOT NULL, -- JSON: [[key, title], ...]
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
);
