//! `appliance demo-data`: a small alliance to try every journey on: a city hospital with a
//! campus and two clinics, departments, the three separated administrators, centre staff,
//! experts with profiles and tomorrow's slots, doctors, patients, and two consultation drafts
//! with images. The images are synthetic studies the project writes as real DICOM (a head CT
//! phantom; a chest CR and a carotid ultrasound cine) and stores through imaging's import, so
//! the demo needs nothing outside the repository; `--series` imports given DICOM instead and
//! attaches it to the first draft. It fills an empty database only, and prints each login with
//! its one-time password: no password is built in.

use std::fmt::Write as _;
use std::path::PathBuf;

use firmware_config::Config;
use sqlx::SqlitePool;
use workflow::{Consultation, ConsultationKind, Mode, Role};

use crate::accounts::{self, AccountError, now_ms};

/// The demo's 王建国 has an identity card on record (a valid, made-up number), so a search by
/// it finds him.
pub const WANG_ID_NUMBER: &str = "330102195603140019";

/// Why the demo could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The database already holds an alliance.
    #[error("the database already has institutions: demo-data fills an empty one")]
    NotEmpty,
    /// An account step failed.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Importing the series failed.
    #[error("import: {0}")]
    Import(String),
    /// The demo clinical record was refused by the intake (its acknowledgement).
    #[error("the demo clinical record was refused: {0}")]
    Record(String),
}

/// Builds the demo alliance; returns the text to print (logins and what was made).
pub async fn build(
    config: &Config,
    pool: &SqlitePool,
    sealer: &crate::gm::Sealer,
    series: &[PathBuf],
) -> Result<String, DemoError> {
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM institutions")
        .fetch_one(pool)
        .await?;
    if existing > 0 {
        return Err(DemoError::NotEmpty);
    }
    let mut out = String::new();
    let hospital = accounts::add_institution(pool, "市第一人民医院", "hospital", None).await?;
    accounts::add_institution(pool, "市第一人民医院东院区", "campus", Some(hospital)).await?;
    let east =
        accounts::add_institution(pool, "城东社区卫生服务中心", "clinic", Some(hospital)).await?;
    let west = accounts::add_institution(pool, "城西乡镇卫生院", "clinic", Some(hospital)).await?;
    let mut departments = Vec::new();
    for name in ["神经内科", "影像科", "心血管内科", "病理科"] {
        let id = sqlx::query("INSERT INTO departments (institution_id, name) VALUES (?, ?)")
            .bind(hospital)
            .bind(name)
            .execute(pool)
            .await?
            .last_insert_rowid();
        departments.push(id);
    }
    let people: [(&str, &str, Role, i64, &str); 13] = [
        ("sys.admin", "系统管理员", Role::SystemAdmin, hospital, ""),
        ("sec.admin", "安全管理员", Role::SecurityAdmin, hospital, ""),
        ("audit.admin", "审计管理员", Role::AuditAdmin, hospital, ""),
        (
            "hosp.admin",
            "医院管理员",
            Role::InstitutionAdmin,
            hospital,
            "",
        ),
        ("centre.zhou", "周会诊中心", Role::Coordinator, hospital, ""),
        ("qc.wu", "吴质控", Role::QcReviewer, hospital, ""),
        (
            "referral.zheng",
            "郑转诊中心",
            Role::ReferralStaff,
            hospital,
            "",
        ),
        ("expert.li", "李主任", Role::Expert, hospital, "13900000001"),
        (
            "expert.wang",
            "王主任",
            Role::Expert,
            hospital,
            "13900000002",
        ),
        (
            "expert.chen",
            "陈主任",
            Role::Expert,
            hospital,
            "13900000003",
        ),
        ("doctor.sun", "孙医生", Role::Doctor, hospital, ""),
        ("doctor.zhao", "赵医生", Role::Doctor, east, "13800000001"),
        ("doctor.qian", "钱医生", Role::Doctor, west, "13800000002"),
    ];
    let _ = writeln!(
        out,
        "演示账号 / demo logins (one-time passwords: change at first login;"
    );
    let _ = writeln!(out, "administrators also set up a TOTP second factor):");
    let mut ids = std::collections::BTreeMap::new();
    for (login, name, role, institution, phone) in people {
        let (id, password) = accounts::add_user(pool, login, name, role, institution).await?;
        accounts::set_phone(pool, sealer, id, phone).await?;
        ids.insert(login, id);
        let _ = writeln!(
            out,
            "  {login:<16} {password}  {:<18} {name}",
            accounts::role_name(role)
        );
    }
    // Experts: profiles and tomorrow's slots from 09:00 China time.
    let tomorrow_nine = {
        let day = 86_400_000;
        let china = now_ms() + 8 * 3_600_000;
        (china.div_euclid(day) + 1) * day + 9 * 3_600_000 - 8 * 3_600_000
    };
    for (login, dept, title, specialties) in [
        ("expert.li", departments[0], "主任医师", "卒中,癫痫"),
        (
            "expert.wang",
            departments[1],
            "主任医师",
            "神经影像,胸部影像",
        ),
        ("expert.chen", departments[2], "副主任医师", "冠心病,心电图"),
    ] {
        let id = ids[login];
        sqlx::query(
            "INSERT INTO experts (user_id, department_id, title, specialties, profile) VALUES \
             (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(dept)
        .bind(title)
        .bind(specialties)
        .bind(format!("{title}，擅长{specialties}"))
        .execute(pool)
        .await?;
        for k in 0..4 {
            sqlx::query(
                "INSERT INTO expert_slots (expert_id, starts_at, minutes) VALUES (?, ?, 30)",
            )
            .bind(id)
            .bind(tomorrow_nine + k * 30 * 60_000)
            .execute(pool)
            .await?;
        }
    }
    // Patients at the two clinics; the record number is the images' DICOM Patient ID.
    let mut patients = Vec::new();
    for (name, sex, birth, institution, doctor, id_number) in [
        (
            "王建国",
            "M",
            "1956-03-14",
            east,
            "doctor.zhao",
            Some(WANG_ID_NUMBER),
        ),
        ("李秀英", "F", "1962-08-02", east, "doctor.zhao", None),
        ("张伟", "M", "1978-11-23", east, "doctor.zhao", None),
        ("刘芳", "F", "1985-05-30", west, "doctor.qian", None),
        ("陈明", "M", "1949-12-08", west, "doctor.qian", None),
    ] {
        let master =
            sqlx::query("INSERT INTO master_patients (id_number, id_number_index) VALUES (?, ?)")
                .bind(id_number.map(|n| sealer.seal("id_number", n)))
                .bind(id_number.map(|n| sealer.index("id_number", n)))
                .execute(pool)
                .await?
                .last_insert_rowid();
        let record_number = format!("DEMO{:04}", patients.len() + 1);
        let id = sqlx::query(
            "INSERT INTO patients (institution_id, name, sex, birth_date, phone, created_by, \
             created_at, master_id, record_number) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)",
        )
        .bind(institution)
        .bind(name)
        .bind(sex)
        .bind(birth)
        .bind(ids[doctor])
        .bind(now_ms())
        .bind(master)
        .bind(record_number)
        .execute(pool)
        .await?
        .last_insert_rowid();
        patients.push(id);
    }
    // Imaging: the given series, or the synthetic studies, through imaging's import.
    let (ct, chest) = if series.is_empty() {
        let (ct, chest, summary) = synthetic_studies(config).await?;
        let _ = write!(out, "\n影像 / imaging (synthetic): {summary}");
        (ct, chest)
    } else {
        let summary = imaging::store::import::import(config, series)
            .await
            .map_err(|e| DemoError::Import(e.to_string()))?;
        let _ = write!(out, "\n影像 / imaging: {summary}");
        (summary.studies.into_iter().collect(), Vec::new())
    };
    let stroke = Draft {
        patient: patients[0],
        institution: east,
        applicant: ids["doctor.zhao"],
        reason: "突发言语不清、右侧肢体无力 3 小时",
        question: "头颅 CT 是否提示急性脑梗死？是否适合溶栓？",
        diagnosis: "I63.9",
        studies: ct,
    };
    let chest_pain = Draft {
        patient: patients[3],
        institution: west,
        applicant: ids["doctor.qian"],
        reason: "活动后胸闷 2 周，左颈部血管杂音",
        question: "胸片有无异常？颈动脉有无斑块、狭窄？",
        diagnosis: "R07.4",
        studies: chest,
    };
    let mut attached = Vec::new();
    for draft in [stroke, chest_pain] {
        attached.push(draft.insert(pool).await?);
    }
    // 王建国's clinical record, as the clinic's systems send it over HL7.
    let fed = crate::demo_record::feed(pool, sealer)
        .await
        .map_err(DemoError::Record)?;
    let _ = write!(
        out,
        "\n病历 / clinical record (HL7, 王建国): {fed} messages"
    );
    let _ = writeln!(
        out,
        "\n机构 4 个、科室 4 个、专家 3 位（明日 09:00 起各 4 个号源）、患者 5 位、会诊草稿 2 份。\n\
         4 institutions, 4 departments, 3 experts (4 slots each from 09:00 tomorrow), 5 \
         patients, 2 consultation drafts (studies attached: {}).",
        attached
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    );
    Ok(out)
}

/// A consultation draft to insert.
struct Draft {
    patient: i64,
    institution: i64,
    applicant: i64,
    reason: &'static str,
    question: &'static str,
    diagnosis: &'static str,
    studies: Vec<String>,
}

impl Draft {
    /// Inserts the draft; returns how many studies it attaches.
    async fn insert(self, pool: &SqlitePool) -> Result<usize, DemoError> {
        let mut c = Consultation::draft(
            &workflow::Actor {
                user: self.applicant,
                role: Role::Doctor,
                institution: self.institution,
            },
            ConsultationKind::Remote,
            Mode::Appointment,
        )
        .map_err(|e| DemoError::Import(e.to_string()))?;
        c.reason = self.reason.into();
        c.question = self.question.into();
        c.diagnosis = self.diagnosis.into();
        c.studies = self.studies;
        let data = serde_json::to_string(&c).map_err(|e| DemoError::Import(e.to_string()))?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO consultations (patient_id, institution_id, applicant_id, state, \
             version, data, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
        )
        .bind(self.patient)
        .bind(self.institution)
        .bind(self.applicant)
        .bind(c.state.name())
        .bind(data)
        .bind(now)
        .bind(now)
        .execute(pool)
        .await?;
        Ok(c.studies.len())
    }
}

/// Writes the synthetic studies as DICOM files into a folder under the data directory,
/// imports them as `imaging import` does, and removes the folder: the head CT's study, the
/// chest CR's and carotid ultrasound's studies, and what the import did.
async fn synthetic_studies(
    config: &Config,
) -> Result<(Vec<String>, Vec<String>, imaging::store::import::Summary), DemoError> {
    use imaging::dicom::synthetic::{self, Patient, Uids};
    let import = |e: &dyn std::fmt::Display| DemoError::Import(e.to_string());
    // UIDs under 2.25 from the clock and the process: new ones for every demo.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| import(&e))?
        .as_nanos();
    let mut uids = Uids::new((nanos << 32) ^ u128::from(std::process::id()));
    let wang = Patient {
        id: "DEMO0001",
        name: "王^建国",
        sex: "M",
        birth_date: "19560314",
    };
    let liu = Patient {
        id: "DEMO0004",
        name: "刘^芳",
        sex: "F",
        birth_date: "19850530",
    };
    let ct = synthetic::ct_head(wang, &mut uids, 40).map_err(|e| import(&e))?;
    let cr = synthetic::cr_chest(liu, &mut uids).map_err(|e| import(&e))?;
    let us = synthetic::us_cine(liu, &mut uids, 24).map_err(|e| import(&e))?;
    let dir = config.storage.data_dir.join("demo-dicom");
    let folder = |name: &str| dir.join(name);
    let result = async {
        for (sub, files) in [("ct", &ct[..]), ("chest", &[cr, us][..])] {
            tokio::fs::create_dir_all(folder(sub))
                .await
                .map_err(|e| import(&e))?;
            for f in files {
                tokio::fs::write(folder(sub).join(&f.name), &f.bytes)
                    .await
                    .map_err(|e| import(&e))?;
            }
        }
        let ct = imaging::store::import::import(config, &[folder("ct")])
            .await
            .map_err(|e| import(&e))?;
        let chest = imaging::store::import::import(config, &[folder("chest")])
            .await
            .map_err(|e| import(&e))?;
        if !(ct.rejected.is_empty() && chest.rejected.is_empty()) {
            return Err(DemoError::Import(format!(
                "synthetic files refused: {:?}",
                [ct.rejected, chest.rejected].concat()
            )));
        }
        let mut summary = ct.clone();
        summary.stored += chest.stored;
        summary.duplicates += chest.duplicates;
        summary.bytes += chest.bytes;
        summary.studies.extend(chest.studies.iter().cloned());
        Ok((
            ct.studies.into_iter().collect(),
            chest.studies.into_iter().collect(),
            summary,
        ))
    }
    .await;
    // The files are in the store now (or were refused): the folder goes either way.
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result
}
