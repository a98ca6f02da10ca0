//! One client's connection: the WebSocket upgrade (token, session, resume), the messages it
//! sends (canvas size, output format, control, view operations, measured from voxels before
//! the session takes them) and the tasks that serve it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use render::V3;

use super::frames::{render_loop, synced};
use super::scene::{measure_annotation, viewport_of};
use super::token::{Claims, verify};
use super::view::{self, ClientId, Op};
use super::{Shared, Viewer};

#[derive(Debug, serde::Deserialize)]
pub(super) struct Connect {
    token: String,
    #[serde(default)]
    session: Option<String>,
    /// The client id of a connection that dropped: within the grace period the same
    /// participant comes back (same session, state and control).
    #[serde(default)]
    resume: Option<u64>,
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) async fn upgrade(
    State(viewer): State<Arc<Viewer>>,
    Query(connect): Query<Connect>,
    ws: WebSocketUpgrade,
) -> Response {
    let claims = match &viewer.key {
        Err(e) => Err(e.clone()),
        Ok(key) => verify(&connect.token, key, unix_now()),
    };
    let claims = match claims {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(reason = %e, "viewer token refused");
            metrics::counter!("viewer_refused_total").increment(1);
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    let name = connect
        .session
        .unwrap_or_else(|| format!("{}-{}", claims.sub, unix_now()));
    if name.is_empty() || name.len() > 128 {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "session: 1-128 characters" })),
        )
            .into_response();
    }
    ws.max_message_size(64 << 10)
        .on_upgrade(move |socket| client(viewer, socket, claims, name, connect.resume))
}

pub(super) fn send_json(out: &mpsc::Sender<Json>, message: Json) {
    // A client that does not read its messages loses some; it never grows our memory.
    let _ = out.try_send(message);
}

pub(super) async fn client(
    viewer: Arc<Viewer>,
    socket: WebSocket,
    claims: Claims,
    name: String,
    resume: Option<u64>,
) {
    let resumed = resume.and_then(|rid| viewer.resume(&name, rid, &claims));
    let was_resumed = resumed.is_some();
    let (id, shared) = match resumed {
        Some(found) => found,
        None => {
            let id = viewer.next_client.fetch_add(1, Ordering::Relaxed);
            (id, viewer.join(&name, id, &claims))
        }
    };
    metrics::gauge!("viewer_clients").increment(1.0);
    tracing::info!(client = id, session = %name, user = %claims.sub, "viewer joined");
    let (out_tx, out_rx) = mpsc::channel::<Json>(16);
    let (size_tx, size_rx) = watch::channel((512u32, 512u32));
    let (png_tx, png_rx) = watch::channel(false);
    let controller = shared
        .session
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .controller();
    send_json(
        &out_tx,
        json!({
            "type": "hello",
            "client": id,
            "session": name,
            "controller": controller,
            "resumed": was_resumed,
        }),
    );
    let (sink, mut stream) = futures_split(socket);
    let renderer = tokio::spawn(render_loop(
        Arc::clone(&viewer),
        Arc::clone(&shared),
        shared.control.subscribe(),
        size_rx,
        png_rx,
        out_rx,
        sink,
    ));
    while let Some(Ok(message)) = stream.recv().await {
        let text = match message {
            Message::Text(t) => t,
            Message::Close(_) => break,
            Message::Binary(_) => {
                send_json(
                    &out_tx,
                    json!({ "type": "error", "message": "operations are JSON text" }),
                );
                continue;
            }
            _ => continue,
        };
        if let Err(message) = operate(&viewer, &shared, id, text.as_str(), &size_tx, &png_tx).await
        {
            send_json(&out_tx, json!({ "type": "error", "message": message }));
        }
    }
    renderer.abort();
    // The participant keeps its place (and control) for the grace period; the session's
    // housekeeping removes it after that.
    shared
        .session
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .dropped(id, Instant::now());
    metrics::gauge!("viewer_clients").decrement(1.0);
    tracing::info!(client = id, session = %name, "viewer dropped");
}

/// One message from a client: canvas size, output format, control, or a view operation.
pub(super) async fn operate(
    viewer: &Viewer,
    shared: &Shared,
    id: ClientId,
    text: &str,
    size: &watch::Sender<(u32, u32)>,
    png: &watch::Sender<bool>,
) -> Result<(), String> {
    let value: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value["op"].as_str() {
        Some("resize") => {
            let side = |k: &str| {
                value[k]
                    .as_u64()
                    .filter(|v| (16..=4096).contains(v))
                    .map(|v| v as u32)
                    .ok_or_else(|| format!("{k}: 16-4096 pixels"))
            };
            size.send_replace((side("width")?, side("height")?));
            return Ok(());
        }
        Some("png") => {
            png.send_replace(value["on"].as_bool().unwrap_or(true));
            return Ok(());
        }
        Some("request_control") | Some("grant_control") => {
            let mut session = shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let event = if value["op"] == "request_control" {
                session.request_control(id)
            } else {
                session.grant_control(id)
            }
            .map_err(|e| e.to_string())?;
            tracing::info!(client = id, ?event, "viewer control");
            shared.publish_control(&session);
            return Ok(());
        }
        _ => {}
    }
    let mut op: Op = view::parse(text).map_err(|e| e.to_string())?;
    measure_from_voxels(viewer, shared, &mut op).await?;
    if let Op::Subtract {
        viewport,
        mask: Some(mask),
        ..
    } = &op
    {
        check_mask(viewer, shared, *viewport, *mask).await?;
    }
    if let Op::Layout {
        layout: view::Layout::Mammo,
        hanging,
    } = &mut op
    {
        *hanging = hang_study(viewer, shared).await?;
    }
    if let Op::Open { series } = &op {
        let allowed = shared
            .allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .unwrap_or_default();
        for s in series {
            let uid = crate::uid::Uid::parse(s).map_err(|e| format!("series: {e}"))?;
            let study = viewer
                .study_of(&uid)
                .await
                .ok_or_else(|| format!("series {s} is not stored here"))?;
            if !allowed.contains(&study) {
                return Err(format!("series {s}: study {study} is not in this token"));
            }
        }
    }
    let state = {
        let mut session = shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        session.operate(id, &op).map_err(|e| e.to_string())?;
        session.state().clone()
    };
    shared.state.send_replace(state);
    Ok(())
}

/// The mammography hanging of the study the session's first series belongs to.
async fn hang_study(viewer: &Viewer, shared: &Shared) -> Result<Vec<Option<view::Hung>>, String> {
    let first = shared
        .state
        .borrow()
        .series
        .first()
        .cloned()
        .ok_or_else(|| "layout: open a series first".to_owned())?;
    let study = viewer
        .study_of(&first)
        .await
        .ok_or_else(|| format!("series {first} is not stored here"))?;
    let rows = viewer
        .store
        .study_images(&study)
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<(String, u32, Json)> = rows
        .into_iter()
        .map(|(series, frames, m)| {
            (
                series,
                frames,
                serde_json::from_str(&m).unwrap_or(Json::Null),
            )
        })
        .collect();
    let hung = super::hanging::mammography(&super::hanging::images(&rows));
    tracing::info!(
        study,
        found = hung.iter().flatten().count(),
        "mammography hanging"
    );
    Ok(hung.into_iter().collect())
}

/// A mask frame must be one of the grey frames of the image the viewport shows.
async fn check_mask(
    viewer: &Viewer,
    shared: &Shared,
    viewport: usize,
    mask: usize,
) -> Result<(), String> {
    let uid = {
        let snapshot = shared.state.borrow();
        let vs = snapshot
            .viewports
            .get(viewport)
            .ok_or_else(|| format!("viewport: no viewport {viewport}"))?;
        snapshot
            .series
            .get(vs.series)
            .cloned()
            .ok_or_else(|| "open a series first".to_owned())?
    };
    let built = viewer.volume(&uid).await?;
    match &built.stack {
        Some(s) if s.colour.is_none() && s.frames >= 2 => {
            if mask < s.frames {
                Ok(())
            } else {
                Err(format!(
                    "mask: frame {} is outside 1-{}",
                    mask + 1,
                    s.frames
                ))
            }
        }
        _ => Err("mask: subtraction needs a grey image of several frames".into()),
    }
}

/// Fills in what an annotation measures from the voxels (region statistics, a probe's value)
/// before the session takes the operation: the drawing viewport gives the series and the
/// canvas axes, which an edit reuses.
pub(super) async fn measure_from_voxels(
    viewer: &Viewer,
    shared: &Shared,
    op: &mut Op,
) -> Result<(), String> {
    let snapshot = shared.state.borrow().clone();
    let (kind, points, axes, series, measured) = match op {
        Op::Annotate {
            kind,
            points,
            viewport: Some(i),
            measured,
            ..
        } => {
            let Some(vs) = snapshot.viewports.get(*i) else {
                return Err(format!("viewport: no viewport {i}"));
            };
            let Some(uid) = snapshot.series.get(vs.series) else {
                return Ok(());
            };
            let built = viewer.volume(uid).await?;
            let vs = synced(viewer, &snapshot, *i, vs).await;
            let (_, dx, dy) = viewport_of(&built, &vs, (512, 512))?.basis();
            let unit = |v: V3| {
                let v = v * (1.0 / v.norm());
                [v.x, v.y, v.z]
            };
            measured.series = Some(vs.series);
            measured.axes = Some([unit(dx), unit(dy)]);
            (
                kind.clone(),
                points.clone(),
                [unit(dx), unit(dy)],
                built,
                measured,
            )
        }
        Op::EditAnnotation {
            id,
            points,
            measured,
        } => {
            let Some(a) = snapshot.annotations.get(id) else {
                return Ok(());
            };
            let (Some(si), Some(axes)) = (a.series, a.axes) else {
                return Ok(());
            };
            let Some(uid) = snapshot.series.get(si) else {
                return Ok(());
            };
            let built = viewer.volume(uid).await?;
            (a.kind.clone(), points.clone(), axes, built, measured)
        }
        _ => return Ok(()),
    };
    let (stats, value) =
        tokio::task::spawn_blocking(move || measure_annotation(&series, &kind, &points, axes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("points: {e}"))?;
    measured.stats = stats;
    measured.value = value;
    Ok(())
}

/// The sending half of a socket and a receiver of its messages.
pub(super) fn futures_split(
    socket: WebSocket,
) -> (
    mpsc::Sender<Message>,
    mpsc::Receiver<Result<Message, axum::Error>>,
) {
    // One task owns the socket; the render loop hands it one message at a time (capacity 1),
    // so a slow reader slows the render loop instead of growing a queue.
    let (to_socket, mut outgoing) = mpsc::channel::<Message>(1);
    let (incoming_tx, incoming) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut socket = socket;
        loop {
            tokio::select! {
                out = outgoing.recv() => match out {
                    Some(m) => if socket.send(m).await.is_err() { break },
                    None => break,
                },
                inc = socket.recv() => match inc {
                    Some(m) => if incoming_tx.send(m).await.is_err() { break },
                    None => break,
                },
            }
        }
    });
    (to_socket, incoming)
}
