//! The active speaker: each publisher's audio level (RFC 6464 dBov, 0 loud, 127 silent)
//! smoothed over about 300 ms; the loudest one becomes the speaker once it has stayed the
//! loudest for [`HOLD`] (so a cough does not move everyone's layout), and someone silent for a
//! second no longer counts.

use std::collections::BTreeMap;

use crate::{Micros, ParticipantId};

/// How long a new loudest participant must stay loudest to become the speaker.
pub const HOLD: Micros = 300_000;
/// How long without audio before a participant is considered silent.
const QUIET: Micros = 1_000_000;
/// Levels quieter than this (dBov) count as silence.
const SILENCE: u8 = 90;

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Smoothed loudness, 0..127 (127 = loudest).
    loudness: f64,
    at: Micros,
}

/// Tracks who speaks.
#[derive(Debug, Clone, Default)]
pub struct ActiveSpeaker {
    levels: BTreeMap<ParticipantId, Level>,
    current: Option<ParticipantId>,
    candidate: Option<(ParticipantId, Micros)>,
}

impl ActiveSpeaker {
    /// The current speaker.
    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    /// A level from `p` at `now`; returns the new speaker when it changes.
    pub fn level(&mut self, p: ParticipantId, dbov: u8, now: Micros) -> Option<ParticipantId> {
        let loud = if dbov >= SILENCE {
            0.0
        } else {
            f64::from(127 - dbov.min(127))
        };
        let entry = self.levels.entry(p).or_insert(Level {
            loudness: 0.0,
            at: now,
        });
        // About 300 ms smoothing for 20 ms packets.
        let alpha = (now.saturating_sub(entry.at) as f64 / 300_000.0).clamp(0.05, 1.0);
        entry.loudness += alpha * (loud - entry.loudness);
        entry.at = now;
        let loudest = self
            .levels
            .iter()
            .filter(|(_, l)| now.saturating_sub(l.at) < QUIET && l.loudness > 1.0)
            .max_by(|a, b| a.1.loudness.total_cmp(&b.1.loudness))
            .map(|(p, _)| *p)?;
        if Some(loudest) == self.current {
            self.candidate = None;
            return None;
        }
        match self.candidate {
            Some((c, since)) if c == loudest => {
                if now.saturating_sub(since) >= HOLD {
                    self.current = Some(loudest);
                    self.candidate = None;
                    return Some(loudest);
                }
            }
            _ => self.candidate = Some((loudest, now)),
        }
        None
    }

    /// `p` left.
    pub fn forget(&mut self, p: ParticipantId) {
        self.levels.remove(&p);
        if self.current == Some(p) {
            self.current = None;
        }
        if self.candidate.is_some_and(|(c, _)| c == p) {
            self.candidate = None;
        }
    }
}
