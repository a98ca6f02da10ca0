-- The feeds find a patient by record number within the institution on every message: without
-- this index each lookup read every patient of the institution. It also serves every query
-- by institution alone, so the index on institution_id goes.
DROP INDEX patients_institution;
CREATE INDEX patients_record ON patients (institution_id, record_number);
