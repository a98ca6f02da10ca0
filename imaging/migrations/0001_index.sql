-- The DICOM index: one row per study, series and instance kept under DATA_DIR/dicom, with the
-- attributes QIDO-RS and C-FIND match on. Each instance row also holds its DICOM JSON metadata
-- (bulk data by reference), so WADO-RS metadata never opens the files.
CREATE TABLE studies (
    study_uid                TEXT PRIMARY KEY NOT NULL,
    patient_id               TEXT NOT NULL DEFAULT '',
    patient_name             TEXT NOT NULL DEFAULT '',
    patient_birth_date       TEXT NOT NULL DEFAULT '',
    patient_sex              TEXT NOT NULL DEFAULT '',
    study_date               TEXT NOT NULL DEFAULT '',
    study_time               TEXT NOT NULL DEFAULT '',
    accession_number         TEXT NOT NULL DEFAULT '',
    study_id                 TEXT NOT NULL DEFAULT '',
    referring_physician_name TEXT NOT NULL DEFAULT '',
    study_description        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX studies_patient_id ON studies (patient_id);
CREATE INDEX studies_study_date ON studies (study_date);
CREATE INDEX studies_accession ON studies (accession_number);

CREATE TABLE series (
    series_uid         TEXT PRIMARY KEY NOT NULL,
    study_uid          TEXT NOT NULL REFERENCES studies (study_uid),
    modality           TEXT NOT NULL DEFAULT '',
    series_number      INTEGER,
    series_description TEXT NOT NULL DEFAULT '',
    body_part_examined TEXT NOT NULL DEFAULT '',
    pps_start_date     TEXT NOT NULL DEFAULT '',
    pps_start_time     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX series_study ON series (study_uid);

CREATE TABLE instances (
    sop_instance_uid TEXT PRIMARY KEY NOT NULL,
    series_uid       TEXT NOT NULL REFERENCES series (series_uid),
    sop_class_uid    TEXT NOT NULL,
    instance_number  INTEGER,
    rows             INTEGER,
    columns          INTEGER,
    bits_allocated   INTEGER,
    frames           INTEGER,
    transfer_syntax  TEXT NOT NULL,
    file             TEXT NOT NULL UNIQUE,
    size             INTEGER NOT NULL,
    received_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    metadata         TEXT NOT NULL
);
CREATE INDEX instances_series ON instances (series_uid, instance_number);
