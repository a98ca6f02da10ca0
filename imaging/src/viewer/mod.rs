//! The viewer's WebSocket (`/view/ws?token=...&session=...`) on imaging's HTTP listener: the
//! thin shell around [`crate::viewer::view`]. A client opens with a token signed with
//! `imaging.viewer_token_key` ([`crate::viewer::token`]); it joins (or creates) a named session and
//! sends JSON operations; it receives JSON (`hello`, `state`, `error`, `control`, and a
//! `geometry` before each frame) and binary frames rendered on the server for its own canvas:
//! `[viewport u8][encoding u8: 0 JPEG, 1 PNG][quality u8][0u8][state version u64 LE]
//! [width u16 LE][height u16 LE]` then the image.
//!
//! Latest state wins: a client's render loop watches the session's state, so operations that
//! arrive while a frame renders are folded into the next one, and a socket that reads slowly
//! gets fewer frames, never a queue. Frames while the state changes are JPEG at quality 70; a
//! full-quality frame (JPEG 95, or PNG when asked) follows 150 ms after the last change.

pub mod cache;
pub mod token;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use render::mpr::{MprRequest, Sampling, Slab, SlabMode};
use render::{GreyPipeline, Orientation, Plane, Renderer, V3, Viewport, Voi, Window};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use crate::dicom::series::{BuiltVolume, SeriesError, build_volume, read_slice};
use crate::dicom::stack::build_stack;
use crate::store::Store;
use cache::VolumeCache;
use token::{Claims, verify};
use view::{ClientId, Event, Op, PlaneKind, Session, SlabKind, ViewState, ViewportState};

/// Frames while the view changes.
const INTERACTIVE_QUALITY: u8 = 70;
/// The frame after the view settles.
const FINAL_QUALITY: u8 = 95;
/// How long the view must rest before the full-quality frame.
const SETTLE: Duration = Duration::from_millis(150);

/// One named viewing session: its state machine, the latest state for the render loops, what
/// each client's token allows, and the frames rendered for it.
struct Shared {
    session: Mutex<Session>,
    state: watch::Sender<ViewState>,
    /// Studies each client's token allows.
    allowed: Mutex<HashMap<ClientId, Vec<String>>>,
    /// Frames of the latest state, by (viewport, width, height, quality): co-viewers with the
    /// same canvas share one render and encode.
    frames: Mutex<FrameCache>,
    /// Who controls the view and who asks to: every participant hears of each change.
    control: watch::Sender<Control>,
    /// The latest `state` message, serialised once for every co-viewer.
    state_text: Mutex<(u64, axum::extract::ws::Utf8Bytes)>,
}

/// A frame message ready to send (header and image), or why it could not be made. Shared
/// co-viewers send the same bytes without copying them.
/// With it, the frame's `geometry` message.
type Encoded = Result<(axum::body::Bytes, axum::extract::ws::Utf8Bytes), String>;

#[derive(Default)]
struct FrameCache {
    version: u64,
    frames: HashMap<(usize, u32, u32, u8), Arc<tokio::sync::OnceCell<Encoded>>>,
}

/// The session's control, as told to every participant (`control` messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Control {
    controller: Option<ClientId>,
    requested_by: Option<ClientId>,
}

impl Shared {
    /// Tells everyone when control (or a request for it) changed.
    fn publish_control(&self, session: &Session) {
        let now = Control {
            controller: session.controller(),
            requested_by: session.requested_by(),
        };
        self.control.send_if_modified(|c| {
            let changed = *c != now;
            *c = now;
            changed
        });
    }

    /// The `state` message for `snapshot`, serialised once per version.
    fn state_message(&self, snapshot: &ViewState) -> axum::extract::ws::Utf8Bytes {
        let mut cached = self
            .state_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.0 != snapshot.version || cached.1.is_empty() {
            *cached = (
                snapshot.version,
                json!({ "type": "state", "state": snapshot })
                    .to_string()
                    .into(),
            );
        }
        cached.1.clone()
    }

    /// The cell holding a frame of `version`, shared by everyone asking for the same one;
    /// `None` for a version older than the latest asked (rendered without sharing).
    fn frame_cell(
        &self,
        version: u64,
        key: (usize, u32, u32, u8),
    ) -> Option<Arc<tokio::sync::OnceCell<Encoded>>> {
        let mut cache = self.frames.lock().unwrap_or_else(PoisonError::into_inner);
        if version > cache.version {
            cache.version = version;
            cache.frames.clear();
        }
        (version == cache.version).then(|| Arc::clone(cache.frames.entry(key).or_default()))
    }
}

/// The viewer: sessions by name, and what rendering needs.
pub struct Viewer {
    store: Store,
    renderer: Arc<Renderer>,
    cache: Arc<VolumeCache>,
    key: Result<ed25519_dalek::VerifyingKey, token::TokenError>,
    sessions: Mutex<HashMap<String, Arc<Shared>>>,
    /// How long a dropped viewer keeps its place.
    grace: Duration,
    /// Whether anyone in a session may annotate, or only its controller.
    open_annotations: bool,
    next_client: AtomicU64,
    /// Each series' own window (from its first instance), shown until someone sets one.
    windows: Mutex<HashMap<String, (f64, f64)>>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer").finish_non_exhaustive()
    }
}

/// The `/view` routes.
pub fn routes(
    store: Store,
    renderer: Arc<Renderer>,
    cache_bytes: u64,
    token_key: &str,
    grace: Duration,
    open_annotations: bool,
) -> Router {
    let viewer = Arc::new(Viewer {
        grace,
        open_annotations,
        store,
        renderer,
        cache: Arc::new(VolumeCache::new(cache_bytes)),
        key: token::key(token_key),
        sessions: Mutex::new(HashMap::new()),
        next_client: AtomicU64::new(1),
        windows: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/view/ws", get(upgrade))
        .route("/view", get(page))
        .route("/view.js", get(script))
        .with_state(viewer)
}

/// The viewer page (Chinese first, English on a button): `/view?token=...&session=...&series=...`.
async fn page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/viewer.html"),
    )
        .into_response()
}

/// The viewer page's script (a file of its own: the content security policy allows no inline
/// script).
async fn script() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/viewer.js"),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct Connect {
    token: String,
    #[serde(default)]
    session: Option<String>,
    /// The client id of a connection that dropped: within the grace period the same
    /// participant comes back (same session, state and control).
    #[serde(default)]
    resume: Option<u64>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn upgrade(
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

impl Viewer {
    fn join(self: &Arc<Self>, name: &str, client: ClientId, claims: &Claims) -> Arc<Shared> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = sessions
            .entry(name.to_owned())
            .or_insert_with(|| {
                let mut session = Session::new(client, &claims.sub, self.grace);
                session.open_annotations = self.open_annotations;
                let shared = Arc::new(Shared {
                    session: Mutex::new(session),
                    state: watch::channel(ViewState::default()).0,
                    allowed: Mutex::new(HashMap::new()),
                    frames: Mutex::new(FrameCache::default()),
                    state_text: Mutex::default(),
                    control: watch::channel(Control::default()).0,
                });
                tokio::spawn(cine(
                    Arc::clone(self),
                    name.to_owned(),
                    Arc::downgrade(&shared),
                ));
                metrics::gauge!("viewer_sessions").increment(1.0);
                shared
            })
            .clone();
        {
            let mut session = shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            session.join(client, &claims.sub);
            shared.publish_control(&session);
        }
        shared
            .allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(client, claims.studies.clone());
        shared
    }

    /// Forgets session `name` when nobody is in it any more (all left or their grace ran out),
    /// so sessions do not pile up in memory. Locks in the order `join` does.
    fn reap(&self, name: &str, shared: &Arc<Shared>) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let empty = shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .participants()
            .is_empty();
        if empty && sessions.get(name).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            sessions.remove(name);
            metrics::gauge!("viewer_sessions").decrement(1.0);
            tracing::debug!(session = name, "viewer session forgotten");
            return true;
        }
        false
    }

    /// A dropped participant of session `name` coming back within the grace period, as the
    /// same user: its id and the session.
    fn resume(&self, name: &str, id: ClientId, claims: &Claims) -> Option<(ClientId, Arc<Shared>)> {
        let shared = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()?;
        {
            let mut session = shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let same_user = session
                .participants()
                .get(&id)
                .is_some_and(|p| p.user == claims.sub && p.dropped_at.is_some());
            if !same_user || !session.resume(id, Instant::now()) {
                return None;
            }
        }
        shared
            .allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, claims.studies.clone());
        Some((id, shared))
    }

    /// The volume of a series, built once and shared by every viewer.
    async fn volume(&self, series: &str) -> Result<Arc<BuiltVolume>, String> {
        // Every frame and cine tick asks: a held volume costs no index query.
        if let Some(v) = self.cache.get(series) {
            return Ok(v);
        }
        let files: Vec<String> = sqlx::query_scalar(
            "SELECT file FROM instances WHERE series_uid = ? ORDER BY instance_number",
        )
        .bind(series)
        .fetch_all(self.store.pool())
        .await
        .map_err(|e| e.to_string())?;
        if files.is_empty() {
            return Err(format!("series {series} is not stored here"));
        }
        let root = self.store.root().to_owned();
        let cache = Arc::clone(&self.cache);
        let series = series.to_owned();
        tokio::task::spawn_blocking(move || {
            cache
                .get_or_build(&series, || {
                    use rayon::prelude::*;
                    let paths: Vec<std::path::PathBuf> =
                        files.iter().map(|f| root.join(f)).collect();
                    let volume = paths
                        .par_iter()
                        .map(|p| read_slice(p))
                        .collect::<Result<Vec<_>, _>>()
                        .and_then(build_volume);
                    match volume {
                        Err(why @ SeriesError::Decode { .. }) => Err(why),
                        // 2D films, cine loops, captures: frame by frame.
                        Err(why) => {
                            tracing::info!(series, %why, "not a volume: shown as a stack");
                            build_stack(&paths).inspect_err(|e| {
                                tracing::warn!(series, error = %e, "series cannot be shown");
                            })
                        }
                        ok => ok,
                    }
                })
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The window a series is shown with by default: its first instance's Window Center and
    /// Width, else one over the volume's value range.
    async fn default_window(&self, series: &str, built: &BuiltVolume) -> (f64, f64) {
        if let Some(w) = self
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(series)
        {
            return *w;
        }
        let metadata: Option<String> = sqlx::query_scalar(
            "SELECT metadata FROM instances WHERE series_uid = ? ORDER BY instance_number LIMIT 1",
        )
        .bind(series)
        .fetch_optional(self.store.pool())
        .await
        .ok()
        .flatten();
        let first = |m: &Json, tag: &str| m[tag]["Value"][0].as_f64();
        let window = metadata
            .and_then(|m| serde_json::from_str::<Json>(&m).ok())
            .and_then(|m| Some((first(&m, "00281050")?, first(&m, "00281051")?)))
            .filter(|(_, w)| *w >= 1.0)
            .unwrap_or_else(|| {
                let r = built.volume.rescale();
                let (lo, hi) = built
                    .volume
                    .voxels()
                    .iter()
                    .fold((i16::MAX, i16::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let (a, b) = (r.apply(f64::from(lo)), r.apply(f64::from(hi)));
                let (a, b) = (a.min(b), a.max(b));
                ((a + b) / 2.0, (b - a).max(1.0))
            });
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(series.to_owned(), window);
        window
    }

    /// The study a stored series belongs to.
    async fn study_of(&self, series: &str) -> Option<String> {
        sqlx::query_scalar("SELECT study_uid FROM series WHERE series_uid = ?")
            .bind(series)
            .fetch_optional(self.store.pool())
            .await
            .ok()
            .flatten()
    }
}

/// A session's housekeeping: participants whose grace period ran out are removed (control
/// passes on), and cine, paced by the server: each playing viewport moves one slice per tick of
/// its rate. A client that cannot keep up skips states (its render loop only sees the latest);
/// nothing queues. Ends with the session.
async fn cine(viewer: Arc<Viewer>, name: String, shared: std::sync::Weak<Shared>) {
    let mut next: HashMap<usize, tokio::time::Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (playing, state, expired, empty) = {
            let mut session = shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let expired = session.expire(Instant::now());
            if !expired.is_empty() {
                shared.publish_control(&session);
            }
            let empty = session.participants().is_empty();
            (session.cine(), session.state().clone(), expired, empty)
        };
        if empty && viewer.reap(&name, &shared) {
            return;
        }
        for e in expired {
            match e {
                Event::Left(c) => {
                    shared
                        .allowed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&c);
                }
                Event::Control(c) => tracing::info!(controller = c, "control passed on"),
                _ => {}
            }
        }
        if playing.is_empty() {
            next.clear();
            continue;
        }
        let now = tokio::time::Instant::now();
        let mut changed = false;
        for (i, fps) in playing {
            let due = *next.entry(i).or_insert(now);
            if now < due {
                continue;
            }
            let Some(vs) = state.viewports.get(i) else {
                continue;
            };
            let Some(series) = state.series.get(vs.series) else {
                continue;
            };
            let Ok(volume) = viewer.volume(series).await else {
                continue;
            };
            // A cine loop plays at its acquired rate; anything else at the rate asked for.
            let period = match volume.stack.as_ref().and_then(|s| s.frame_ms) {
                Some(ms) => Duration::from_secs_f64(ms / 1000.0),
                None => Duration::from_secs_f64(1.0 / fps.max(0.1)),
            };
            next.insert(i, due + period);
            let range = match &volume.stack {
                Some(s) => (0, s.frames as i32 - 1),
                None => {
                    let half = slices_along(&volume, vs.plane) / 2;
                    (-half, half)
                }
            };
            let mut session = shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            changed |= session.cine_step(i, range).is_some();
        }
        if changed {
            let state = shared
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .state()
                .clone();
            shared.state.send_replace(state);
        }
    }
}

/// The frame of a stack a viewport shows.
fn stack_frame(s: &crate::dicom::series::StackInfo, vs: &ViewportState) -> usize {
    vs.slice.rem_euclid(s.frames.max(1) as i32) as usize
}

/// How many slices a volume has along a viewport's normal.
fn slices_along(built: &BuiltVolume, plane: PlaneKind) -> i32 {
    let g = built.volume.geometry();
    let normal = match plane {
        PlaneKind::Axial | PlaneKind::Oblique { .. } => V3::new(0.0, 0.0, 1.0),
        PlaneKind::Coronal => V3::new(0.0, 1.0, 0.0),
        PlaneKind::Sagittal => V3::new(1.0, 0.0, 0.0),
    };
    let corners = g.corners();
    let (lo, hi) = corners.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
        (lo.min(c.dot(normal)), hi.max(c.dot(normal)))
    });
    ((hi - lo) / g.step_along(normal).max(1e-6)).round() as i32 + 1
}

fn send_json(out: &mpsc::Sender<Json>, message: Json) {
    // A client that does not read its messages loses some; it never grows our memory.
    let _ = out.try_send(message);
}

async fn client(
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
async fn operate(
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
    if let Op::Open { series } = &op {
        let allowed = shared
            .allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .unwrap_or_default();
        for s in series {
            let study = viewer
                .study_of(s)
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

/// Fills in what an annotation measures from the voxels (region statistics, a probe's value)
/// before the session takes the operation: the drawing viewport gives the series and the
/// canvas axes, which an edit reuses.
async fn measure_from_voxels(viewer: &Viewer, shared: &Shared, op: &mut Op) -> Result<(), String> {
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
fn futures_split(
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

async fn render_loop(
    viewer: Arc<Viewer>,
    shared: Arc<Shared>,
    mut control: watch::Receiver<Control>,
    mut size: watch::Receiver<(u32, u32)>,
    mut png: watch::Receiver<bool>,
    mut messages: mpsc::Receiver<Json>,
    sink: mpsc::Sender<Message>,
) {
    let mut settle_at: Option<tokio::time::Instant> = None;
    let mut sent_version = None;
    // A joiner gets the current state (a snapshot) and its frames at once.
    let mut state = shared.state.subscribe();
    state.mark_changed();
    loop {
        let final_frame = tokio::select! {
            // In this order: `hello` before the first state, messages before frames.
            biased;
            m = messages.recv() => {
                let Some(m) = m else { return };
                if sink.send(Message::Text(m.to_string().into())).await.is_err() { return }
                continue;
            }
            r = control.changed() => {
                if r.is_err() { return }
                let c = *control.borrow_and_update();
                let m = json!({
                    "type": "control",
                    "controller": c.controller,
                    "requested_by": c.requested_by,
                });
                if sink.send(Message::Text(m.to_string().into())).await.is_err() { return }
                continue;
            }
            r = state.changed() => { if r.is_err() { return } false }
            r = size.changed() => { if r.is_err() { return } false }
            r = png.changed() => { if r.is_err() { return } true }
            () = async {
                match settle_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let snapshot = state.borrow_and_update().clone();
        let canvas = *size.borrow_and_update();
        let as_png = *png.borrow_and_update();
        if !final_frame && sent_version != Some(snapshot.version) {
            if sink
                .send(Message::Text(shared.state_message(&snapshot)))
                .await
                .is_err()
            {
                return;
            }
            sent_version = Some(snapshot.version);
        }
        let quality = if final_frame {
            settle_at = None;
            if as_png { 0 } else { FINAL_QUALITY }
        } else {
            settle_at = Some(tokio::time::Instant::now() + SETTLE);
            INTERACTIVE_QUALITY
        };
        for (i, vs) in snapshot.viewports.iter().enumerate() {
            let Some(series) = snapshot.series.get(vs.series) else {
                continue;
            };
            let make = async {
                let volume = viewer.volume(series).await?;
                let window = viewer.default_window(series, &volume).await;
                let renderer = Arc::clone(&viewer.renderer);
                let vs = synced(&viewer, &snapshot, i, vs).await;
                // Where the other viewports of this series cut this one (MPR crosshairs).
                let mut others = Vec::new();
                for (j, other) in snapshot.viewports.iter().enumerate() {
                    if j != i && other.series == vs.series {
                        let other = synced(&viewer, &snapshot, j, other).await;
                        if let Ok(plane) = plane_of(&volume, &other) {
                            others.push((j, plane));
                        }
                    }
                }
                let started = Instant::now();
                let version = snapshot.version;
                let out = tokio::task::spawn_blocking(move || {
                    render_frame(&renderer, &volume, &vs, window, canvas, quality).map(
                        |(bytes, vp)| {
                            let mut b = Vec::with_capacity(bytes.len() + 16);
                            b.push(i as u8);
                            b.push(u8::from(quality == 0));
                            b.push(quality);
                            b.push(0);
                            b.extend_from_slice(&version.to_le_bytes());
                            b.extend_from_slice(&(vp.width as u16).to_le_bytes());
                            b.extend_from_slice(&(vp.height as u16).to_le_bytes());
                            b.extend_from_slice(&bytes);
                            let geometry = geometry_message(&volume, &vs, &vp, i, version, &others);
                            (axum::body::Bytes::from(b), geometry.into())
                        },
                    )
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
                metrics::histogram!("viewer_frame_seconds").record(started.elapsed().as_secs_f64());
                metrics::counter!("viewer_renders_total").increment(1);
                out
            };
            let key = (i, canvas.0, canvas.1, quality);
            let frame = match shared.frame_cell(snapshot.version, key) {
                Some(cell) => cell.get_or_init(|| make).await.clone(),
                None => make.await,
            };
            let message = match frame {
                Ok((bytes, geometry)) => {
                    if sink.send(Message::Text(geometry)).await.is_err() {
                        return;
                    }
                    metrics::counter!("viewer_frames_total").increment(1);
                    Message::Binary(bytes)
                }
                Err(e) => Message::Text(
                    json!({ "type": "error", "viewport": i, "message": e })
                        .to_string()
                        .into(),
                ),
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Series compare with synchronised scrolling: the second viewport shows the slice of its
/// series nearest the patient position the first viewport shows (same standard plane).
async fn synced(
    viewer: &Viewer,
    snapshot: &ViewState,
    i: usize,
    vs: &ViewportState,
) -> ViewportState {
    let mut vs = vs.clone();
    if !(snapshot.sync && snapshot.layout == view::Layout::Two && i == 1) {
        return vs;
    }
    let Some(first) = snapshot.viewports.first() else {
        return vs;
    };
    let orientation = match (first.plane, vs.plane) {
        (PlaneKind::Axial, PlaneKind::Axial) => Orientation::Axial,
        (PlaneKind::Coronal, PlaneKind::Coronal) => Orientation::Coronal,
        (PlaneKind::Sagittal, PlaneKind::Sagittal) => Orientation::Sagittal,
        _ => return vs,
    };
    let (Some(s0), Some(s1)) = (
        snapshot.series.get(first.series),
        snapshot.series.get(vs.series),
    ) else {
        return vs;
    };
    let (Ok(b0), Ok(b1)) = (viewer.volume(s0).await, viewer.volume(s1).await) else {
        return vs;
    };
    if b0.stack.is_some() || b1.stack.is_some() {
        return vs;
    }
    let n = Plane::standard(orientation, V3::default()).normal();
    let (g0, g1) = (b0.volume.geometry(), b1.volume.geometry());
    vs.slice = view::synced_slice(
        g0.center().dot(n),
        g0.step_along(n),
        first.slice,
        g1.center().dot(n),
        g1.step_along(n),
    );
    vs
}

/// The plane a viewport shows (its slice included).
fn plane_of(built: &BuiltVolume, vs: &ViewportState) -> Result<Plane, String> {
    let g = built.volume.geometry();
    // A stack shows one frame in its own plane, whatever plane was asked for; scrolling past
    // either end wraps round.
    if let Some(s) = &built.stack {
        return Ok(render::stack::frame_plane(g, stack_frame(s, vs)));
    }
    let [nx, ny, nz] = g.dims();
    let center = g.voxel_to_patient(V3::new(
        (nx as f64 - 1.0) / 2.0,
        (ny as f64 - 1.0) / 2.0,
        (nz as f64 - 1.0) / 2.0,
    ));
    let plane = match vs.plane {
        PlaneKind::Axial => Plane::standard(Orientation::Axial, center),
        PlaneKind::Coronal => Plane::standard(Orientation::Coronal, center),
        PlaneKind::Sagittal => Plane::standard(Orientation::Sagittal, center),
        PlaneKind::Oblique { pitch, yaw } => {
            let axial = Plane::standard(Orientation::Axial, center);
            axial
                .rotated(axial.row, pitch)
                .and_then(|p| p.rotated(p.col, yaw))
                .map_err(|e| e.to_string())?
        }
    };
    Ok(plane.translated(f64::from(vs.slice) * g.step_along(plane.normal())))
}

/// How a viewport's plane lands on a canvas of `width` x `height`.
fn viewport_of(
    built: &BuiltVolume,
    vs: &ViewportState,
    (width, height): (u32, u32),
) -> Result<Viewport, String> {
    let mut vp = Viewport::fit(plane_of(built, vs)?, built.volume.geometry(), width, height)
        .map_err(|e| e.to_string())?;
    vp.zoom = vs.zoom;
    vp.pan = [vs.pan.0, vs.pan.1];
    vp.rotation = vs.rotation;
    vp.flip_h = vs.flip_h;
    vp.flip_v = vs.flip_v;
    Ok(vp)
}

/// What a client needs to draw over a frame (a `geometry` message): the patient point at the
/// centre of pixel (0, 0) and the patient displacement of one pixel right and down, so canvas
/// and patient coordinates convert both ways; the plane normal, the slice step and the depth
/// within which annotations show; and where the other viewports' planes cut this one.
fn geometry_message(
    built: &BuiltVolume,
    vs: &ViewportState,
    vp: &Viewport,
    i: usize,
    version: u64,
    others: &[(usize, Plane)],
) -> String {
    let (o, dx, dy) = vp.basis();
    let n = vp.plane.normal();
    let step = built.volume.geometry().step_along(n);
    let half = vs
        .slab
        .map_or(step / 2.0, |(_, t)| (t / 2.0).max(step / 2.0));
    let v3 = |v: V3| [v.x, v.y, v.z];
    let crosshairs: Vec<Json> = others
        .iter()
        .filter_map(|(j, plane)| {
            render::overlay::crosshair(vp, plane)
                .map(|s| json!({ "viewport": j, "line": [s.a.0, s.a.1, s.b.0, s.b.1] }))
        })
        .collect();
    json!({
        "type": "geometry",
        "viewport": i,
        "version": version,
        "width": vp.width,
        "height": vp.height,
        "origin": v3(o),
        "dx": v3(dx),
        "dy": v3(dy),
        "normal": v3(n),
        "step": step,
        "half_thickness": half,
        "pixel_mm": vp.pixel_mm()[0],
        "crosshairs": crosshairs,
        // A stack: which frame of how many, and what a millimetre on it means.
        "stack": built.stack.as_ref().map(|s| json!({
            "frame": stack_frame(s, vs),
            "frames": s.frames,
            "calibration": s.calibration.name(),
            "frame_ms": s.frame_ms,
            "colour": s.colour.is_some(),
        })),
    })
    .to_string()
}

/// Measures an annotation from the voxels of the series it is drawn on: a region's statistics
/// on the drawing plane (sides and axes along the canvas's), or a probe's value.
fn measure_annotation(
    built: &BuiltVolume,
    kind: &str,
    points: &[[f64; 3]],
    axes: [[f64; 3]; 2],
) -> Result<(Option<view::RegionStats>, Option<f64>), String> {
    use render::measure::{Roi, probe, roi_stats};
    let p = |c: &[f64; 3]| V3::new(c[0], c[1], c[2]);
    let (row, col) = (p(&axes[0]), p(&axes[1]));
    let Some(first) = points.first() else {
        return Ok((None, None));
    };
    if kind == "probe" {
        return Ok((None, probe(&built.volume, p(first)).map(|pr| pr.value)));
    }
    if !view::is_region(kind) {
        return Ok((None, None));
    }
    let plane = Plane::new(p(first), row, col).map_err(|e| e.to_string())?;
    let roi = match (kind, points) {
        ("rectangle", [a, b]) => Roi::Rectangle { a: p(a), b: p(b) },
        ("ellipse", [a, b]) => {
            let d = p(b) - p(a);
            Roi::Ellipse {
                center: (p(a) + p(b)) * 0.5,
                radius_row: d.dot(plane.row).abs() / 2.0,
                radius_col: d.dot(plane.col).abs() / 2.0,
            }
        }
        _ => Roi::Polygon(points.iter().map(p).collect()),
    };
    let s = roi_stats(&built.volume, &plane, &roi).map_err(|e| e.to_string())?;
    Ok((
        Some(view::RegionStats {
            area_mm2: s.area_mm2,
            mean: s.mean,
            sd: s.sd,
            min: s.min,
            max: s.max,
            samples: s.samples,
        }),
        None,
    ))
}

/// Renders one viewport: (encoded image, the viewport). Quality 0 means PNG.
/// Frame `k` of a colour stack through `vp` (a viewport on the stack's grey geometry, whose
/// first pixel is at the origin; the colour stack's centre is). No window: colour is shown as
/// it is, inverted when asked.
fn colour_frame(
    geometry: &render::Geometry,
    colour: &render::stack::ColourStack,
    k: usize,
    vp: &Viewport,
    invert: bool,
) -> Result<render::Frame, String> {
    let [nx, ny, _] = geometry.dims();
    let centre = geometry.voxel_to_patient(V3::new(
        (nx as f64 - 1.0) / 2.0,
        (ny as f64 - 1.0) / 2.0,
        0.0,
    ));
    let mut shifted = *vp;
    shifted.plane.center = vp.plane.center - centre;
    let mut frame = colour
        .render(k, &shifted, [0, 0, 0])
        .map_err(|e| e.to_string())?;
    if invert && let render::Pixels::Rgb8(p) | render::Pixels::Gray8(p) = &mut frame.pixels {
        p.iter_mut().for_each(|v| *v = 255 - *v);
    }
    Ok(frame)
}

fn render_frame(
    renderer: &Renderer,
    built: &BuiltVolume,
    vs: &ViewportState,
    default_window: (f64, f64),
    canvas: (u32, u32),
    quality: u8,
) -> Result<(Vec<u8>, Viewport), String> {
    let volume = &built.volume;
    let vp = viewport_of(built, vs, canvas)?;
    if let Some((s, colour)) = built
        .stack
        .as_ref()
        .and_then(|s| Some((s, s.colour.as_ref()?)))
    {
        let frame = colour_frame(
            volume.geometry(),
            colour,
            stack_frame(s, vs),
            &vp,
            vs.invert,
        )?;
        let bytes = if quality == 0 {
            render::encode::encode_png(&frame)
        } else {
            render::encode::encode_jpeg_preferred(&frame, quality)
        }
        .map_err(|e| e.to_string())?;
        return Ok((bytes, vp));
    }
    // The user's window, else the image's VOI LUT, else its window.
    let lut = built.stack.as_ref().and_then(|s| s.voi_lut.clone());
    let voi = match (vs.window, lut) {
        (None, Some(lut)) => Voi::Lut(lut),
        (window, _) => {
            let (c, w) = window.unwrap_or(default_window);
            Voi::Window(Window::linear(c, w))
        }
    };
    let inverse = built.stack.as_ref().is_some_and(|s| s.inverse);
    let table = GreyPipeline {
        rescale: volume.rescale(),
        voi,
        monochrome1: built.monochrome1,
        invert: vs.invert != inverse,
    }
    .table()
    .map_err(|e| e.to_string())?;
    let slab = vs.slab.map(|(mode, thickness)| Slab {
        thickness,
        mode: match mode {
            SlabKind::Mip => SlabMode::Mip,
            SlabKind::Minip => SlabMode::MinIp,
            SlabKind::Average => SlabMode::Average,
        },
    });
    let (frame, _) = renderer
        .render(
            volume,
            &table,
            &MprRequest {
                viewport: &vp,
                sampling: Sampling::Trilinear,
                slab,
                background: 0,
            },
        )
        .map_err(|e| e.to_string())?;
    let bytes = if quality == 0 {
        render::encode::encode_png(&frame)
    } else {
        render::encode::encode_jpeg_preferred(&frame, quality)
    }
    .map_err(|e| e.to_string())?;
    Ok((bytes, vp))
}
