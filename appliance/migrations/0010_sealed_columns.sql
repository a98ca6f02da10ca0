-- Sensitive columns sealed at rest (SM4-GCM, `gm.rs`): identity card numbers, and the phone
-- numbers of users, patients and the SMS outbox, are stored as `sm4gcm:...`; an identity card
-- number is found by its blind index (HMAC-SM3), which keeps one master record per person.
-- Rows written before this migration are sealed when the database is next opened.
ALTER TABLE master_patients ADD COLUMN id_number_index TEXT;
CREATE UNIQUE INDEX master_patients_id_number_index ON master_patients (id_number_index);
