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
//! gets fewer frames, never a queue. Frames while the state changes are JPEG at quality 70, and
//! smaller when the loop falls behind (states going by undrawn); a full-size, full-quality frame
//! (JPEG 95, or PNG when asked) follows 150 ms after the last change.

pub mod cache;
mod cine;
mod frames;
pub mod hanging;
mod scene;
mod sessions;
pub mod token;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use render::Renderer;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::dicom::series::{BuiltVolume, SeriesError, build_volume, read_slice};
use crate::dicom::stack::build_stack;
use crate::store::Store;
use crate::uid::Uid;
use cache::VolumeCache;
use frames::{Encoded, FrameCache};
use token::Claims;
use view::{ClientId, Session, ViewState};

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
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cell(version, key)
    }
}

/// The viewer: sessions by name, and what rendering needs.
pub struct Viewer {
    store: Store,
    renderer: Arc<Renderer>,
    /// Render loops drawing at once: one per render thread.
    renders: Arc<tokio::sync::Semaphore>,
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
    cache: Arc<VolumeCache>,
    token_key: &str,
    grace: Duration,
    open_annotations: bool,
) -> Router {
    let viewer = Arc::new(Viewer {
        grace,
        open_annotations,
        store,
        renders: Arc::new(tokio::sync::Semaphore::new(
            rayon::current_num_threads().max(1),
        )),
        renderer,
        cache,
        key: token::key(token_key),
        sessions: Mutex::new(HashMap::new()),
        next_client: AtomicU64::new(1),
        windows: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/view/ws", get(sessions::upgrade))
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
                tokio::spawn(cine::cine(
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
    async fn volume(&self, series: &Uid) -> Result<Arc<BuiltVolume>, String> {
        let series = series.as_str();
        // Every frame and cine tick asks: a held volume costs no index query.
        if let Some(v) = self.cache.get(series) {
            return Ok(v);
        }
        let files = self
            .store
            .series_files(series)
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
    async fn default_window(&self, uid: &Uid, built: &BuiltVolume) -> (f64, f64) {
        let series = uid.as_str();
        if let Some(w) = self
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(series)
        {
            return *w;
        }
        let window = self
            .metadata_window(uid)
            .await
            .unwrap_or_else(|| built.range_window());
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(series.to_owned(), window);
        window
    }

    /// The Window Center and Width of a series' first instance, when it has both.
    async fn metadata_window(&self, series: &Uid) -> Option<(f64, f64)> {
        let series = series.as_str();
        let metadata = self.store.first_metadata(series).await.ok().flatten()?;
        let m = serde_json::from_str::<Json>(&metadata).ok()?;
        let first = |tag: &str| m[tag]["Value"][0].as_f64();
        Some((first("00281050")?, first("00281051")?)).filter(|(_, w)| *w >= 1.0)
    }

    /// The study a stored series belongs to.
    async fn study_of(&self, series: &Uid) -> Option<String> {
        let series = series.as_str();
        self.store.study_of_series(series).await.ok().flatten()
    }
}
