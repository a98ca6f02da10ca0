//! The consultation room's shared focus: what the controller has open (the application, a
//! record, an attachment, a study, a report section) shown to every participant, like the
//! viewer's shared view. `GET /api/v1/consultations/{id}/focus/ws?token=` is a WebSocket per
//! participant; it first sends the current focus (so a participant who drops and rejoins is
//! back in place), then every change. Its experts, its applicant and the centre's coordinator
//! control; others who may see the consultation follow. The state is one small map of the
//! rooms open now (changes are rare: a lock per change, none per frame), kept in memory: after
//! a restart the room starts unfocused.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use workflow::{Consultation, Role};

use crate::accounts::{User, now_ms};
use crate::cases::load;
use crate::http::{Api, ApiError};

/// The panels a focus may name.
pub const PANELS: &[&str] = &["application", "record", "attachment", "study", "report"];

/// The rooms with someone in them: each one's current focus and its broadcast.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<i64, Room>>,
}

#[derive(Debug)]
struct Room {
    focus: Value,
    tx: broadcast::Sender<Value>,
}

impl Rooms {
    /// Joins room `id`: its current focus and a receiver of the changes.
    fn join(&self, id: i64) -> (Value, broadcast::Receiver<Value>) {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = rooms.entry(id).or_insert_with(|| Room {
            focus: Value::Null,
            tx: broadcast::channel(64).0,
        });
        (room.focus.clone(), room.tx.subscribe())
    }

    /// Sets room `id`'s focus and tells everyone in it.
    fn set(&self, id: i64, focus: Value) {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(room) = rooms.get_mut(&id) {
            room.focus = focus.clone();
            let _ = room.tx.send(focus);
        }
    }

    /// Forgets room `id` once nobody is in it.
    fn leave(&self, id: i64) {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if rooms.get(&id).is_some_and(|r| r.tx.receiver_count() == 0) {
            rooms.remove(&id);
        }
    }
}

/// A focus as a participant sends it: a panel and what in it (a record's id, a section's
/// key), checked.
pub fn parse_focus(text: &str) -> Result<(String, String), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire {
        panel: String,
        #[serde(default)]
        detail: String,
    }
    let w: Wire = serde_json::from_str(text).map_err(|e| format!("not a focus: {e}"))?;
    if !PANELS.contains(&w.panel.as_str()) {
        return Err(format!("panel: one of {}", PANELS.join(", ")));
    }
    if w.detail.chars().count() > 200 {
        return Err("detail: at most 200 characters".to_owned());
    }
    Ok((w.panel, w.detail))
}

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new().route("/api/v1/consultations/{id}/focus/ws", get(upgrade))
}

#[derive(Deserialize)]
struct WsQuery {
    /// Missing is the same as wrong: 401.
    #[serde(default)]
    token: String,
}

async fn upgrade(
    State(api): State<Api>,
    Path(id): Path<i64>,
    Query(q): Query<WsQuery>,
    ws: axum::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let u = crate::accounts::authenticate(&api.pool, &api.policy, &q.token).await?;
    let mut conn = api.pool.acquire().await?;
    let (_, _, c) = load::<Consultation>(&mut conn, &u, id).await?;
    drop(conn);
    let controls = c.experts.contains(&u.id) || c.applicant == u.id || u.role == Role::Coordinator;
    Ok(ws.on_upgrade(move |socket| run(api, id, u, controls, q.token, socket)))
}

async fn run(api: Api, id: i64, u: User, controls: bool, token: String, mut socket: WebSocket) {
    let send = |v: Value| Message::Text(v.to_string().into());
    let (current, mut changes) = api.rooms.join(id);
    let hello = json!({ "type": "focus", "focus": current, "controls": controls });
    if socket.send(send(hello)).await.is_ok() {
        let mut check = tokio::time::interval(std::time::Duration::from_secs(60));
        check.tick().await;
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(focus) => {
                        if socket.send(send(json!({ "type": "focus", "focus": focus }))).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let reply = if !controls {
                            Some(json!({ "type": "error", "message": "only the consultation's experts, applicant and the centre lead" }))
                        } else {
                            match parse_focus(&text) {
                                Ok((panel, detail)) => {
                                    api.rooms.set(id, json!({ "panel": panel, "detail": detail,
                                        "by": u.display_name, "at": now_ms() }));
                                    None
                                }
                                Err(e) => Some(json!({ "type": "error", "message": e })),
                            }
                        };
                        if let Some(r) = reply
                            && socket.send(send(r)).await.is_err()
                        {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                _ = check.tick() => {
                    if !crate::accounts::session_alive(&api.pool, &api.policy, &token).await {
                        let _ = socket.send(Message::Close(Some(CloseFrame {
                            code: 4001,
                            reason: "session ended".into(),
                        }))).await;
                        break;
                    }
                }
            }
        }
    }
    drop(changes);
    api.rooms.leave(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_focus_names_a_known_panel_and_a_short_detail() {
        assert_eq!(
            parse_focus(r#"{"panel":"report","detail":"advice"}"#),
            Ok(("report".to_owned(), "advice".to_owned()))
        );
        assert_eq!(
            parse_focus(r#"{"panel":"study"}"#),
            Ok(("study".to_owned(), String::new()))
        );
        assert!(parse_focus(r#"{"panel":"desktop"}"#).is_err());
        assert!(parse_focus(r#"{"panel":"report","extra":1}"#).is_err());
        assert!(
            parse_focus(&format!(
                r#"{{"panel":"record","detail":"{}"}}"#,
                "x".repeat(201)
            ))
            .is_err()
        );
        assert!(parse_focus("not json").is_err());
    }

    #[test]
    fn a_rejoining_participant_gets_the_current_focus_and_empty_rooms_go() {
        let rooms = Rooms::default();
        let (first, rx) = rooms.join(7);
        assert_eq!(first, Value::Null);
        rooms.set(7, json!({ "panel": "report" }));
        drop(rx);
        // Nobody in it: the room goes, and a newcomer starts unfocused.
        rooms.leave(7);
        assert_eq!(rooms.join(7).0, Value::Null);
        let (_, mut rx) = rooms.join(8);
        rooms.set(8, json!({ "panel": "study" }));
        assert_eq!(rx.try_recv().ok(), Some(json!({ "panel": "study" })));
        let (again, _keep) = rooms.join(8);
        assert_eq!(again, json!({ "panel": "study" }));
    }
}
