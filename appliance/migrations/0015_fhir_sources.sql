-- FHIR sources pulled into the clinical record: which local patient each remote Patient is,
-- and how far each resource type has been read (the newest meta.lastUpdated taken), so a pull
-- that stops resumes where it was.
CREATE TABLE fhir_links (
    source     TEXT    NOT NULL,
    remote     TEXT    NOT NULL,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    PRIMARY KEY (source, remote)
);

CREATE TABLE fhir_cursors (
    source     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    cursor     TEXT    NOT NULL,
    pulled     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, kind)
);
