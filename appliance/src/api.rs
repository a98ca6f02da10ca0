//! The route table of `/api/v1`: every module's routes merged top-down with the handlers'
//! state, and `ROUTES`, the list the OpenAPI document must describe (a unit test in
//! `openapi.rs` holds them equal). State, errors and extractors live in `http.rs`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

pub use crate::http::{Api, ApiError, Pushed};

/// Every API route ("METHOD path"), as the OpenAPI document must describe them.
pub const ROUTES: &[&str] = &[
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/logout",
    "POST /api/v1/auth/password",
    "POST /api/v1/auth/totp/setup",
    "POST /api/v1/auth/totp/confirm",
    "GET /api/v1/me",
    "GET /api/v1/token-key",
    "POST /api/v1/patients",
    "GET /api/v1/patients",
    "GET /api/v1/patients/{id}",
    "GET /api/v1/patients/{id}/studies",
    "GET /api/v1/patients/{id}/record",
    "GET /api/v1/patients/{id}/labs/trend",
    "GET /api/v1/patients/{id}/exam-reports/{report}/pdf",
    "GET /api/v1/patients/{id}/documents/{document}",
    "GET /api/v1/icd10",
    "POST /api/v1/consultations",
    "GET /api/v1/consultations",
    "GET /api/v1/consultations/{id}",
    "PUT /api/v1/consultations/{id}",
    "POST /api/v1/consultations/{id}/actions",
    "POST /api/v1/consultations/{id}/view-token",
    "POST /api/v1/consultations/{id}/room-token",
    "GET /api/v1/consultations/{id}/focus/ws",
    "POST /api/v1/referrals",
    "GET /api/v1/referrals",
    "GET /api/v1/referrals/{id}",
    "POST /api/v1/referrals/{id}/actions",
    "POST /api/v1/referrals/{id}/view-token",
    "GET /api/v1/notifications",
    "GET /api/v1/notifications/ws",
    "POST /api/v1/notifications/{id}/read",
    "POST /api/v1/users",
    "GET /api/v1/users",
    "POST /api/v1/users/{id}/unlock",
    "POST /api/v1/users/{id}/reset-password",
    "POST /api/v1/users/{id}/disable",
    "GET /api/v1/audit",
    "GET /api/v1/audit/verify",
    "POST /api/v1/sfu/admin-token",
    "GET /api/v1/statistics",
    "GET /api/v1/report-templates",
    "POST /api/v1/report-templates",
    "PUT /api/v1/me/signature",
    "PUT /api/v1/consultations/{id}/report",
    "GET /api/v1/consultations/{id}/report",
    "POST /api/v1/consultations/{id}/report/sign",
    "GET /api/v1/consultations/{id}/report/verify",
    "GET /api/v1/consultations/{id}/report/signed.zip",
    "GET /api/v1/consultations/{id}/report.pdf",
    "GET /api/v1/referrals/{id}/admission-slip.pdf",
    "GET /api/v1/institutions",
    "GET /api/v1/institutions/{id}/departments",
    "POST /api/v1/institutions/{id}/departments",
    "GET /api/v1/experts",
    "PUT /api/v1/experts/{id}",
    "GET /api/v1/experts/{id}/slots",
    "POST /api/v1/experts/{id}/slots",
    "POST /api/v1/consultations/{id}/book",
    "POST /api/v1/consultations/{id}/schedule-preview",
    "GET /api/v1/patients/{id}/linked",
    "POST /api/v1/tickets",
    "GET /api/v1/me/favourites",
    "PUT /api/v1/me/favourites/{patient}",
    "DELETE /api/v1/me/favourites/{patient}",
    "POST /api/v1/service-accounts",
    "GET /api/v1/service-accounts",
    "POST /api/v1/service-accounts/{id}/revoke",
];

/// The API routes.
pub fn routes(api: Api) -> Router {
    Router::new()
        .route(
            "/api/v1/token-key",
            get(|State(api): State<Api>| async move {
                Json(serde_json::json!({
                    "public_key": firmware_runtime::token::public_key_base64(&api.key),
                    "algorithm": "Ed25519",
                }))
            }),
        )
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .merge(crate::auth::routes())
        .merge(crate::consult::routes())
        .merge(crate::referral::routes())
        .merge(crate::admin::routes())
        .merge(crate::stats::routes())
        .merge(crate::reports::routes())
        .merge(crate::report_templates::routes())
        .merge(crate::registry::routes())
        .merge(crate::patients::routes())
        .merge(crate::record::routes())
        .merge(crate::fhir::routes())
        .merge(crate::schedule::routes())
        .merge(crate::tickets::routes())
        .merge(crate::focus::routes())
        .merge(crate::imaging_access::routes())
        .with_state(api)
}
