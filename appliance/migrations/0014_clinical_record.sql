-- The clinical record fed by the hospital's systems (HL7 v2 now; FHIR sources later): each
-- row keeps its provenance (source system, message or resource id, received time, ms since
-- the epoch). Every message taken is kept once per (source, control id), sealed.
CREATE TABLE hl7_messages (
    id          INTEGER PRIMARY KEY NOT NULL,
    source      TEXT    NOT NULL,
    control_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    patient_id  INTEGER REFERENCES patients (id),
    received_at INTEGER NOT NULL,
    raw         TEXT    NOT NULL,
    UNIQUE (source, control_id)
);

-- A patient merged into another (HL7 A40) points at the one that remains.
ALTER TABLE patients ADD COLUMN merged_into INTEGER REFERENCES patients (id);

CREATE TABLE encounters (
    id            INTEGER PRIMARY KEY NOT NULL,
    patient_id    INTEGER NOT NULL REFERENCES patients (id),
    visit_number  TEXT    NOT NULL,
    class         TEXT    NOT NULL,
    location      TEXT    NOT NULL,
    department    TEXT    NOT NULL,
    attending     TEXT    NOT NULL,
    admitted_at   INTEGER,
    discharged_at INTEGER,
    source        TEXT    NOT NULL,
    source_ref    TEXT    NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (patient_id, source, visit_number)
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY NOT NULL,
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    kind        TEXT    NOT NULL CHECK (kind IN ('lab', 'exam', 'medication')),
    placer      TEXT    NOT NULL,
    filler      TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    system      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    ordered_at  INTEGER,
    provider    TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    source_ref  TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (patient_id, source, placer, filler)
);

CREATE TABLE lab_results (
    id          INTEGER PRIMARY KEY NOT NULL,
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    order_id    INTEGER REFERENCES orders (id),
    code        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    system      TEXT    NOT NULL,
    value_type  TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    numeric     REAL,
    unit        TEXT    NOT NULL,
    range_text  TEXT    NOT NULL,
    low         REAL,
    high        REAL,
    flag        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    specimen    TEXT    NOT NULL,
    observed_at INTEGER,
    source      TEXT    NOT NULL,
    source_ref  TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
-- The trend of one analyte reads from this index alone.
CREATE INDEX lab_results_trend ON lab_results (patient_id, code, observed_at, numeric, flag, low, high, value);
CREATE INDEX lab_results_order ON lab_results (order_id);

CREATE TABLE exam_reports (
    id          INTEGER PRIMARY KEY NOT NULL,
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    order_id    INTEGER REFERENCES orders (id),
    kind        TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    pdf         BLOB,
    observed_at INTEGER,
    reported_at INTEGER,
    source      TEXT    NOT NULL,
    source_ref  TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX exam_reports_patient ON exam_reports (patient_id, observed_at);
CREATE INDEX exam_reports_order ON exam_reports (order_id);

CREATE TABLE clinical_documents (
    id          INTEGER PRIMARY KEY NOT NULL,
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    kind        TEXT    NOT NULL,
    number      TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    mime        TEXT    NOT NULL,
    content     BLOB    NOT NULL,
    time        INTEGER,
    source      TEXT    NOT NULL,
    source_ref  TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (patient_id, source, number)
);

CREATE TABLE diagnoses (
    id          INTEGER PRIMARY KEY NOT NULL,
    patient_id  INTEGER NOT NULL REFERENCES patients (id),
    code        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    system      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    time        INTEGER,
    source      TEXT    NOT NULL,
    source_ref  TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (patient_id, code, kind, source)
);

CREATE TABLE patient_merges (
    id          INTEGER PRIMARY KEY NOT NULL,
    survivor_id INTEGER NOT NULL REFERENCES patients (id),
    merged_id   INTEGER NOT NULL REFERENCES patients (id),
    moved       TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    source_ref  TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
