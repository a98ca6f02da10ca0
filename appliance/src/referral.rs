//! Referrals up and down over HTTP, around `workflow::Referral` and the shared shell in
//! `cases`: the referring doctor applies for a patient of their institution; the referral
//! centre checks and assigns a receiving institution, department and (optionally) doctor; the
//! receiving side accepts or refuses with feedback, then records the arrival. The receiving
//! side reads the patient's records only while the referral's grant lasts.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use workflow::{Actor, Direction, Millis, Notice, Referral, ReferralAction, Refusal, Role};

use crate::accounts::User;
use crate::cases::{Flow, act, actor, audit_event, get_one, list, refusal};
use crate::http::{Api, ApiError, body, user};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/api/v1/referrals",
            post(create_referral).get(list::<Referral>),
        )
        .route("/api/v1/referrals/{id}", get(get_one::<Referral>))
        .route("/api/v1/referrals/{id}/actions", post(act::<Referral>))
        .route(
            "/api/v1/referrals/{id}/view-token",
            post(crate::cases::view_token::<Referral>),
        )
        .route(
            "/api/v1/referrals/{id}/admission-slip.pdf",
            get(admission_slip),
        )
}

/// The referral centre and quality control see every referral.
fn centre(role: Role) -> bool {
    matches!(role, Role::ReferralStaff | Role::QcReviewer)
}

impl Flow for Referral {
    type Action = ReferralAction;
    const KIND: &'static str = "referral";
    const LABEL: &'static str = "转诊";
    const LOCK: &'static str = "UPDATE referrals SET version = version WHERE id = ?";
    const LOAD: &'static str = "SELECT id, patient_id, version, data FROM referrals WHERE id = ?";
    const SAVE: &'static str = "UPDATE referrals SET state = ?, version = version + 1, data = ?, \
         updated_at = ? WHERE id = ? AND version = ?";
    const LIST: &'static str = "SELECT c.id, c.patient_id, c.version, c.data FROM referrals c \
         WHERE (? OR EXISTS (SELECT 1 FROM case_parties p WHERE p.kind = 'referral' AND \
         p.case_id = c.id AND p.party IN (?, ?)) OR c.applicant_id = ?) \
         AND (? IS NULL OR c.state = ?) ORDER BY c.id DESC LIMIT ? OFFSET ?";

    fn action_name(action: &ReferralAction) -> &'static str {
        action.name()
    }

    fn apply(
        &mut self,
        actor: &Actor,
        action: ReferralAction,
        now: Millis,
    ) -> Result<Vec<Notice>, Refusal> {
        Referral::apply(self, actor, action, now)
    }

    fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn visible_to(&self, u: &User) -> bool {
        self.applicant == u.id
            || centre(u.role)
            || matches!(u.role, Role::Doctor | Role::Expert)
                && self
                    .receiver
                    .is_some_and(|(institution, _, _)| institution == u.institution)
    }

    fn parties(&self) -> Vec<String> {
        match self.receiver {
            Some((institution, _, doctor)) => std::iter::once(format!("institution:{institution}"))
                .chain(doctor.map(|d| format!("user:{d}")))
                .collect(),
            None => Vec::new(),
        }
    }

    fn sees_all(role: Role) -> bool {
        centre(role)
    }

    fn studies(&self) -> &[String] {
        &self.studies
    }

    /// The referring side always; the receiving side while the grant lasts.
    fn may_view(&self, u: &User, now: Millis) -> (bool, Option<Millis>) {
        if self.applicant == u.id || centre(u.role) {
            (true, None)
        } else {
            (self.may_read_records(&actor(u), now), self.grant_until)
        }
    }
}

const INSERT: &str = "INSERT INTO referrals (patient_id, institution_id, applicant_id, state, \
     version, data, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReferral {
    patient: i64,
    direction: Direction,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    diagnosis: String,
    /// Study Instance UIDs shared with the receiving side.
    #[serde(default)]
    studies: Vec<String>,
    /// Clinical record items shared with the receiving side (`kind:id`).
    #[serde(default)]
    records: Vec<String>,
    /// How long the receiving side may read the records, from submission (default 72 h).
    #[serde(default = "default_grant_hours")]
    grant_hours: i64,
    /// The receiving institution the doctor proposes (with a department of it).
    #[serde(default)]
    proposed_institution: Option<i64>,
    /// The receiving department the doctor proposes.
    #[serde(default)]
    proposed_department: Option<i64>,
}

fn default_grant_hours() -> i64 {
    72
}

async fn create_referral(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    let b: NewReferral = body(&bytes)?;
    if !crate::cases::patient_at(&api, b.patient, u.institution).await? {
        return Err(ApiError::field(
            "patient",
            "no such patient at the referring institution",
        ));
    }
    let minutes = b.grant_hours.checked_mul(60).unwrap_or(-1);
    let mut r = Referral::draft(&actor(&u), b.direction, minutes).map_err(|e| match e {
        Refusal::Field { .. } => ApiError::field("grant_hours", "between 1 and 2160 hours"),
        other => refusal(other),
    })?;
    r.reason = b.reason;
    r.diagnosis = b.diagnosis;
    if let Some(bad) = b.studies.iter().find(|s| !imaging::uid::is_valid(s)) {
        return Err(ApiError::field(
            "studies",
            format!("{bad:?} is not a Study Instance UID"),
        ));
    }
    r.studies = b.studies;
    r.records = workflow::check_records(b.records).map_err(refusal)?;
    r.proposed = match (b.proposed_institution, b.proposed_department) {
        (None, None) => None,
        (Some(i), Some(d)) => {
            if i == u.institution {
                return Err(ApiError::field(
                    "proposed_institution",
                    "a referral goes to another institution",
                ));
            }
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM departments WHERE id = ? AND institution_id = ?",
            )
            .bind(d)
            .bind(i)
            .fetch_optional(&api.pool)
            .await?;
            if found.is_none() {
                return Err(ApiError::field(
                    "proposed_department",
                    "not a department of the proposed institution",
                ));
            }
            Some((i, d))
        }
        (None, Some(_)) => {
            return Err(ApiError::field(
                "proposed_institution",
                "name the institution of the proposed department",
            ));
        }
        (Some(_), None) => {
            return Err(ApiError::field(
                "proposed_department",
                "name a department of the proposed institution",
            ));
        }
    };
    crate::cases::create(&api, &u, &peer, INSERT, b.patient, &r).await
}

/// The electronic admission slip of an accepted referral, as a PDF for the patient to bring.
async fn admission_slip(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    use crate::pdf::Block;
    use crate::reports::{china_time, institution_name, name_of, patient_line, pdf_response};
    use workflow::ReferralState as S;
    let u = crate::tickets::user_for_document(&api, &headers, &uri).await?;
    let mut conn = api.pool.acquire().await?;
    let (patient, _, r) = crate::cases::load::<Referral>(&mut conn, &u, id).await?;
    drop(conn);
    let Some((institution, department, doctor)) = r.receiver else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_accepted",
            "the referral is not accepted yet",
        ));
    };
    if !matches!(r.state, S::Accepted | S::Arrived | S::Closed) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_accepted",
            format!(
                "the referral is {}; the slip exists once it is accepted",
                r.state.name()
            ),
        ));
    }
    let accepted_at = r
        .history
        .iter()
        .rev()
        .find(|e| e.action == "accept")
        .map(|e| china_time(e.at))
        .unwrap_or_default();
    let doctor = match doctor {
        Some(d) => name_of(&api, d).await?,
        None => "由接收科室安排".to_owned(),
    };
    let blocks = vec![
        Block::Title("双向转诊入院通知单".into()),
        Block::Field("转诊编号".into(), id.to_string()),
        Block::Field(
            "转诊方向".into(),
            match r.direction {
                Direction::Up => "上转（基层转上级）".into(),
                Direction::Down => "下转（上级转基层）".into(),
            },
        ),
        Block::Field("患者".into(), patient_line(&api, patient).await?),
        Block::Field("转出机构".into(), institution_name(&api, r.institution).await?),
        Block::Field("转出医生".into(), name_of(&api, r.applicant).await?),
        Block::Field("转入机构".into(), institution_name(&api, institution).await?),
        Block::Field("接收科室".into(), format!("科室 {department}")),
        Block::Field("接收医生".into(), doctor),
        Block::Field("接收时间".into(), accepted_at),
        Block::Field("初步诊断".into(), r.diagnosis.clone()),
        Block::Heading("转诊原因".into()),
        Block::Text(r.reason.clone()),
        Block::Heading("入院须知".into()),
        Block::Text(
            "请患者持本通知单、身份证、医保卡及既往检查资料，于接收后三日内到接收科室办理入院手续。\n\
             转出机构共享的病历与影像在授权期内可由接收方查阅。"
                .into(),
        ),
    ];
    let footer = format!(
        "{}  打印时间 {}",
        api.site,
        china_time(crate::accounts::now_ms())
    );
    let bytes = crate::pdf::render(&blocks, &footer).map_err(ApiError::internal)?;
    audit_event(&api, &u, &peer, "print", format!("referral:{id}"), "ok").await?;
    Ok(pdf_response(
        bytes,
        &format!("referral-{id}-admission-slip"),
    ))
}
