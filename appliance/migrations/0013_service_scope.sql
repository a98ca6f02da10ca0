-- The institutions a service account reads (a JSON array of institution ids; empty: every
-- study). Its token names them by name, which imaging matches against each study's
-- Institution Name (0008,0080).
ALTER TABLE service_accounts ADD COLUMN institutions TEXT NOT NULL DEFAULT '[]';
