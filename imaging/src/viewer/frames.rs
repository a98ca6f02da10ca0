//! Each client's render loop: it watches the session's state and sends the frames of the
//! latest one for the client's canvas (co-viewers with the same canvas share one render), JPEG
//! while the view changes and a full-quality frame once it settles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use render::{Orientation, Plane, V3};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use super::scene::{geometry_message, plane_of, render_frame};
use super::view::{self, PlaneKind, ViewState, ViewportState};
use super::{Control, Shared, Viewer};

/// Frames while the view changes.
pub(super) const INTERACTIVE_QUALITY: u8 = 70;

/// The frame after the view settles.
pub(super) const FINAL_QUALITY: u8 = 95;

/// How long the view must rest before the full-quality frame.
pub(super) const SETTLE: Duration = Duration::from_millis(150);

/// A frame message ready to send (header and image), or why it could not be made. Shared
/// co-viewers send the same bytes without copying them.
/// With it, the frame's `geometry` message.
pub(super) type Encoded = Result<(axum::body::Bytes, axum::extract::ws::Utf8Bytes), String>;

/// The frames of a session's latest state, by (viewport, width, height, quality).
#[derive(Default)]
pub(super) struct FrameCache {
    version: u64,
    frames: HashMap<(usize, u32, u32, u8), Arc<tokio::sync::OnceCell<Encoded>>>,
}

impl FrameCache {
    /// The cell for a frame of `version` (a newer version empties the cache); `None` for an
    /// older one.
    pub(super) fn cell(
        &mut self,
        version: u64,
        key: (usize, u32, u32, u8),
    ) -> Option<Arc<tokio::sync::OnceCell<Encoded>>> {
        if version > self.version {
            self.version = version;
            self.frames.clear();
        }
        (version == self.version).then(|| Arc::clone(self.frames.entry(key).or_default()))
    }
}

/// The fraction of the canvas rendered while the view changes, after `skipped` states went by
/// undrawn since the last frame: down by the square root of how far behind, at least a quarter
/// of each side; back up by a quarter each frame that kept up.
pub(super) fn interactive_scale(previous: f64, skipped: u64) -> f64 {
    if skipped == 0 {
        (previous * 1.25).min(1.0)
    } else {
        (previous / (1.0 + skipped as f64).sqrt()).max(0.25)
    }
}

/// A canvas size scaled, each side at least 16 pixels.
fn scaled((w, h): (u32, u32), scale: f64) -> (u32, u32) {
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(16.min(v), v);
    (side(w), side(h))
}

pub(super) async fn render_loop(
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
    // While the view changes: the fraction of the canvas rendered, and the last version drawn.
    let mut scale = 1.0;
    let mut drawn: Option<u64> = None;
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
        // One render at a time per core: a loop waits here, then draws the latest state (one
        // that came while it waited included), and sends what it made after giving the core
        // back, so a slow socket never holds one.
        let Ok(mut permit) = Arc::clone(&viewer.renders).acquire_owned().await else {
            return;
        };
        let mut out: Vec<Message> = Vec::with_capacity(4);
        let snapshot = state.borrow_and_update().clone();
        let canvas = *size.borrow_and_update();
        let as_png = *png.borrow_and_update();
        if !final_frame && sent_version != Some(snapshot.version) {
            out.push(Message::Text(shared.state_message(&snapshot)));
            sent_version = Some(snapshot.version);
        }
        let quality = if final_frame {
            settle_at = None;
            if as_png { 0 } else { FINAL_QUALITY }
        } else {
            settle_at = Some(tokio::time::Instant::now() + SETTLE);
            INTERACTIVE_QUALITY
        };
        // Behind (states went by undrawn): smaller frames until it catches up; the settled
        // frame is always the canvas's own size.
        let canvas = if final_frame {
            canvas
        } else {
            let skipped = drawn.map_or(0, |d| snapshot.version.saturating_sub(d + 1));
            scale = interactive_scale(scale, skipped);
            drawn = Some(snapshot.version);
            scaled(canvas, scale)
        };
        for (i, vs) in snapshot.viewports.iter().enumerate() {
            if vs.empty {
                out.push(Message::Text(
                    json!({ "type": "error", "viewport": i, "message": "no image of this view in the study" })
                        .to_string()
                        .into(),
                ));
                continue;
            }
            let Some(series) = snapshot.series.get(vs.series) else {
                continue;
            };
            // A series not yet built: the slice being looked at, from its own file, while the
            // volume is built.
            if !final_frame
                && let Some((bytes, geometry)) =
                    preview(&viewer, series, vs, canvas, i, snapshot.version).await
            {
                // Sent at once (the state first), as the volume's frame may take a while; the
                // core is given back while sending, never held waiting on a socket.
                drop(permit);
                out.push(Message::Text(geometry));
                out.push(Message::Binary(bytes));
                for m in out.drain(..) {
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
                metrics::counter!("viewer_previews_total").increment(1);
                permit = match Arc::clone(&viewer.renders).acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
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
                            let b = frame_message(i, quality, version, &vp, &bytes);
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
            match frame {
                Ok((bytes, geometry)) => {
                    out.push(Message::Text(geometry));
                    out.push(Message::Binary(bytes));
                    metrics::counter!("viewer_frames_total").increment(1);
                }
                Err(e) => out.push(Message::Text(
                    json!({ "type": "error", "viewport": i, "message": e })
                        .to_string()
                        .into(),
                )),
            }
        }
        drop(permit);
        for m in out {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    }
}

/// The frame header: viewport, PNG or not, quality, version, the frame's size.
fn frame_message(
    i: usize,
    quality: u8,
    version: u64,
    vp: &render::Viewport,
    image: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(image.len() + 16);
    b.push(i as u8);
    b.push(u8::from(quality == 0));
    b.push(quality);
    b.push(0);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(vp.width as u16).to_le_bytes());
    b.extend_from_slice(&(vp.height as u16).to_le_bytes());
    b.extend_from_slice(image);
    b
}

/// The middle image of a series whose volume is not built yet, rendered for a viewport that
/// shows the volume's middle axial slice, with its `geometry` (marked `preview`). Made before
/// the volume's build starts: a slice takes milliseconds, and the build would take every core
/// from it. `None` when the volume is held, the view is another, or the series is not several
/// single grey slices with positions.
async fn preview(
    viewer: &Arc<Viewer>,
    series: &crate::uid::Uid,
    vs: &ViewportState,
    canvas: (u32, u32),
    i: usize,
    version: u64,
) -> Option<(axum::body::Bytes, axum::extract::ws::Utf8Bytes)> {
    let middle_axial =
        vs.plane == PlaneKind::Axial && vs.slice == 0 && vs.slab.is_none() && vs.subtract.is_none();
    if !middle_axial || viewer.cache.get(series.as_str()).is_some() {
        return None;
    }
    let files = viewer.store.series_files(series.as_str()).await.ok()?;
    if files.len() < 3 {
        return None;
    }
    let path = viewer.store.root().join(&files[files.len() / 2]);
    let window = viewer.metadata_window(series).await;
    let renderer = Arc::clone(&viewer.renderer);
    let vs = vs.clone();
    tokio::task::spawn_blocking(move || {
        // A slice of a volume has a position (a film or capture has none, and a series of them
        // shows its first image, not its middle one). Two copies of it half a millimetre
        // either side make a volume whose middle is the slice, in patient coordinates.
        let slice = crate::dicom::series::read_slice(&path).ok()?;
        let [row, col] = slice.orientation;
        let normal = row.cross(col).normalized()?;
        let mut before = slice.clone();
        before.position = slice.position - normal * 0.5;
        let mut after = slice;
        after.position = after.position + normal * 0.5;
        let built = crate::dicom::series::build_volume(vec![before, after]).ok()?;
        let window = window.unwrap_or_else(|| built.range_window());
        let (image, vp) =
            render_frame(&renderer, &built, &vs, window, canvas, INTERACTIVE_QUALITY).ok()?;
        let mut geometry: Json =
            serde_json::from_str(&geometry_message(&built, &vs, &vp, i, version, &[])).ok()?;
        geometry
            .as_object_mut()?
            .insert("preview".into(), Json::Bool(true));
        Some((
            axum::body::Bytes::from(frame_message(i, INTERACTIVE_QUALITY, version, &vp, &image)),
            geometry.to_string().into(),
        ))
    })
    .await
    .ok()
    .flatten()
}

/// Series compare with synchronised scrolling: the second viewport shows the slice of its
/// series nearest the patient position the first viewport shows (same standard plane).
pub(super) async fn synced(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_shrink_while_behind_and_grow_back() {
        assert_eq!(interactive_scale(1.0, 0), 1.0);
        // Three states undrawn: half size.
        assert_eq!(interactive_scale(1.0, 3), 0.5);
        // Never below a quarter of each side.
        assert_eq!(interactive_scale(0.3, 99), 0.25);
        // Keeping up: a quarter larger each frame, up to the full size.
        assert_eq!(interactive_scale(0.5, 0), 0.625);
        assert_eq!(interactive_scale(0.9, 0), 1.0);
        assert_eq!(scaled((512, 400), 0.5), (256, 200));
        assert_eq!(scaled((40, 20), 0.25), (16, 16));
        assert_eq!(scaled((10, 10), 0.25), (10, 10));
    }
}
