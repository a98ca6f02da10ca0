//! The readiness registry: each subsystem (database, imaging, sfu, ...) reports its state here,
//! and `/readyz` answers from it. Cloning shares the registry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A subsystem's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Starting up; not serving yet.
    Starting,
    /// Serving.
    Ready,
    /// Not serving, with the reason (no patient data).
    Failed(String),
    /// Shutting down.
    Stopping,
}

impl State {
    /// Short name used in `/readyz`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Failed(_) => "failed",
            Self::Stopping => "stopping",
        }
    }
}

/// Shared map from subsystem name to state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<String, State>>>);

impl Readiness {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `name`'s state (and the `subsystem_ready` gauge).
    pub fn set(&self, name: &str, state: State) {
        let ready = if state == State::Ready { 1.0 } else { 0.0 };
        metrics::gauge!("subsystem_ready", "subsystem" => name.to_owned()).set(ready);
        if let State::Failed(why) = &state {
            tracing::warn!(subsystem = name, reason = %why, "subsystem failed");
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), state);
    }

    /// Every subsystem's state, by name.
    pub fn snapshot(&self) -> BTreeMap<String, State> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether at least one subsystem is registered and all are ready.
    pub fn all_ready(&self) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        !map.is_empty() && map.values().all(|s| *s == State::Ready)
    }

    /// Marks every subsystem as stopping.
    pub fn stopping(&self) {
        let names: Vec<String> = self.snapshot().into_keys().collect();
        for n in names {
            self.set(&n, State::Stopping);
        }
    }
}
