//! sfu-core: the forwarding logic of the SFU as a pure state machine, independent of any
//! WebRTC library. A [`Room`] takes events (joins, leaves, drops and returns, published tracks,
//! incoming RTP packets described by their headers, bandwidth estimates, requested sizes,
//! NACKs) with the time passed in, and answers with what the transport must do: forward a
//! packet to a subscriber with rewritten sequence number and timestamp, retransmit one from the
//! buffer, ask a publisher for a keyframe, tell participants who joined, left, is reconnecting
//! or is speaking. Nothing here does IO or reads a clock.
//!
//! - Layer choice: each subscriber gets, per simulcast video track, the highest layer that fits
//!   its bandwidth estimate and the size it asked for; a switch waits for a keyframe of the new
//!   layer (asked for at most once per 500 ms per publisher track).
//! - Rewriting: each subscriber sees one continuous sequence-number space and non-decreasing
//!   timestamps per track, whatever layers it was switched between.
//! - NACK: the last [`BUFFER`] packets sent to each subscriber per track are kept (by their
//!   rewritten sequence number) and resent on request.
//! - Rejoin: a dropped participant keeps its place (tracks and subscriptions) for the grace
//!   period; the others see "reconnecting", then either "active" again or a leave.

use std::collections::{BTreeMap, VecDeque};

pub mod message;
mod speaker;

pub use speaker::ActiveSpeaker;

/// Microseconds on the caller's monotonic clock.
pub type Micros = u64;

/// A participant, by the transport's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u32);

/// A published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u32);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Opus.
    Audio,
    /// VP8 or H.264 (a camera or a screen share).
    Video,
}

/// A simulcast layer of a video track: its nominal bitrate and picture height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// Bits per second.
    pub bitrate: u64,
    /// Picture height in pixels.
    pub height: u32,
}

/// How many packets per subscriber and track are kept for retransmission.
pub const BUFFER: usize = 512;
/// The least time between two keyframe requests to one publisher track.
pub const PLI_INTERVAL: Micros = 500_000;
/// A simulcast layer without a packet for this long counts as off (a browser pauses layers
/// its own bandwidth or CPU cannot carry): subscribers are moved to the layers still live.
pub const LAYER_TIMEOUT: Micros = 1_000_000;

/// An incoming RTP packet, as the core needs to see it (the payload stays with the transport,
/// named by `handle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The track.
    pub track: TrackId,
    /// The simulcast layer it belongs to (0 for audio and single-layer video).
    pub layer: u8,
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// The last packet of a frame.
    pub marker: bool,
    /// The first packet of a keyframe.
    pub keyframe: bool,
    /// Audio level (RFC 6464, 0 loud to 127 silent), for audio.
    pub audio_level: Option<u8>,
    /// The transport's reference to the payload.
    pub handle: u64,
}

/// What the transport must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send the packet `handle` to `to` with these header fields.
    Forward {
        /// The subscriber.
        to: ParticipantId,
        /// The track.
        track: TrackId,
        /// Rewritten sequence number.
        seq: u16,
        /// Rewritten timestamp.
        ts: u32,
        /// Marker bit.
        marker: bool,
        /// The payload.
        handle: u64,
    },
    /// Resend a packet (a NACK answered from the buffer).
    Retransmit {
        /// The subscriber.
        to: ParticipantId,
        /// The track.
        track: TrackId,
        /// Its sequence number as the subscriber knows it.
        seq: u16,
        /// Its timestamp as sent.
        ts: u32,
        /// The payload.
        handle: u64,
    },
    /// Ask the publisher of `track` for a keyframe of `layer` (a PLI).
    RequestKeyframe {
        /// The publisher.
        from: ParticipantId,
        /// The track.
        track: TrackId,
        /// The layer.
        layer: u8,
    },
    /// Tell everyone in the room.
    Notice(Notice),
}

/// What participants are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Someone joined.
    Joined(ParticipantId),
    /// Someone's connection dropped; their place is kept.
    Reconnecting(ParticipantId),
    /// Someone came back within the grace period.
    Resumed(ParticipantId),
    /// Someone left (or did not come back in time).
    Left(ParticipantId),
    /// A track was published.
    Published(ParticipantId, TrackId, Kind),
    /// A track was unpublished.
    Unpublished(ParticipantId, TrackId),
    /// The loudest participant changed.
    ActiveSpeaker(ParticipantId),
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The room is full.
    #[error("the room is full ({0} participants)")]
    Full(usize),
    /// Not in the room.
    #[error("participant {0:?} is not in the room")]
    NotInRoom(ParticipantId),
    /// Already in the room (and not dropped).
    #[error("participant {0:?} is already in the room")]
    AlreadyIn(ParticipantId),
    /// The participant's token does not allow publishing.
    #[error("participant {0:?} may not publish")]
    MayNotPublish(ParticipantId),
    /// A track's layers are not ordered or are empty.
    #[error("layers must be non-empty and increase in bitrate and height")]
    BadLayers,
    /// No such track.
    #[error("no track {0:?}")]
    NoTrack(TrackId),
}

#[derive(Debug, Clone)]
struct Participant {
    may_publish: bool,
    may_subscribe: bool,
    /// When the connection dropped (keeps the place until `+ grace`).
    dropped_at: Option<Micros>,
    /// Bandwidth estimate toward this participant, bits per second.
    estimate: u64,
}

#[derive(Debug, Clone)]
struct Track {
    owner: ParticipantId,
    kind: Kind,
    layers: Vec<Layer>,
    last_pli: Option<Micros>,
    /// When each layer's last packet came.
    seen: Vec<Option<Micros>>,
}

impl Track {
    fn live(&self, layer: usize, now: Micros) -> bool {
        self.seen
            .get(layer)
            .copied()
            .flatten()
            .is_some_and(|t| now.saturating_sub(t) <= LAYER_TIMEOUT)
    }
}

/// One subscriber's view of one track: the layer it gets and the rewriting state.
#[derive(Debug, Clone, Default)]
struct Downstream {
    /// The layer being forwarded (None until the first keyframe for video).
    current: Option<u8>,
    /// The layer wanted.
    target: u8,
    /// The largest picture height asked for.
    max_height: Option<u32>,
    /// Rewriting: out = in + offset (wrapping).
    seq_offset: u16,
    ts_offset: u32,
    /// The last sequence number and timestamp sent.
    last_seq: Option<u16>,
    last_ts: Option<u32>,
    /// Whether the next packet starts after a switch (offsets to be set).
    rebase: bool,
    /// Sent packets by rewritten sequence number.
    sent: VecDeque<(u16, u32, u64)>,
}

/// A room: its participants, tracks and each subscriber's downstream state.
#[derive(Debug, Clone)]
pub struct Room {
    max_participants: usize,
    grace: Micros,
    participants: BTreeMap<ParticipantId, Participant>,
    tracks: BTreeMap<TrackId, Track>,
    downstream: BTreeMap<(ParticipantId, TrackId), Downstream>,
    next_track: u32,
    speaker: ActiveSpeaker,
}

impl Room {
    /// A room for at most `max_participants`, keeping a dropped participant's place for
    /// `grace`.
    pub fn new(max_participants: usize, grace: Micros) -> Self {
        Self {
            max_participants,
            grace,
            participants: BTreeMap::new(),
            tracks: BTreeMap::new(),
            downstream: BTreeMap::new(),
            next_track: 1,
            speaker: ActiveSpeaker::default(),
        }
    }

    /// Participants in the room (dropped ones included while their place is kept).
    pub fn participants(&self) -> Vec<ParticipantId> {
        self.participants.keys().copied().collect()
    }

    /// Whether `p` is in the room but reconnecting.
    pub fn is_reconnecting(&self, p: ParticipantId) -> bool {
        self.participants
            .get(&p)
            .is_some_and(|x| x.dropped_at.is_some())
    }

    /// The layer `p` currently gets of `track`.
    pub fn current_layer(&self, p: ParticipantId, track: TrackId) -> Option<u8> {
        self.downstream.get(&(p, track)).and_then(|d| d.current)
    }

    /// Someone joins (or, if their place is kept, comes back: resumed, nothing lost).
    pub fn join(
        &mut self,
        p: ParticipantId,
        may_publish: bool,
        may_subscribe: bool,
        now: Micros,
    ) -> Result<Vec<Output>, RoomError> {
        if let Some(existing) = self.participants.get_mut(&p) {
            if existing.dropped_at.take().is_some() {
                return Ok(vec![Output::Notice(Notice::Resumed(p))]);
            }
            return Err(RoomError::AlreadyIn(p));
        }
        if self.participants.len() >= self.max_participants {
            return Err(RoomError::Full(self.max_participants));
        }
        self.participants.insert(
            p,
            Participant {
                may_publish,
                may_subscribe,
                dropped_at: None,
                estimate: u64::MAX,
            },
        );
        if may_subscribe {
            let others: Vec<TrackId> = self
                .tracks
                .iter()
                .filter(|(_, t)| t.owner != p)
                .map(|(id, _)| *id)
                .collect();
            for t in others {
                self.subscribe(p, t, now);
            }
        }
        Ok(vec![Output::Notice(Notice::Joined(p))])
    }

    fn subscribe(&mut self, p: ParticipantId, track: TrackId, now: Micros) {
        let d = Downstream {
            rebase: true,
            ..Downstream::default()
        };
        self.downstream.insert((p, track), d);
        self.retarget(p, track, now);
    }

    /// The connection dropped: the place is kept for the grace period.
    pub fn dropped(&mut self, p: ParticipantId, now: Micros) -> Result<Vec<Output>, RoomError> {
        let part = self
            .participants
            .get_mut(&p)
            .ok_or(RoomError::NotInRoom(p))?;
        if part.dropped_at.is_some() {
            return Ok(Vec::new());
        }
        part.dropped_at = Some(now);
        Ok(vec![Output::Notice(Notice::Reconnecting(p))])
    }

    /// Someone leaves: their tracks go, and everyone's subscriptions to them.
    pub fn leave(&mut self, p: ParticipantId) -> Result<Vec<Output>, RoomError> {
        if self.participants.remove(&p).is_none() {
            return Err(RoomError::NotInRoom(p));
        }
        let mut out = Vec::new();
        let mine: Vec<TrackId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.owner == p)
            .map(|(id, _)| *id)
            .collect();
        for t in mine {
            out.extend(self.unpublish(p, t)?);
        }
        self.downstream.retain(|(sub, _), _| *sub != p);
        self.speaker.forget(p);
        out.push(Output::Notice(Notice::Left(p)));
        Ok(out)
    }

    /// Publishes a track (video with its simulcast layers, lowest first).
    pub fn publish(
        &mut self,
        p: ParticipantId,
        kind: Kind,
        layers: Vec<Layer>,
    ) -> Result<(TrackId, Vec<Output>), RoomError> {
        let part = self.participants.get(&p).ok_or(RoomError::NotInRoom(p))?;
        if !part.may_publish {
            return Err(RoomError::MayNotPublish(p));
        }
        let layers = if kind == Kind::Audio {
            vec![Layer {
                bitrate: 0,
                height: 0,
            }]
        } else {
            layers
        };
        if layers.is_empty()
            || layers
                .windows(2)
                .any(|w| w[1].bitrate <= w[0].bitrate || w[1].height < w[0].height)
        {
            return Err(RoomError::BadLayers);
        }
        let id = TrackId(self.next_track);
        self.next_track += 1;
        self.tracks.insert(
            id,
            Track {
                owner: p,
                kind,
                seen: vec![None; layers.len()],
                layers,
                last_pli: None,
            },
        );
        let subscribers: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(sub, x)| **sub != p && x.may_subscribe)
            .map(|(sub, _)| *sub)
            .collect();
        for s in subscribers {
            // A new track has no live layer yet: the time does not matter.
            self.subscribe(s, id, 0);
        }
        Ok((id, vec![Output::Notice(Notice::Published(p, id, kind))]))
    }

    /// Unpublishes a track.
    pub fn unpublish(
        &mut self,
        p: ParticipantId,
        track: TrackId,
    ) -> Result<Vec<Output>, RoomError> {
        match self.tracks.get(&track) {
            Some(t) if t.owner == p => {}
            _ => return Err(RoomError::NoTrack(track)),
        }
        self.tracks.remove(&track);
        self.downstream.retain(|(_, t), _| *t != track);
        Ok(vec![Output::Notice(Notice::Unpublished(p, track))])
    }

    /// A new bandwidth estimate toward `p` (from TWCC or REMB).
    pub fn estimate(&mut self, p: ParticipantId, bps: u64, now: Micros) -> Vec<Output> {
        if let Some(part) = self.participants.get_mut(&p) {
            part.estimate = bps;
        }
        self.retarget_all(p, now)
    }

    /// The largest picture `p` wants of `track` (its tile's size).
    pub fn request_height(
        &mut self,
        p: ParticipantId,
        track: TrackId,
        height: u32,
        now: Micros,
    ) -> Vec<Output> {
        if let Some(d) = self.downstream.get_mut(&(p, track)) {
            d.max_height = Some(height);
        }
        self.retarget(p, track, now);
        self.keyframe_if_switching(p, track, now)
    }

    fn retarget_all(&mut self, p: ParticipantId, now: Micros) -> Vec<Output> {
        let tracks: Vec<TrackId> = self
            .downstream
            .keys()
            .filter(|(s, _)| *s == p)
            .map(|(_, t)| *t)
            .collect();
        let mut out = Vec::new();
        for t in tracks {
            self.retarget(p, t, now);
            out.extend(self.keyframe_if_switching(p, t, now));
        }
        out
    }

    /// Sets the target layer of (`p`, `track`): the highest live layer that fits the estimate
    /// (shared among the subscriber's video tracks) and the requested height; the lowest live
    /// one when none fits; the lowest when none is live yet.
    fn retarget(&mut self, p: ParticipantId, track: TrackId, now: Micros) {
        let estimate = self.participants.get(&p).map_or(u64::MAX, |x| x.estimate);
        let videos = self
            .downstream
            .keys()
            .filter(|(s, t)| *s == p && self.tracks.get(t).is_some_and(|x| x.kind == Kind::Video))
            .count()
            .max(1) as u64;
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(d) = self.downstream.get_mut(&(p, track)) else {
            return;
        };
        let budget = estimate / videos;
        let live: Vec<usize> = (0..t.layers.len()).filter(|&i| t.live(i, now)).collect();
        let mut target = live.first().copied().unwrap_or(0) as u8;
        for &i in &live {
            let layer = t.layers[i];
            let fits_rate = layer.bitrate.saturating_mul(10) <= budget.saturating_mul(9);
            let fits_size = d.max_height.is_none_or(|h| layer.height <= h);
            if fits_rate && fits_size {
                target = i as u8;
            }
        }
        d.target = target;
    }

    /// Asks for a keyframe when (`p`, `track`) waits to switch layers, throttled per track.
    fn keyframe_if_switching(
        &mut self,
        p: ParticipantId,
        track: TrackId,
        now: Micros,
    ) -> Vec<Output> {
        let Some(d) = self.downstream.get(&(p, track)) else {
            return Vec::new();
        };
        if d.current == Some(d.target) {
            return Vec::new();
        }
        let layer = d.target;
        self.pli(track, layer, now)
    }

    fn pli(&mut self, track: TrackId, layer: u8, now: Micros) -> Vec<Output> {
        let Some(t) = self.tracks.get_mut(&track) else {
            return Vec::new();
        };
        if t.kind != Kind::Video {
            return Vec::new();
        }
        if t.last_pli.is_some_and(|at| now < at + PLI_INTERVAL) {
            return Vec::new();
        }
        t.last_pli = Some(now);
        vec![Output::RequestKeyframe {
            from: t.owner,
            track,
            layer,
        }]
    }

    /// A subscriber asks for a keyframe (its decoder lost the picture).
    pub fn keyframe_request(
        &mut self,
        p: ParticipantId,
        track: TrackId,
        now: Micros,
    ) -> Vec<Output> {
        let layer = self
            .downstream
            .get(&(p, track))
            .and_then(|d| d.current.or(Some(d.target)))
            .unwrap_or(0);
        self.pli(track, layer, now)
    }

    /// An incoming packet: forwarded to every subscriber that gets its layer, rewritten.
    pub fn packet(&mut self, packet: Packet, now: Micros) -> Vec<Output> {
        let Some(t) = self.tracks.get_mut(&packet.track) else {
            return Vec::new();
        };
        let owner = t.owner;
        let kind = t.kind;
        if self
            .participants
            .get(&owner)
            .is_none_or(|x| x.dropped_at.is_some())
        {
            return Vec::new();
        }
        let layer = usize::from(packet.layer);
        let came_live = t.layers.len() > 1 && layer < t.seen.len() && !t.live(layer, now);
        if let Some(seen) = t.seen.get_mut(layer) {
            *seen = Some(now);
        }
        let mut out = Vec::new();
        if came_live {
            // A layer (re)started: subscribers may want it.
            out.extend(self.retarget_track(packet.track, now));
        }
        if let (Kind::Audio, Some(level)) = (kind, packet.audio_level)
            && let Some(changed) = self.speaker.level(owner, level, now)
        {
            out.push(Output::Notice(Notice::ActiveSpeaker(changed)));
        }
        let subscribers: Vec<ParticipantId> = self
            .downstream
            .keys()
            .filter(|(_, tr)| *tr == packet.track)
            .map(|(s, _)| *s)
            .collect();
        let mut wants_keyframe = None;
        for s in subscribers {
            if self
                .participants
                .get(&s)
                .is_none_or(|x| x.dropped_at.is_some())
            {
                continue;
            }
            let Some(d) = self.downstream.get_mut(&(s, packet.track)) else {
                continue;
            };
            // Switch at a keyframe of the target layer (audio: always layer 0).
            if kind == Kind::Video
                && packet.keyframe
                && packet.layer == d.target
                && d.current != Some(d.target)
            {
                d.current = Some(d.target);
                d.rebase = true;
            } else if kind == Kind::Audio && d.current.is_none() {
                d.current = Some(0);
            }
            if kind == Kind::Video && d.current != Some(d.target) && packet.layer == d.target {
                // Waiting for a keyframe of the target layer: ask (throttled) until it comes.
                wants_keyframe = Some(packet.layer);
            }
            if d.current != Some(packet.layer) {
                continue;
            }
            if d.rebase {
                // Continue right after what this subscriber last got.
                let next_seq = d.last_seq.map_or(packet.seq, |s| s.wrapping_add(1));
                let next_ts = d.last_ts.map_or(packet.ts, |s| s.wrapping_add(1));
                d.seq_offset = next_seq.wrapping_sub(packet.seq);
                d.ts_offset = next_ts.wrapping_sub(packet.ts);
                d.rebase = false;
            }
            let seq = packet.seq.wrapping_add(d.seq_offset);
            let ts = packet.ts.wrapping_add(d.ts_offset);
            // Out-of-order packets older than the last sent are dropped (the receiver NACKs).
            if let Some(last) = d.last_seq
                && seq.wrapping_sub(last) as i16 <= 0
            {
                continue;
            }
            d.last_seq = Some(seq);
            if d.last_ts.is_none_or(|l| ts.wrapping_sub(l) as i32 > 0) {
                d.last_ts = Some(ts);
            }
            d.sent.push_back((seq, ts, packet.handle));
            if d.sent.len() > BUFFER {
                d.sent.pop_front();
            }
            out.push(Output::Forward {
                to: s,
                track: packet.track,
                seq,
                ts,
                marker: packet.marker,
                handle: packet.handle,
            });
        }
        if let Some(layer) = wants_keyframe {
            out.extend(self.pli(packet.track, layer, now));
        }
        out
    }

    /// A subscriber's NACK: resend what the buffer still has.
    pub fn nack(&self, p: ParticipantId, track: TrackId, seqs: &[u16]) -> Vec<Output> {
        let Some(d) = self.downstream.get(&(p, track)) else {
            return Vec::new();
        };
        seqs.iter()
            .filter_map(|want| d.sent.iter().find(|(s, _, _)| s == want))
            .map(|&(seq, ts, handle)| Output::Retransmit {
                to: p,
                track,
                seq,
                ts,
                handle,
            })
            .collect()
    }

    /// Re-chooses the layer of every subscriber of `track`.
    fn retarget_track(&mut self, track: TrackId, now: Micros) -> Vec<Output> {
        let subscribers: Vec<ParticipantId> = self
            .downstream
            .keys()
            .filter(|(_, t)| *t == track)
            .map(|(s, _)| *s)
            .collect();
        self.retarget_subscribers(track, subscribers, now)
    }

    /// Re-chooses the layer of `track` for each of `subscribers`; the keyframe requests their
    /// switches need.
    fn retarget_subscribers(
        &mut self,
        track: TrackId,
        subscribers: Vec<ParticipantId>,
        now: Micros,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        for s in subscribers {
            self.retarget(s, track, now);
            out.extend(self.keyframe_if_switching(s, track, now));
        }
        out
    }

    /// Time passes: participants whose grace ran out leave; subscribers of simulcast layers
    /// that went quiet move to layers still live.
    pub fn tick(&mut self, now: Micros) -> Vec<Output> {
        let stale: Vec<TrackId> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.layers.len() > 1
                    && (0..t.layers.len()).any(|i| t.seen[i].is_some() && !t.live(i, now))
            })
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for track in stale {
            let subscribers: Vec<ParticipantId> = self
                .downstream
                .iter()
                .filter(|((_, t), d)| {
                    *t == track
                        && self.tracks.get(t).is_some_and(|x| {
                            !x.live(usize::from(d.target), now)
                                || d.current.is_some_and(|c| !x.live(usize::from(c), now))
                        })
                })
                .map(|((s, _), _)| *s)
                .collect();
            out.extend(self.retarget_subscribers(track, subscribers, now));
        }
        let expired: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, x)| x.dropped_at.is_some_and(|at| now >= at + self.grace))
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            out.extend(self.leave(p).unwrap_or_default());
        }
        out
    }
}

#[cfg(test)]
mod tests;
