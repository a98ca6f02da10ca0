-- The institution a study comes from: the Institution Name (0008,0080) of its first instance
-- that names one. Service accounts scoped to institutions see only their studies. Studies
-- stored before this migration take it from their instances' metadata.
ALTER TABLE studies ADD COLUMN institution_name TEXT NOT NULL DEFAULT '';
UPDATE studies SET institution_name = COALESCE((
    SELECT json_extract(i.metadata, '$."00080080".Value[0]')
    FROM instances i JOIN series se ON se.series_uid = i.series_uid
    WHERE se.study_uid = studies.study_uid
      AND json_extract(i.metadata, '$."00080080".Value[0]') <> ''
    LIMIT 1), '');
CREATE INDEX studies_institution ON studies (institution_name);
