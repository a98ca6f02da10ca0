//! The volume cache: decoded volumes kept in memory within a byte budget (`imaging.volume_cache`),
//! one copy per series shared by every viewer, least recently used out first. A volume counts
//! at its byte budget: its voxels and room for the j-fastest copy a sagittal view builds. Concurrent
//! requests for a series that is not cached build it once: the others wait for that build.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::dicom::series::{BuiltVolume, SeriesError};

/// Why the cache could not give a volume.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Building the volume failed (the reason is the builder's).
    #[error("{0}")]
    Build(Arc<str>),
    /// The volume alone is larger than the whole cache.
    #[error("series {series} needs {bytes} bytes, more than the volume cache's {budget}")]
    TooLarge {
        /// The series.
        series: String,
        /// Bytes it needs.
        bytes: u64,
        /// The budget.
        budget: u64,
    },
}

enum Slot {
    Building,
    Ready {
        volume: Arc<BuiltVolume>,
        bytes: u64,
        last_used: u64,
    },
}

struct State {
    slots: HashMap<String, Slot>,
    clock: u64,
}

/// Volumes by series UID within a byte budget.
pub struct VolumeCache {
    budget: u64,
    state: Mutex<State>,
    built: Condvar,
}

impl std::fmt::Debug for VolumeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeCache")
            .field("budget", &self.budget)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl VolumeCache {
    /// An empty cache holding at most `budget` bytes of voxels.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            state: Mutex::new(State {
                slots: HashMap::new(),
                clock: 0,
            }),
            built: Condvar::new(),
        }
    }

    /// Bytes of volumes held now.
    pub fn bytes(&self) -> u64 {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .slots
            .values()
            .map(|s| {
                if let Slot::Ready { bytes, .. } = s {
                    *bytes
                } else {
                    0
                }
            })
            .sum()
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .slots
            .values()
            .filter(|s| matches!(s, Slot::Ready { .. }))
            .count()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The volume of `series` if it is held (and marks it used).
    pub fn get(&self, series: &str) -> Option<Arc<BuiltVolume>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.clock += 1;
        let now = state.clock;
        match state.slots.get_mut(series) {
            Some(Slot::Ready {
                volume, last_used, ..
            }) => {
                *last_used = now;
                Some(Arc::clone(volume))
            }
            _ => None,
        }
    }

    /// The volume of `series`, built with `build` if it is not held (once, however many ask at
    /// the same time). A failed build is not remembered: those waiting for it, and the next
    /// request, try again.
    pub fn get_or_build(
        &self,
        series: &str,
        build: impl FnOnce() -> Result<BuiltVolume, SeriesError>,
    ) -> Result<Arc<BuiltVolume>, CacheError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            state.clock += 1;
            let now = state.clock;
            match state.slots.get_mut(series) {
                Some(Slot::Ready {
                    volume, last_used, ..
                }) => {
                    *last_used = now;
                    return Ok(Arc::clone(volume));
                }
                Some(Slot::Building) => {
                    state = self
                        .built
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                None => break,
            }
        }
        state.slots.insert(series.to_owned(), Slot::Building);
        drop(state);

        let result = build().map_err(|e| CacheError::Build(e.to_string().into()));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = result.and_then(|built| {
            // A volume may come to hold a second copy of its voxels (for sagittal views).
            // A colour stack's RGB frames count beside its luma volume.
            let rgb = built
                .stack
                .as_ref()
                .and_then(|s| s.colour.as_ref())
                .map_or(0, |c| {
                    let [nx, ny, _] = built.volume.geometry().dims();
                    nx * ny * c.frames() * 3
                });
            let bytes = (built.volume.byte_budget() + rgb) as u64;
            if bytes > self.budget {
                return Err(CacheError::TooLarge {
                    series: series.to_owned(),
                    bytes,
                    budget: self.budget,
                });
            }
            Ok((Arc::new(built), bytes))
        });
        let reply = match outcome {
            Ok((volume, bytes)) => {
                // Make room: least recently used first.
                loop {
                    let held: u64 = state
                        .slots
                        .values()
                        .map(|s| {
                            if let Slot::Ready { bytes, .. } = s {
                                *bytes
                            } else {
                                0
                            }
                        })
                        .sum();
                    if held + bytes <= self.budget {
                        break;
                    }
                    let oldest = state
                        .slots
                        .iter()
                        .filter_map(|(k, s)| {
                            if let Slot::Ready { last_used, .. } = s {
                                Some((k.clone(), *last_used))
                            } else {
                                None
                            }
                        })
                        .min_by_key(|(_, t)| *t)
                        .map(|(k, _)| k);
                    match oldest {
                        Some(k) => {
                            state.slots.remove(&k);
                        }
                        None => break,
                    }
                }
                state.clock += 1;
                let last_used = state.clock;
                state.slots.insert(
                    series.to_owned(),
                    Slot::Ready {
                        volume: Arc::clone(&volume),
                        bytes,
                        last_used,
                    },
                );
                Ok(volume)
            }
            Err(e) => {
                // Not remembered: whoever waited (and the next request) tries again.
                state.slots.remove(series);
                Err(e)
            }
        };
        drop(state);
        self.built.notify_all();
        reply
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use render::{Geometry, Rescale, V3, Volume};

    use super::*;

    fn volume(n: usize) -> BuiltVolume {
        let g = Geometry::axis_aligned([n, n, n], V3::default(), [1.0; 3]).unwrap();
        BuiltVolume {
            volume: Volume::new(g, vec![0i16; n * n * n], Rescale::default()).unwrap(),
            monochrome1: false,
            tilt_degrees: 0.0,
            resampled_from: None,
            stack: None,
        }
    }

    #[test]
    fn least_recently_used_leaves_first() {
        // Voxels, and room for the j-fastest copy.
        let one = 16 * 16 * 16 * 2 * 2;
        let cache = VolumeCache::new(2 * one);
        let a = cache.get_or_build("a", || Ok(volume(16))).unwrap();
        cache.get_or_build("b", || Ok(volume(16))).unwrap();
        let again = cache.get_or_build("a", || panic!("a is cached")).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "one copy shared");
        cache.get_or_build("c", || Ok(volume(16))).unwrap();
        assert_eq!((cache.len(), cache.bytes()), (2, 2 * one));
        cache
            .get_or_build("a", || panic!("a was used after b, so b left"))
            .unwrap();
        let rebuilt = AtomicUsize::new(0);
        cache
            .get_or_build("b", || {
                rebuilt.fetch_add(1, Ordering::SeqCst);
                Ok(volume(16))
            })
            .unwrap();
        assert_eq!(rebuilt.load(Ordering::SeqCst), 1);
        assert!(matches!(
            cache.get_or_build("huge", || Ok(volume(40))),
            Err(CacheError::TooLarge { .. })
        ));
        assert!(matches!(
            cache.get_or_build("bad", || Err(SeriesError::NotAVolume(
                "a single image".into()
            ))),
            Err(CacheError::Build(_))
        ));
        assert!(
            cache.get_or_build("bad", || Ok(volume(8))).is_ok(),
            "a failure is not remembered"
        );
    }

    #[test]
    fn concurrent_requests_build_once() {
        let cache = Arc::new(VolumeCache::new(1 << 30));
        let builds = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (cache, builds) = (Arc::clone(&cache), Arc::clone(&builds));
                std::thread::spawn(move || {
                    cache
                        .get_or_build("s", || {
                            builds.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(volume(32))
                        })
                        .unwrap()
                })
            })
            .collect();
        let volumes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert!(volumes.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    }
}
