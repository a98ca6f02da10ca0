//! Referrals up and down over HTTP, around `workflow::Referral` and the shared shell in
//! `cases`: the referring doctor applies for a patient of their institution; the referral
//! centre checks and assigns a receiving institution, department and (optionally) doctor; the
//! receiving side accepts or refuses with feedback, then records the arrival. The receiving
//! side reads the patient's records only while the referral's grant lasts.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use workflow::{Actor, Direction, Millis, Notice, Referral, ReferralAction, Refusal, Role};

use crate::accounts::User;
use crate::api::{Api, ApiError, body, user};
use crate::cases::{
    Flow, act, actor, audit_event, get_one, insert, list, refusal, view, with_etag,
};

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/api/v1/referrals",
            post(create_referral).get(list::<Referral>),
        )
        .route("/api/v1/referrals/{id}", get(get_one::<Referral>))
        .route("/api/v1/referrals/{id}/actions", post(act::<Referral>))
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
    /// How long the receiving side may read the records, from submission (default 72 h).
    #[serde(default = "default_grant_hours")]
    grant_hours: i64,
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
    let patient: Option<i64> =
        sqlx::query_scalar("SELECT institution_id FROM patients WHERE id = ?")
            .bind(b.patient)
            .fetch_optional(&api.pool)
            .await?;
    if patient != Some(u.institution) {
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
    let id = insert(&api, INSERT, b.patient, &u, &r).await?;
    audit_event(&api, &u, &peer, "create", format!("referral:{id}"), "ok").await?;
    Ok(with_etag(
        1,
        view(id, b.patient, 1, &r),
        StatusCode::CREATED,
    ))
}
