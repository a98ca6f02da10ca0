//! The centre's scheduling aid: a dry run of scheduling a consultation (time, experts, room)
//! that changes nothing and says what would happen: the workflow's refusal if any, the
//! conflicts with consultations already scheduled near that time (a shared expert or the same
//! room), and every notice that would go out, worded exactly as delivery words it (the same
//! `message` and the gateway's SMS template), with who gets it and by which channel.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use workflow::{Consultation, ConsultationAction, Notice, Role};

use crate::accounts::now_ms;
use crate::cases::{Flow, actor, load, message, recipients, refusal};
use crate::http::{Api, ApiError, body, user};

/// Two consultations closer than this share their time.
pub const CONFLICT_WINDOW_MS: i64 = 60 * 60_000;

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new().route("/api/v1/consultations/{id}/schedule-preview", post(preview))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Proposal {
    at: i64,
    experts: Vec<i64>,
    room: String,
}

/// A consultation already scheduled, as conflicts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booked {
    /// Its id.
    pub id: i64,
    /// When.
    pub at: i64,
    /// Its experts.
    pub experts: Vec<i64>,
    /// Its room.
    pub room: String,
}

/// What clashes with a proposal: for each booked consultation within the window, each shared
/// expert (`("expert", id)`) and the same room (`("room", 0)`).
pub fn conflicts(
    at: i64,
    experts: &[i64],
    room: &str,
    booked: &[Booked],
) -> Vec<(i64, &'static str, i64)> {
    let mut out = Vec::new();
    for b in booked {
        if (b.at - at).abs() >= CONFLICT_WINDOW_MS {
            continue;
        }
        for e in experts.iter().filter(|e| b.experts.contains(e)) {
            out.push((b.id, "expert", *e));
        }
        if !room.trim().is_empty() && b.room.trim() == room.trim() {
            out.push((b.id, "room", 0));
        }
    }
    out
}

/// `POST /api/v1/consultations/{id}/schedule-preview`: what scheduling would do (centre only).
async fn preview(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (u, _) = user(&api, &headers, false).await?;
    if u.role != Role::Coordinator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the consultation centre schedules",
        ));
    }
    let p: Proposal = body(&bytes)?;
    let mut conn = api.pool.acquire().await?;
    let (patient, _, mut c) = load::<Consultation>(&mut conn, &u, id).await?;
    let action = ConsultationAction::Schedule {
        at: p.at,
        experts: p.experts.clone(),
        room: p.room.clone(),
    };
    let notices: Vec<Notice> = c.apply(&actor(&u), action, now_ms()).map_err(refusal)?;

    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, data FROM consultations WHERE state IN ('scheduled', 'in_progress') AND id <> ?",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let booked: Vec<Booked> = rows
        .into_iter()
        .filter_map(|(bid, data)| {
            let b: Consultation = serde_json::from_str(&data).ok()?;
            Some(Booked {
                id: bid,
                at: b.scheduled_at?,
                experts: b.experts,
                room: b.room.unwrap_or_default(),
            })
        })
        .collect();
    let mut clashes = Vec::new();
    for (other, why, expert) in conflicts(p.at, &p.experts, &p.room, &booked) {
        let b = booked.iter().find(|b| b.id == other);
        let name = if expert > 0 {
            crate::reports::name_of(&api, expert).await?
        } else {
            String::new()
        };
        clashes.push(json!({
            "consultation": other, "why": why, "expert": (expert > 0).then_some(expert),
            "expert_name": name, "at": b.map(|b| b.at), "room": b.map(|b| b.room.clone()),
        }));
    }

    let object = format!("{} {id} ", Consultation::LABEL);
    let mut messages = Vec::new();
    for n in &notices {
        let (users, event, to_patient) = recipients(&mut conn, n).await?;
        let text = message(event, &object, &c.detail(event));
        let sms_text = api.gateway.as_ref().map(|g| g.text(&text));
        for to in users {
            let (name, phone): (String, String) =
                sqlx::query_as("SELECT display_name, phone FROM users WHERE id = ?")
                    .bind(to)
                    .fetch_one(&mut *conn)
                    .await?;
            let phone = api
                .sealer
                .open("phone", &phone)
                .map_err(ApiError::internal)?;
            let by_sms = !matches!(n, Notice::Centre { .. }) && !phone.is_empty();
            messages.push(json!({
                "to": name, "user": to, "event": event, "in_app": text,
                "sms": if by_sms { sms_text.clone() } else { None },
                "phone": if by_sms { mask_phone(&phone) } else { String::new() },
            }));
        }
        if to_patient {
            let phone: String = sqlx::query_scalar("SELECT phone FROM patients WHERE id = ?")
                .bind(patient)
                .fetch_one(&mut *conn)
                .await?;
            let phone = api
                .sealer
                .open("phone", &phone)
                .map_err(ApiError::internal)?;
            messages.push(json!({
                "to": "患者", "user": null, "event": event, "in_app": null,
                "sms": if phone.is_empty() { None } else { sms_text.clone() },
                "phone": mask_phone(&phone),
            }));
        }
    }
    Ok(Json(json!({
        "conflicts": clashes,
        "messages": messages,
        "sms_gateway": api.gateway.is_some(),
    })))
}

/// `13800000001` as `138****0001`.
pub fn mask_phone(phone: &str) -> String {
    if phone.len() == 11 && phone.is_ascii() {
        format!("{}****{}", &phone[..3], &phone[7..])
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booked(id: i64, at: i64, experts: &[i64], room: &str) -> Booked {
        Booked {
            id,
            at,
            experts: experts.to_vec(),
            room: room.to_owned(),
        }
    }

    #[test]
    fn conflicts_are_shared_experts_or_the_room_within_the_window() {
        let hour = CONFLICT_WINDOW_MS;
        let list = [
            booked(1, 0, &[7, 8], "会诊室1"),
            booked(2, hour, &[7], "会诊室1"),
            booked(3, -hour + 1, &[9], "会诊室2"),
        ];
        assert_eq!(
            conflicts(0, &[7], "会诊室2", &list),
            [(1, "expert", 7), (3, "room", 0)]
        );
        assert_eq!(conflicts(0, &[5], "会诊室3", &list), []);
        assert_eq!(conflicts(0, &[5], " ", &list), []);
        assert_eq!(conflicts(hour, &[7], "", &list), [(2, "expert", 7)]);
    }

    #[test]
    fn phones_are_masked() {
        assert_eq!(mask_phone("13800000001"), "138****0001");
        assert_eq!(mask_phone(""), "");
    }
}
