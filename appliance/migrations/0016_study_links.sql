-- Imaging studies pulled from a clinic's cloud PACS (integration.dicomweb_sources), each linked
-- to the patient its Patient ID names in the source's institution; `instances` is how many the
-- source held when the study was last taken whole, so a study that grows is pulled again.
CREATE TABLE study_links (
    study_uid  TEXT    PRIMARY KEY NOT NULL,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    source     TEXT    NOT NULL,
    instances  INTEGER NOT NULL,
    linked_at  INTEGER NOT NULL
);
CREATE INDEX study_links_patient ON study_links (patient_id);
