-- The data centre's master data: departments, experts with their schedules, patients'
-- identifiers linked to one master record, and favourite patients.
CREATE TABLE departments (
    id             INTEGER PRIMARY KEY NOT NULL,
    institution_id INTEGER NOT NULL REFERENCES institutions (id),
    name           TEXT    NOT NULL,
    UNIQUE (institution_id, name)
);

CREATE TABLE experts (
    user_id       INTEGER PRIMARY KEY NOT NULL REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    title         TEXT    NOT NULL DEFAULT '',
    specialties   TEXT    NOT NULL DEFAULT '',
    profile       TEXT    NOT NULL DEFAULT ''
);

-- Bookable time: a slot is free until a consultation books it.
CREATE TABLE expert_slots (
    id              INTEGER PRIMARY KEY NOT NULL,
    expert_id       INTEGER NOT NULL REFERENCES users (id),
    starts_at       INTEGER NOT NULL,
    minutes         INTEGER NOT NULL,
    consultation_id INTEGER REFERENCES consultations (id),
    UNIQUE (expert_id, starts_at)
);
CREATE INDEX expert_slots_free ON expert_slots (expert_id, consultation_id, starts_at);

-- One master record per person, found by the resident identity card number.
CREATE TABLE master_patients (
    id        INTEGER PRIMARY KEY NOT NULL,
    id_number TEXT    UNIQUE
);
ALTER TABLE patients ADD COLUMN master_id INTEGER REFERENCES master_patients (id);
ALTER TABLE patients ADD COLUMN record_number TEXT NOT NULL DEFAULT '';
CREATE INDEX patients_master ON patients (master_id);

CREATE TABLE favourite_patients (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    PRIMARY KEY (user_id, patient_id)
);
