//! `appliance demo-data`: a small alliance to try every journey on: a city hospital with a
//! campus and two clinics, departments, the three separated administrators, centre staff,
//! experts with profiles and tomorrow's slots, doctors, patients, and a consultation draft
//! (with the imported studies attached when a series folder is given). It fills an empty
//! database only, and prints each login with its one-time password: no password is built in.

use std::fmt::Write as _;
use std::path::PathBuf;

use firmware_config::Config;
use sqlx::SqlitePool;
use workflow::{Consultation, ConsultationKind, Mode, Role};

use crate::accounts::{self, AccountError, now_ms};

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
}

/// Builds the demo alliance; returns the text to print (logins and what was made).
pub async fn build(
    config: &Config,
    pool: &SqlitePool,
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
        accounts::set_phone(pool, id, phone).await?;
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
    // Patients at the two clinics.
    let mut first_patient = None;
    for (name, sex, birth, institution, doctor) in [
        ("王建国", "M", "1956-03-14", east, "doctor.zhao"),
        ("李秀英", "F", "1962-08-02", east, "doctor.zhao"),
        ("张伟", "M", "1978-11-23", east, "doctor.zhao"),
        ("刘芳", "F", "1985-05-30", west, "doctor.qian"),
        ("陈明", "M", "1949-12-08", west, "doctor.qian"),
    ] {
        let master = sqlx::query("INSERT INTO master_patients (id_number) VALUES (NULL)")
            .execute(pool)
            .await?
            .last_insert_rowid();
        let id = sqlx::query(
            "INSERT INTO patients (institution_id, name, sex, birth_date, phone, created_by, \
             created_at, master_id) VALUES (?, ?, ?, ?, '', ?, ?, ?)",
        )
        .bind(institution)
        .bind(name)
        .bind(sex)
        .bind(birth)
        .bind(ids[doctor])
        .bind(now_ms())
        .bind(master)
        .execute(pool)
        .await?
        .last_insert_rowid();
        first_patient.get_or_insert(id);
    }
    // Imaging: the series, and a consultation draft that attaches them.
    let mut studies = Vec::new();
    if !series.is_empty() {
        let summary = imaging::store::import::import(&config.storage.data_dir, series)
            .await
            .map_err(|e| DemoError::Import(e.to_string()))?;
        let _ = write!(out, "\n影像 / imaging: {summary}");
        studies = summary.studies.into_iter().collect();
    }
    let zhao = ids["doctor.zhao"];
    let mut c = Consultation::draft(
        &workflow::Actor {
            user: zhao,
            role: Role::Doctor,
            institution: east,
        },
        ConsultationKind::Remote,
        Mode::Appointment,
    )
    .map_err(|e| DemoError::Import(e.to_string()))?;
    c.reason = "突发言语不清、右侧肢体无力 3 小时".into();
    c.question = "头颅 CT 是否提示急性脑梗死？是否适合溶栓？".into();
    c.diagnosis = "I63.9".into();
    c.studies = studies;
    let data = serde_json::to_string(&c).map_err(|e| DemoError::Import(e.to_string()))?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO consultations (patient_id, institution_id, applicant_id, state, version, \
         data, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
    )
    .bind(first_patient)
    .bind(east)
    .bind(zhao)
    .bind(c.state.name())
    .bind(data)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await?;
    let _ = writeln!(
        out,
        "\n机构 4 个、科室 4 个、专家 3 位（明日 09:00 起各 4 个号源）、患者 5 位、会诊草稿 1 份。\n\
         4 institutions, 4 departments, 3 experts (4 slots each from 09:00 tomorrow), 5 \
         patients, 1 consultation draft (studies attached: {}).",
        c.studies.len()
    );
    Ok(out)
}
