//! The webrtc-rs 0.21 transport around `sfu-core` (`sfu.transport = "webrtc-rs"`; the str0m one
//! in `transport` is the default), and the helpers both use (keyframe detection, simulcast
//! layers, counters, room figures). One server-side peer connection per participant, on a UDP
//! port handed out from `listeners.sfu_media_udp` (the library has no port
//! range of its own). What a participant publishes arrives as remote tracks; each becomes a
//! core track, and every other participant gets a local track of the same codec, negotiated by
//! a server offer. Each RTP packet goes through the core (`Room::packet`), which says who gets
//! it with which sequence number and timestamp; keyframe requests the core asks for go to the
//! publisher as PLIs. Nothing here decides who gets what.
//!
//! Signalling carries the SDP: the client offers what it publishes (`offer` → `answer`), the
//! server offers what it forwards (`offer` from the server → `answer` from the client); the
//! server's descriptions hold their candidates (it waits for gathering, which is immediate on a
//! host address), and the client may trickle its own (`candidate`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{Value, json};
use sfu_core::{Kind, Layer, Output, ParticipantId, TrackId};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::signalling::Rooms;

/// Why a media operation failed (told to the client as an error message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The SDP or candidate was refused.
    #[error("{field}: {reason}")]
    Refused {
        /// The message field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Every port of the media range is taken.
    #[error("no free UDP port in listeners.sfu_media_udp")]
    NoPort,
    /// The participant is not in a room any more.
    #[error("not in the room")]
    Gone,
}

pub(crate) fn refused(field: &'static str, e: impl std::fmt::Display) -> MediaError {
    MediaError::Refused {
        field,
        reason: e.to_string(),
    }
}

/// The node's media settings and its UDP ports.
#[derive(Debug)]
pub struct MediaConfig {
    bind: IpAddr,
    first: u16,
    last: u16,
    /// Ports handed out, and the next one to try.
    ports: Mutex<(BTreeSet<u16>, u16)>,
}

impl MediaConfig {
    /// Media on `bind`, ports `first..=last`.
    pub fn new(bind: IpAddr, first: u16, last: u16) -> Self {
        Self {
            bind,
            first,
            last,
            ports: Mutex::new((BTreeSet::new(), first)),
        }
    }

    /// A port not handed out yet (round robin, so a closed one rests before it is reused).
    fn take_port(&self) -> Option<u16> {
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let (used, next) = &mut *ports;
        let span = u32::from(self.last - self.first) + 1;
        for _ in 0..span {
            let p = *next;
            *next = if p >= self.last { self.first } else { p + 1 };
            if used.insert(p) {
                return Some(p);
            }
        }
        None
    }

    fn release(&self, port: u16) {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .remove(&port);
    }
}

/// A track forwarded to one subscriber.
#[derive(Clone)]
pub(crate) struct Outgoing {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    /// The negotiated payload type, once known.
    pt: Arc<Mutex<Option<u8>>>,
    /// What it sent, counted at /metrics (handles made once: registering per packet cost
    /// about 3% of the SFU's CPU under load).
    counted: Counted,
}

/// A stream's packet and room byte counters.
#[derive(Clone)]
pub(crate) struct Counted {
    packets: metrics::Counter,
    bytes: metrics::Counter,
}

impl Counted {
    pub(crate) fn sent(room: &str) -> Self {
        Self {
            packets: metrics::counter!("sfu_packets_out_total"),
            bytes: metrics::counter!("sfu_room_bytes_out_total", "room" => room.to_owned()),
        }
    }

    pub(crate) fn received(room: &str) -> Self {
        Self {
            packets: metrics::counter!("sfu_packets_in_total"),
            bytes: metrics::counter!("sfu_room_bytes_in_total", "room" => room.to_owned()),
        }
    }

    pub(crate) fn count(&self, bytes: u64) {
        self.packets.increment(1);
        self.bytes.increment(bytes);
    }
}

/// One participant's peer connection.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    port: u16,
    outgoing: Mutex<HashMap<TrackId, Outgoing>>,
    /// One negotiation at a time.
    negotiating: tokio::sync::Mutex<()>,
    /// Tracks changed while a negotiation was under way: offer again after it.
    again: AtomicBool,
    /// A server offer waits for the client's answer.
    offered: AtomicBool,
    /// Where signalling messages for this participant go (its current socket).
    tx: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// ICE gathering is complete (descriptions then carry every candidate).
    gathered: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        metrics::gauge!("sfu_peers").decrement(1.0);
    }
}

impl Peer {
    /// The forwarded track carrying `tid` to this participant.
    pub(crate) fn outgoing(&self, tid: TrackId) -> Option<Outgoing> {
        self.outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tid)
            .cloned()
    }

    /// Signalling for this participant now goes to `tx` (a new connection).
    pub(crate) fn set_tx(&self, tx: mpsc::UnboundedSender<Value>) {
        *self.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    fn send(&self, message: Value) {
        if let Some(tx) = &*self.tx.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = tx.send(message);
        }
    }
}

/// A track someone publishes.
#[derive(Clone)]
pub(crate) struct Published {
    pub(crate) owner: ParticipantId,
    pub(crate) kind: Kind,
    codec: RTCRtpCodec,
    /// The publisher's track (keyframe requests go to it) and each layer's SSRC, as the
    /// layers' streams open (0 until then).
    remote: Arc<dyn TrackRemote>,
    ssrcs: LayerSsrcs,
}

/// Each simulcast layer's SSRC (0 until its stream opened), shared by the receiving task and
/// the room.
pub(crate) type LayerSsrcs = Arc<Mutex<Vec<u32>>>;

impl Published {
    pub(crate) fn new(
        owner: ParticipantId,
        kind: Kind,
        codec: RTCRtpCodec,
        remote: Arc<dyn TrackRemote>,
        ssrcs: LayerSsrcs,
    ) -> Self {
        Self {
            owner,
            kind,
            codec,
            remote,
            ssrcs,
        }
    }

    /// The SSRC a keyframe request for `layer` goes to.
    fn ssrc(&self, layer: u8) -> Option<u32> {
        let ssrcs = self.ssrcs.lock().unwrap_or_else(PoisonError::into_inner);
        ssrcs
            .get(usize::from(layer))
            .copied()
            .filter(|s| *s != 0)
            .or_else(|| ssrcs.iter().copied().find(|s| *s != 0))
    }
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("owner", &self.owner)
            .field("codec", &self.codec.mime_type)
            .finish_non_exhaustive()
    }
}

/// A room's media: peers and published tracks.
#[derive(Debug, Default)]
pub(crate) struct RoomMedia {
    pub(crate) peers: BTreeMap<ParticipantId, Arc<Peer>>,
    pub(crate) tracks: BTreeMap<TrackId, Published>,
    /// Packets by the core's handle, for forwarding and for answering NACKs.
    payloads: HashMap<u64, rtc::rtp::Packet>,
    order: std::collections::VecDeque<u64>,
}

/// Packets a room keeps per published track for retransmission: the core's NACK window
/// (`sfu_core::BUFFER` per subscriber and track) reaches no further back.
const KEPT_PER_TRACK: usize = sfu_core::BUFFER;

/// What the transport does for the core's outputs.
pub(crate) enum Work {
    /// Send this (rewritten) packet on a subscriber's forwarded track.
    Send(Outgoing, rtc::rtp::Packet),
    /// Ask a publisher's track for a keyframe.
    Pli(Arc<dyn TrackRemote>, u32),
}

impl RoomMedia {
    /// Keeps a packet under its handle.
    pub(crate) fn keep(&mut self, handle: u64, packet: rtc::rtp::Packet) {
        self.payloads.insert(handle, packet);
        self.order.push_back(handle);
        let kept = KEPT_PER_TRACK * self.tracks.len().max(1);
        while self.order.len() > kept {
            if let Some(old) = self.order.pop_front() {
                self.payloads.remove(&old);
            }
        }
    }

    /// Turns the core's outputs into sends and keyframe requests (notices are signalling's).
    pub(crate) fn resolve(&self, outputs: &[Output]) -> Vec<Work> {
        let mut work = Vec::new();
        for o in outputs {
            match o {
                Output::Forward {
                    to,
                    track,
                    seq,
                    ts,
                    marker,
                    handle,
                } => {
                    let out = self.peers.get(to).and_then(|p| p.outgoing(*track));
                    if let (Some(out), Some(p)) = (out, self.payloads.get(handle)) {
                        let mut p = p.clone();
                        p.header.sequence_number = *seq;
                        p.header.timestamp = *ts;
                        p.header.marker = *marker;
                        work.push(Work::Send(out, p));
                    }
                }
                Output::Retransmit {
                    to,
                    track,
                    seq,
                    ts,
                    handle,
                } => {
                    let out = self.peers.get(to).and_then(|p| p.outgoing(*track));
                    if let (Some(out), Some(p)) = (out, self.payloads.get(handle)) {
                        let mut p = p.clone();
                        p.header.sequence_number = *seq;
                        p.header.timestamp = *ts;
                        metrics::counter!("sfu_retransmits_total").increment(1);
                        work.push(Work::Send(out, p));
                    }
                }
                Output::RequestKeyframe { track, layer, .. } => {
                    if let Some(t) = self.tracks.get(track)
                        && let Some(ssrc) = t.ssrc(*layer)
                    {
                        work.push(Work::Pli(Arc::clone(&t.remote), ssrc));
                    }
                }
                Output::Notice(_) => {}
            }
        }
        work
    }

    /// Follows the core's notices: a left participant's connection closes, an unpublished
    /// track stops going to its subscribers.
    pub(crate) fn follow(&mut self, outputs: &[Output], config: &Arc<MediaConfig>) {
        for o in outputs {
            match o {
                Output::Notice(sfu_core::Notice::Unpublished(_, track)) => {
                    self.tracks.remove(track);
                    for peer in self.peers.values() {
                        let removed = peer
                            .outgoing
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(track);
                        if let Some(out) = removed {
                            let peer = Arc::clone(peer);
                            tokio::spawn(async move {
                                let _ = peer.pc.remove_track(&out.sender).await;
                                renegotiate(peer).await;
                            });
                        }
                    }
                }
                Output::Notice(sfu_core::Notice::Left(p)) => {
                    if let Some(peer) = self.peers.remove(p) {
                        let config = Arc::clone(config);
                        tokio::spawn(async move {
                            let _ = peer.pc.close().await;
                            config.release(peer.port);
                        });
                    }
                }
                _ => {}
            }
        }
    }
}

/// Events of one participant's peer connection.
struct Events {
    rooms: Weak<Rooms>,
    room: String,
    id: ParticipantId,
    gathered: Arc<watch::Sender<bool>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(room = %self.room, id = self.id.0, ?state, "peer connection");
        metrics::counter!("sfu_peer_state_total", "state" => format!("{state}")).increment(1);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let (rooms, room, id) = (self.rooms.clone(), self.room.clone(), self.id);
        tokio::spawn(receive(rooms, room, id, track));
    }
}

/// RFC 6464's audio level header extension: each audio packet carries its loudness.
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

fn media_engine() -> Result<MediaEngine, MediaError> {
    let mut m = MediaEngine::default();
    m.register_default_codecs()
        .map_err(|e| refused("codecs", e))?;
    m.register_header_extension(
        rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )
    .map_err(|e| refused("codecs", e))?;
    // Simulcast: the mid and RTP stream id (rid) extensions name each layer's stream.
    rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers(&mut m)
        .map_err(|e| refused("codecs", e))?;
    Ok(m)
}

/// The simulcast layers (rids) the m-section of `track_id` sends (`a=simulcast:send`), in
/// the order listed: lowest first, as the room page and browsers' usual encodings list them.
/// Paused layers (`~rid`) count; of alternatives (`a,b`) the first.
fn simulcast_rids(sdp: &str, track_id: &str) -> Vec<String> {
    let mut sections = sdp.split("\nm=").skip(1);
    let Some(section) = sections.find(|m| {
        m.lines().any(|l| {
            l.trim()
                .strip_prefix("a=msid:")
                .and_then(|v| v.split_whitespace().nth(1))
                == Some(track_id)
        })
    }) else {
        return Vec::new();
    };
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=simulcast:send "))
        .and_then(|list| list.split_whitespace().next())
        .map(|list| {
            list.split(';')
                .filter_map(|alt| alt.split(',').next())
                .map(|rid| rid.trim_start_matches('~').to_owned())
                .filter(|rid| !rid.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Nominal layers for `n` simulcast streams, lowest first (the core chooses by them).
pub(crate) fn simulcast_layers(n: usize) -> Vec<Layer> {
    let all = [
        Layer {
            bitrate: 150_000,
            height: 180,
        },
        Layer {
            bitrate: 500_000,
            height: 360,
        },
        Layer {
            bitrate: 1_500_000,
            height: 720,
        },
    ];
    match n {
        0 | 1 => default_layers(Kind::Video),
        2 => all[1..].to_vec(),
        _ => {
            // More than three: the top three named, the rest spaced below.
            let mut layers: Vec<Layer> = (0..n - 3)
                .map(|i| Layer {
                    bitrate: 50_000 + i as u64 * 10_000,
                    height: 90 + i as u32,
                })
                .collect();
            layers.extend(all);
            layers
        }
    }
}

/// The id an SDP gives the header extension `uri` (`a=extmap:<id>[/<direction>] <uri>`).
fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, named) = rest.split_once(' ')?;
        if named.split_whitespace().next()? != uri {
            return None;
        }
        id.split('/')
            .next()?
            .parse()
            .ok()
            .filter(|id| (1..=14).contains(id))
    })
}

/// A packet's audio level (RFC 6464: the low seven bits of the extension's first byte, in
/// -dBov: 0 loud, 127 silent).
fn audio_level(packet: &rtc::rtp::Packet, id: u8) -> Option<u8> {
    let data = packet.header.get_extension(id)?;
    data.first().map(|b| b & 0x7f)
}

/// The peer of `id`, made on first use.
async fn peer(
    rooms: &Arc<Rooms>,
    room: &str,
    id: ParticipantId,
    tx: &mpsc::UnboundedSender<Value>,
) -> Result<Arc<Peer>, MediaError> {
    if let Some(p) = rooms.with_media(room, |m| m.peers.get(&id).cloned())? {
        *p.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        return Ok(p);
    }
    let config = rooms.media_config();
    let gathered = Arc::new(watch::channel(false).0);
    let mut last_error = MediaError::NoPort;
    for _ in 0..16 {
        let Some(port) = config.take_port() else {
            break;
        };
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(config.bind.is_loopback())
            .build();
        let built = PeerConnectionBuilder::new()
            .with_media_engine(media_engine()?)
            .with_setting_engine(settings)
            .with_interceptor_registry(crate::feedback::registry())
            .with_handler(Arc::new(Events {
                rooms: Arc::downgrade(rooms),
                room: room.to_owned(),
                id,
                gathered: Arc::clone(&gathered),
            }))
            .with_udp_addrs(vec![format!("{}:{port}", config.bind)])
            .build()
            .await;
        match built {
            Ok(pc) => {
                metrics::gauge!("sfu_peers").increment(1.0);
                let peer = Arc::new(Peer {
                    pc: Arc::new(pc),
                    port,
                    outgoing: Mutex::new(HashMap::new()),
                    negotiating: tokio::sync::Mutex::new(()),
                    again: AtomicBool::new(false),
                    offered: AtomicBool::new(false),
                    tx: Mutex::new(Some(tx.clone())),
                    gathered,
                });
                let kept = rooms.with_media(room, |m| {
                    m.peers
                        .entry(id)
                        .or_insert_with(|| Arc::clone(&peer))
                        .clone()
                })?;
                if !Arc::ptr_eq(&kept, &peer) {
                    let _ = peer.pc.close().await;
                    config.release(port);
                }
                return Ok(kept);
            }
            Err(e) => {
                // Taken by something else on this machine: try the next port.
                tracing::warn!(port, error = %e, "media port unusable");
                last_error = refused("port", e);
            }
        }
    }
    Err(last_error)
}

/// Waits (briefly) until the peer's candidates are gathered, so descriptions carry them.
async fn gathered(peer: &Peer) {
    let mut done = peer.gathered.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d)).await;
}

/// A client's offer: answers it, then offers the tracks others publish.
pub(crate) async fn offer(
    rooms: &Arc<Rooms>,
    room: &str,
    id: ParticipantId,
    sdp: &str,
    tx: &mpsc::UnboundedSender<Value>,
) -> Result<(), MediaError> {
    let mut peer = peer(rooms, room, id, tx).await?;
    // An offer with another DTLS fingerprint comes from a new connection (the client started
    // over after a drop): the old one goes, its tracks end, and the new one takes its place.
    let offered = RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| refused("sdp", e))?;
    let Some(new_fingerprint) = sfu_core::message::fingerprint(sdp) else {
        return Err(refused("sdp", "no a=fingerprint: DTLS-SRTP is required"));
    };
    if let Some(current) = peer.pc.remote_description().await
        && sfu_core::message::fingerprint(&current.sdp).is_some_and(|f| f != new_fingerprint)
    {
        tracing::info!(
            room,
            id = id.0,
            "participant reconnected with a new connection"
        );
        let old = Arc::clone(&peer);
        rooms.with_media(room, |m| {
            if m.peers.get(&id).is_some_and(|p| Arc::ptr_eq(p, &old)) {
                m.peers.remove(&id);
            }
        })?;
        let _ = old.pc.close().await;
        rooms.media_config().release(old.port);
        peer = self::peer(rooms, room, id, tx).await?;
    }
    let answer = {
        let _one = peer.negotiating.lock().await;
        if peer.offered.load(Ordering::Acquire) {
            return Err(refused(
                "sdp",
                "an offer from the server is waiting for its answer",
            ));
        }
        peer.pc
            .set_remote_description(offered)
            .await
            .map_err(|e| refused("sdp", e))?;
        let answer = peer
            .pc
            .create_answer(None)
            .await
            .map_err(|e| refused("sdp", e))?;
        peer.pc
            .set_local_description(answer)
            .await
            .map_err(|e| refused("sdp", e))?;
        gathered(&peer).await;
        peer.pc
            .local_description()
            .await
            .ok_or_else(|| refused("sdp", "no local description"))?
    };
    peer.send(json!({ "type": "answer", "sdp": answer.sdp }));
    subscribe_all(rooms, room, id, &peer).await;
    Ok(())
}

/// A client's answer to the server's offer.
pub(crate) async fn answer(
    rooms: &Arc<Rooms>,
    room: &str,
    id: ParticipantId,
    sdp: &str,
) -> Result<(), MediaError> {
    let peer = rooms
        .with_media(room, |m| m.peers.get(&id).cloned())?
        .ok_or_else(|| refused("type", "no offer was made to you"))?;
    let answer = RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| refused("sdp", e))?;
    // Under the negotiation lock, so a change that arrives meanwhile is not lost: it either
    // waits for this answer or sees `again` cleared after it.
    let again = {
        let _one = peer.negotiating.lock().await;
        if !peer.offered.load(Ordering::Acquire) {
            return Err(refused("type", "no offer from the server is waiting"));
        }
        peer.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| refused("sdp", e))?;
        peer.offered.store(false, Ordering::Release);
        peer.again.swap(false, Ordering::AcqRel)
    };
    if again {
        tokio::spawn(renegotiate(peer));
    }
    Ok(())
}

/// A client's trickled candidate.
pub(crate) async fn candidate(
    rooms: &Arc<Rooms>,
    room: &str,
    id: ParticipantId,
    candidate: RTCIceCandidateInit,
) -> Result<(), MediaError> {
    let peer = rooms
        .with_media(room, |m| m.peers.get(&id).cloned())?
        .ok_or_else(|| refused("type", "send an offer before candidates"))?;
    peer.pc
        .add_ice_candidate(candidate)
        .await
        .map_err(|e| refused("candidate", e))
}

/// Adds every track others publish that `id` does not get yet, and offers them.
async fn subscribe_all(rooms: &Arc<Rooms>, room: &str, id: ParticipantId, peer: &Arc<Peer>) {
    let Ok(tracks) = rooms.with_media(room, |m| {
        m.tracks
            .iter()
            .filter(|(_, t)| t.owner != id)
            .map(|(tid, t)| (*tid, t.clone()))
            .collect::<Vec<_>>()
    }) else {
        return;
    };
    let mut added = false;
    for (tid, t) in tracks {
        added |= add_outgoing(&Arc::downgrade(rooms), room, id, peer, tid, &t).await;
    }
    // Tracks added while the client's offer was being taken are offered now too.
    if peer.again.swap(false, Ordering::AcqRel) || added {
        tokio::spawn(renegotiate(Arc::clone(peer)));
    }
}

/// Gives `peer` a local track carrying `tid`; false when it has one already or it failed.
async fn add_outgoing(
    rooms: &Weak<Rooms>,
    room: &str,
    sub: ParticipantId,
    peer: &Arc<Peer>,
    tid: TrackId,
    t: &Published,
) -> bool {
    if peer
        .outgoing
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&tid)
    {
        return false;
    }
    let ssrc = rand_ssrc(tid);
    let kind = match t.kind {
        Kind::Audio => RtpCodecKind::Audio,
        Kind::Video => RtpCodecKind::Video,
    };
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("p{}", t.owner.0),
        format!("t{}", tid.0),
        format!("p{}-t{}", t.owner.0, tid.0),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: t.codec.clone(),
            ..Default::default()
        }],
    )));
    // Always a new send-only transceiver: a client's own (send-only) ones must not carry it.
    let init = webrtc::rtp_transceiver::RTCRtpTransceiverInit {
        direction: webrtc::rtp_transceiver::RTCRtpTransceiverDirection::Sendonly,
        streams: vec![format!("p{}", t.owner.0)],
        send_encodings: Vec::new(),
    };
    let added = match peer
        .pc
        .add_transceiver_from_track(Arc::clone(&track) as Arc<dyn TrackLocal>, Some(init))
        .await
    {
        Ok(transceiver) => transceiver.sender().await.and_then(|s| {
            s.ok_or_else(|| webrtc::error::Error::Other("a transceiver without a sender".into()))
        }),
        Err(e) => Err(e),
    };
    match added {
        Ok(sender) => {
            peer.outgoing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    tid,
                    Outgoing {
                        track: Arc::clone(&track),
                        sender,
                        ssrc,
                        pt: Arc::new(Mutex::new(None)),
                        counted: Counted::sent(room),
                    },
                );
            tokio::spawn(feedback(
                rooms.clone(),
                room.to_owned(),
                sub,
                tid,
                Arc::downgrade(peer),
                track,
            ));
            true
        }
        Err(e) => {
            tracing::warn!(track = tid.0, error = %e, "cannot add a forwarded track");
            false
        }
    }
}

/// A fresh SSRC for a forwarded track (distinct per track and connection).
fn rand_ssrc(tid: TrackId) -> u32 {
    static NEXT: AtomicU64 = AtomicU64::new(0x5f3a_1c00);
    let n = NEXT.fetch_add(0x9e37, Ordering::Relaxed);
    (n as u32) ^ tid.0.rotate_left(16) ^ std::process::id()
}

/// Offers the server's current tracks to the client (once the previous offer is answered).
async fn renegotiate(peer: Arc<Peer>) {
    let _one = peer.negotiating.lock().await;
    // Waiting for our answer, or the client's first offer not taken yet (its peer exists from
    // the moment that offer arrived): offering now would cross the client's offer (glare),
    // the client could apply neither, and nothing would ever flow to it. Offer after.
    if peer.offered.load(Ordering::Acquire) || peer.pc.remote_description().await.is_none() {
        peer.again.store(true, Ordering::Release);
        return;
    }
    let made = async {
        let offer = peer.pc.create_offer(None).await?;
        peer.pc.set_local_description(offer).await?;
        Ok::<_, webrtc::error::Error>(())
    }
    .await;
    if let Err(e) = made {
        tracing::warn!(error = %e, "server offer failed");
        return;
    }
    gathered(&peer).await;
    if let Some(offer) = peer.pc.local_description().await {
        peer.offered.store(true, Ordering::Release);
        peer.send(json!({ "type": "offer", "sdp": offer.sdp }));
    }
}

/// Whether a VP8 RTP payload starts a keyframe (RFC 7741: S bit, partition 0, P bit clear).
pub fn vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // Picture id: one or two bytes.
            match payload.get(i) {
                Some(b) if b & 0x80 != 0 => i += 2,
                Some(_) => i += 1,
                None => return false,
            }
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// Whether an H.264 RTP payload carries an IDR slice or parameter sets (RFC 6184).
pub fn h264_keyframe(payload: &[u8]) -> bool {
    let Some(&h) = payload.first() else {
        return false;
    };
    let is_key = |nal: u8| matches!(nal & 0x1f, 5 | 7 | 8);
    match h & 0x1f {
        24 => {
            // STAP-A: aggregated NAL units, each with a 16-bit size.
            let mut i = 1;
            while i + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[i], payload[i + 1]]));
                if payload.get(i + 2).is_some_and(|n| is_key(*n)) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(*fu)),
        _ => is_key(h),
    }
}

/// Receives one published track: registers it with the core, offers it to the others, then
/// forwards each packet as the core says.
async fn receive(rooms: Weak<Rooms>, room: String, id: ParticipantId, track: Arc<dyn TrackRemote>) {
    metrics::gauge!("sfu_receive_tasks").increment(1.0);
    let _done = Gauged("sfu_receive_tasks");
    let mut level_id = None;
    // Simulcast: the rids in layer order, each stream's layer by SSRC, and the SSRCs by layer.
    let mut rids: Vec<String> = Vec::new();
    let mut layer_of: HashMap<u32, u8> = HashMap::new();
    let ssrcs: LayerSsrcs = Arc::new(Mutex::new(vec![0]));
    let mut source: Option<Source> = None;
    let forward_seconds = metrics::histogram!("sfu_forward_seconds");
    while let Some(event) = track.poll().await {
        let Some(rooms) = rooms.upgrade() else {
            return;
        };
        match event {
            TrackRemoteEvent::OnOpen(init) if source.is_some() => {
                // Another simulcast layer's stream.
                if let Some(layer) = init
                    .rid
                    .as_ref()
                    .and_then(|r| rids.iter().position(|x| x == r))
                {
                    layer_of.insert(init.ssrc, layer as u8);
                    if let Some(s) = ssrcs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(layer)
                    {
                        *s = init.ssrc;
                    }
                }
            }
            TrackRemoteEvent::OnOpen(init) => {
                let ssrc = init.ssrc;
                let Some(codec) = track.codec(ssrc).await else {
                    continue;
                };
                let kind = if track.kind().await == RtpCodecKind::Audio {
                    Kind::Audio
                } else {
                    Kind::Video
                };
                let codec_mime = codec.mime_type.to_lowercase();
                let peer = rooms
                    .with_media(&room, |m| m.peers.get(&id).cloned())
                    .ok()
                    .flatten();
                let remote_sdp = match peer {
                    Some(peer) => peer.pc.remote_description().await.map(|d| d.sdp),
                    None => None,
                }
                .unwrap_or_default();
                let mut layers = default_layers(kind);
                if kind == Kind::Audio {
                    // The id the publisher's SDP gave the audio level, for the active speaker.
                    level_id = extmap_id(&remote_sdp, AUDIO_LEVEL_URI);
                } else if init.rid.is_some() {
                    rids = simulcast_rids(&remote_sdp, &track.track_id().await);
                    if rids.len() > 1 {
                        layers = simulcast_layers(rids.len());
                    }
                }
                {
                    let mut by_layer = ssrcs.lock().unwrap_or_else(PoisonError::into_inner);
                    *by_layer = vec![0; layers.len().max(1)];
                    let layer = init
                        .rid
                        .as_ref()
                        .and_then(|r| rids.iter().position(|x| x == r))
                        .unwrap_or(0);
                    layer_of.insert(ssrc, layer as u8);
                    if let Some(s) = by_layer.get_mut(layer) {
                        *s = ssrc;
                    }
                }
                let published =
                    Published::new(id, kind, codec, Arc::clone(&track), Arc::clone(&ssrcs));
                let publishing = rooms.publish(&room, layers, published);
                match publishing {
                    Ok((t, subscribers)) => {
                        source = Some(Source {
                            track: t,
                            mime: codec_mime.clone(),
                            counted: Counted::received(&room),
                        });
                        let published = rooms
                            .with_media(&room, |m| m.tracks.get(&t).cloned())
                            .ok()
                            .flatten();
                        if let Some(p) = published {
                            for (sub, peer) in subscribers {
                                if add_outgoing(&Arc::downgrade(&rooms), &room, sub, &peer, t, &p)
                                    .await
                                {
                                    tokio::spawn(renegotiate(peer));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::info!(id = id.0, error = %e, "publish refused");
                        return;
                    }
                }
            }
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let Some(from) = &source else { continue };
                let received = std::time::Instant::now();
                let level = level_id.and_then(|l| audio_level(&packet, l));
                let layer = layer_of.get(&packet.header.ssrc).copied().unwrap_or(0);
                forward(&rooms, &room, from, layer, level, packet).await;
                // Receive to hand-over to every subscriber's connection, inside the SFU.
                forward_seconds.record(received.elapsed().as_secs_f64());
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    if let (Some(from), Some(rooms)) = (source, rooms.upgrade()) {
        let t = from.track;
        rooms.unpublish(&room, id, t);
    }
}

/// A published track as its receiving task forwards it.
struct Source {
    track: TrackId,
    /// The codec, lower case (keyframes are found by it).
    mime: String,
    counted: Counted,
}

/// One packet from a publisher through the core to its subscribers.
async fn forward(
    rooms: &Arc<Rooms>,
    room: &str,
    from: &Source,
    layer: u8,
    audio_level: Option<u8>,
    packet: rtc::rtp::Packet,
) {
    let (tid, mime, counted) = (from.track, from.mime.as_str(), &from.counted);
    static HANDLES: AtomicU64 = AtomicU64::new(1);
    let keyframe = match mime {
        "video/vp8" => vp8_keyframe(&packet.payload),
        "video/h264" => h264_keyframe(&packet.payload),
        _ => false,
    };
    let handle = HANDLES.fetch_add(1, Ordering::Relaxed);
    let core_packet = sfu_core::Packet {
        track: tid,
        layer,
        seq: packet.header.sequence_number,
        ts: packet.header.timestamp,
        marker: packet.header.marker,
        keyframe,
        audio_level,
        handle,
    };
    let size = (packet.payload.len() + 12) as u64;
    let Ok(work) = rooms.core(room, Some((handle, packet)), |core, now| {
        core.packet(core_packet, now)
    }) else {
        return;
    };
    counted.count(size);
    perform(work).await;
}

/// Sends what the core decided.
pub(crate) async fn perform(work: Vec<Work>) {
    for w in work {
        match w {
            Work::Send(out, mut p) => {
                let pt = {
                    let known = *out.pt.lock().unwrap_or_else(PoisonError::into_inner);
                    match known {
                        Some(pt) => pt,
                        None => {
                            let Ok(params) = out.sender.get_parameters().await else {
                                continue;
                            };
                            let Some(pt) =
                                params.rtp_parameters.codecs.first().map(|c| c.payload_type)
                            else {
                                continue;
                            };
                            *out.pt.lock().unwrap_or_else(PoisonError::into_inner) = Some(pt);
                            pt
                        }
                    }
                };
                let size = (p.payload.len() + 12) as u64;
                p.header.ssrc = out.ssrc;
                p.header.payload_type = pt;
                p.header.extension = false;
                p.header.extensions.clear();
                p.header.extension_profile = 0;
                if out.track.write_rtp(p).await.is_ok() {
                    out.counted.count(size);
                }
            }
            Work::Pli(remote, media_ssrc) => {
                let pli =
                    rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    };
                let _ = remote.write_rtcp(vec![Box::new(pli)]).await;
                metrics::counter!("sfu_pli_total").increment(1);
            }
        }
    }
}

/// Decrements a gauge when dropped (a task ending however it ends).
struct Gauged(&'static str);

impl Drop for Gauged {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// A subscriber's feedback on one forwarded track, for as long as it gets the track.
async fn feedback(
    rooms: Weak<Rooms>,
    room: String,
    sub: ParticipantId,
    tid: TrackId,
    peer: Weak<Peer>,
    track: Arc<TrackLocalStaticRTP>,
) {
    use webrtc::media_stream::track_local::TrackLocalEvent;
    metrics::gauge!("sfu_feedback_tasks").increment(1.0);
    let _done = Gauged("sfu_feedback_tasks");
    let still_theirs = || peer.upgrade().is_some_and(|p| p.outgoing(tid).is_some());
    loop {
        // Never a long wait inside poll: it holds the track's event lock, which unbinding the
        // track (closing the connection) needs; a poll parked for good kept connections alive.
        let event = match tokio::time::timeout(Duration::from_millis(500), track.poll()).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                // Not bound yet (negotiating), or unbound.
                if !still_theirs() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(_) => {
                if !still_theirs() {
                    return;
                }
                continue;
            }
        };
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let Some(rooms) = rooms.upgrade() else { return };
        for f in crate::feedback::read(&packets) {
            let (kind, work) = match f {
                crate::feedback::Feedback::Keyframe => (
                    "keyframe",
                    rooms.core(&room, None, |core, now| {
                        core.keyframe_request(sub, tid, now)
                    }),
                ),
                crate::feedback::Feedback::Nack(seqs) => (
                    "nack",
                    rooms.core(&room, None, |core, _| core.nack(sub, tid, &seqs)),
                ),
                crate::feedback::Feedback::Estimate(bps) => (
                    "estimate",
                    rooms.core(&room, None, |core, now| core.estimate(sub, bps, now)),
                ),
            };
            metrics::counter!("sfu_feedback_total", "kind" => kind).increment(1);
            if let Ok(work) = work {
                perform(work).await;
            }
        }
    }
}

/// The simulcast layers assumed for a camera track until simulcast is negotiated.
pub(crate) fn default_layers(kind: Kind) -> Vec<Layer> {
    match kind {
        Kind::Audio => Vec::new(),
        Kind::Video => vec![Layer {
            bitrate: 1_500_000,
            height: 720,
        }],
    }
}

/// One room's transport figures over its peer connections.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoomStats {
    /// Mean round-trip time of the connections' selected candidate pairs, seconds.
    pub rtt: f64,
    /// Packets lost upstream (publishers to the SFU) over packets expected.
    pub loss: f64,
    /// Bytes received from publishers and sent to subscribers so far.
    pub bytes: u64,
}

/// Transport figures of `peers` from their statistics.
pub(crate) async fn room_stats(peers: Vec<Arc<Peer>>) -> RoomStats {
    let (mut rtt_sum, mut rtt_n, mut lost, mut received, mut bytes) = (0.0, 0u32, 0i64, 0u64, 0u64);
    for peer in peers {
        let report = peer
            .pc
            .get_stats(
                std::time::Instant::now(),
                webrtc::peer_connection::StatsSelector::None,
            )
            .await;
        if let Some(rtt) = report
            .candidate_pairs()
            .map(|p| p.current_round_trip_time)
            .filter(|r| r.is_finite() && *r > 0.0)
            .reduce(f64::max)
        {
            rtt_sum += rtt;
            rtt_n += 1;
        }
        for p in report.candidate_pairs() {
            bytes += p.bytes_received + p.bytes_sent;
        }
        for s in report.inbound_rtp_streams() {
            lost += s.received_rtp_stream_stats.packets_lost.max(0);
            received += s.received_rtp_stream_stats.packets_received;
        }
    }
    let expected = received + lost.max(0) as u64;
    RoomStats {
        rtt: if rtt_n > 0 {
            rtt_sum / f64::from(rtt_n)
        } else {
            0.0
        },
        loss: if expected > 0 {
            lost as f64 / expected as f64
        } else {
            0.0
        },
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audio_level_id_comes_from_the_sdp() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:2/sendonly urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(extmap_id(sdp, AUDIO_LEVEL_URI), Some(14));
        assert_eq!(
            extmap_id(sdp, "urn:ietf:params:rtp-hdrext:sdes:mid"),
            Some(2)
        );
        assert_eq!(
            extmap_id(
                "a=extmap:x urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                AUDIO_LEVEL_URI
            ),
            None
        );
        // Two-byte ids (15 and up) are not one-byte extensions: not taken.
        assert_eq!(
            extmap_id(
                "a=extmap:20 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                AUDIO_LEVEL_URI
            ),
            None
        );
        assert_eq!(extmap_id("v=0\r\n", AUDIO_LEVEL_URI), None);
    }

    #[test]
    fn simulcast_layers_come_from_the_tracks_m_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:s a1\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v1\r\na=rid:l send\r\n\
                   a=rid:m send\r\na=rid:h send\r\na=simulcast:send l;~m;h,x\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v2\r\n";
        assert_eq!(simulcast_rids(sdp, "v1"), ["l", "m", "h"]);
        assert!(simulcast_rids(sdp, "v2").is_empty(), "no simulcast line");
        assert!(simulcast_rids(sdp, "a9").is_empty(), "no such track");
        let three = simulcast_layers(3);
        assert_eq!(three.len(), 3);
        assert!(
            three
                .windows(2)
                .all(|w| w[0].bitrate < w[1].bitrate && w[0].height < w[1].height)
        );
        assert_eq!(simulcast_layers(2).len(), 2);
        let five = simulcast_layers(5);
        assert!(
            five.windows(2)
                .all(|w| w[0].bitrate < w[1].bitrate && w[0].height < w[1].height)
        );
    }

    #[test]
    fn the_level_drops_the_voice_bit() {
        let mut p = rtc::rtp::Packet::default();
        assert_eq!(audio_level(&p, 1), None);
        p.header
            .set_extension(1, bytes::Bytes::from_static(&[0x80 | 33]))
            .expect("extension");
        assert_eq!(audio_level(&p, 1), Some(33));
        assert_eq!(audio_level(&p, 2), None);
    }
}
