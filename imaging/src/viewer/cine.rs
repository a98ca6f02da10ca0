//! A session's housekeeping task: participants whose grace period ran out are removed
//! (control passes on), and cine is played by the server. It sleeps until the next frame is
//! due, a state change (cine may have started), or the next housekeeping round, whichever
//! comes first: a session that plays nothing costs four wake-ups a second.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::scene::slices_along;
use super::view::Event;
use super::{Shared, Viewer};

/// How often a session without cine looks for participants whose grace period ran out.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// A session's housekeeping: participants whose grace period ran out are removed (control
/// passes on), and cine, paced by the server: each playing viewport moves one slice per tick of
/// its rate. A client that cannot keep up skips states (its render loop only sees the latest);
/// nothing queues. Ends with the session.
pub(super) async fn cine(viewer: Arc<Viewer>, name: String, shared: std::sync::Weak<Shared>) {
    let mut next: HashMap<usize, tokio::time::Instant> = HashMap::new();
    // State changes wake the task (a cine may have started); the receiver does not keep the
    // session alive, and ends with it.
    let Some(mut changes) = shared.upgrade().map(|s| s.state.subscribe()) else {
        return;
    };
    let mut wake = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            r = changes.changed() => if r.is_err() { return },
        }
        wake = tokio::time::Instant::now() + HOUSEKEEPING;
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
        next.retain(|i, _| playing.iter().any(|(p, _)| p == i));
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
            // Behind (a slow volume build): the next frame comes a period from now, not a burst.
            next.insert(i, (due + period).max(now));
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
        if let Some(due) = next.values().min() {
            wake = wake.min(*due);
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
