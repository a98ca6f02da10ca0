//! Signalling (`/rooms/ws?token=...`, JSON over a WebSocket) around `sfu-core`'s rooms: a
//! participant joins with a room token the appliance signed; everyone in the room hears of
//! joins, leaves, drops ("reconnecting"), returns ("resumed") and mute changes. A dropped
//! participant who reconnects with the same identity within `sfu.rejoin_grace_secs` resumes its
//! place; after that it has left. Limits: `sfu.max_rooms` and `sfu.max_participants_per_room`;
//! a full room refuses clearly. Media: `offer`/`answer` (SDP both ways) and `candidate` messages
//! drive each participant's peer connection in [`crate::media`]; `track` messages say whose
//! stream (`p<id>`) and track (`t<n>`) a forwarded track is.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sfu_core::message::{Incoming, Refusal};
use sfu_core::{Notice, Output, ParticipantId, Room, RoomError};
use tokio::sync::mpsc;

use crate::media::{MediaConfig, MediaError, Peer, Published, RoomMedia};
use crate::token::RoomClaims;

/// The peers that should get a newly published track.
type Subscribers = Vec<(ParticipantId, Arc<Peer>)>;

/// One member as signalling knows it.
#[derive(Debug)]
struct Member {
    identity: String,
    name: String,
    muted: BTreeMap<String, bool>,
    /// The open socket's outbox (None while reconnecting).
    tx: Option<mpsc::UnboundedSender<Value>>,
    /// Which connection is current (a reconnect replaces the old one).
    connection: u64,
}

#[derive(Debug)]
struct RoomState {
    name: String,
    core: Room,
    members: BTreeMap<ParticipantId, Member>,
    media: RoomMedia,
}

/// Every room on this node.
#[derive(Debug)]
pub struct Rooms {
    key: Result<ed25519_dalek::VerifyingKey, crate::token::TokenError>,
    max_rooms: usize,
    max_participants: usize,
    grace: Duration,
    /// STUN/TURN servers handed to every participant.
    ice_servers: Vec<Value>,
    start: Instant,
    inner: Mutex<Inner>,
    media: Arc<MediaConfig>,
    /// The str0m transport, when `sfu.transport` names it (set once, at start).
    transport: std::sync::OnceLock<crate::transport::Transport>,
}

#[derive(Debug, Default)]
struct Inner {
    rooms: BTreeMap<String, RoomState>,
    next_id: u32,
    next_connection: u64,
}

impl Rooms {
    /// Rooms with the configured limits, checking tokens against `token_key`.
    pub fn new(config: &firmware_config::Config) -> Arc<Self> {
        let s = &config.sfu;
        Arc::new(Self {
            key: crate::token::key(&s.token_key),
            max_rooms: s.max_rooms as usize,
            max_participants: s.max_participants_per_room as usize,
            grace: Duration::from_secs(u64::from(s.rejoin_grace_secs)),
            ice_servers: s
                .ice_servers
                .iter()
                .map(|i| {
                    let mut v = json!({ "urls": i.urls });
                    if !i.username.is_empty() {
                        v["username"] = json!(i.username);
                        v["credential"] = json!(i.credential.expose());
                    }
                    v
                })
                .collect(),
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
            media: Arc::new(MediaConfig::new(
                config.listeners.bind,
                config.listeners.sfu_media_udp.first().get(),
                config.listeners.sfu_media_udp.last().get(),
            )),
            transport: std::sync::OnceLock::new(),
        })
    }

    /// Starts the str0m transport on the media range's first ports (`sfu.transport =
    /// "str0m"`).
    pub fn start_transport(
        self: &Arc<Self>,
        config: &firmware_config::Config,
    ) -> std::io::Result<()> {
        let bind = config.listeners.bind;
        let ip = if bind.is_unspecified() {
            config
                .listeners
                .public_host
                .as_str()
                .parse()
                .unwrap_or(bind)
        } else {
            bind
        };
        let range = &config.listeners.sfu_media_udp;
        let t = crate::transport::Transport::start(
            ip,
            range.first().get(),
            range.last().get(),
            Arc::downgrade(self),
        )?;
        let _ = self.transport.set(t);
        Ok(())
    }

    /// The str0m transport, if it carries the media.
    pub(crate) fn transport(&self) -> Option<&crate::transport::Transport> {
        self.transport.get()
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rooms and their participants (for metrics and the admin view).
    pub fn snapshot(&self) -> Value {
        let inner = self.lock();
        let rooms: Vec<Value> = inner
            .rooms
            .iter()
            .map(|(name, r)| {
                let people: Vec<Value> = r
                    .members
                    .iter()
                    .map(|(id, m)| {
                        json!({ "id": id.0, "identity": m.identity, "name": m.name,
                                "reconnecting": r.core.is_reconnecting(*id) })
                    })
                    .collect();
                json!({ "room": name, "participants": people })
            })
            .collect();
        json!({ "rooms": rooms })
    }

    /// Delivers core outputs (notices) to the room's open sockets, and lets the media follow.
    fn broadcast(&self, room: &mut RoomState, outputs: &[Output]) {
        match self.transport() {
            Some(t) => {
                let notices: Vec<Output> = outputs
                    .iter()
                    .filter(|o| {
                        matches!(o, Output::Notice(Notice::Left(_) | Notice::Unpublished(..)))
                    })
                    .cloned()
                    .collect();
                if !notices.is_empty() {
                    t.send(crate::transport::Command::Outputs {
                        room: room.name.clone(),
                        outputs: notices,
                    });
                }
            }
            None => room.media.follow(outputs, &self.media),
        }
        for o in outputs {
            let Output::Notice(n) = o else { continue };
            if let Notice::Published(p, t, _) | Notice::Unpublished(p, t) = n {
                let (event, kind) = match n {
                    Notice::Published(_, _, sfu_core::Kind::Audio) => ("published", "audio"),
                    Notice::Published(..) => ("published", "video"),
                    _ => ("unpublished", ""),
                };
                let message = json!({ "type": "track", "event": event, "id": p.0, "track": t.0,
                    "kind": kind, "stream": format!("p{}", p.0), "track_id": format!("t{}", t.0) });
                for (id, m) in &room.members {
                    if id != p
                        && let Some(tx) = &m.tx
                    {
                        let _ = tx.send(message.clone());
                    }
                }
                continue;
            }
            let (event, who) = match n {
                Notice::Joined(p) => ("joined", *p),
                Notice::Reconnecting(p) => ("reconnecting", *p),
                Notice::Resumed(p) => ("resumed", *p),
                Notice::Left(p) => ("left", *p),
                Notice::ActiveSpeaker(p) => ("speaking", *p),
                _ => continue,
            };
            let name = room
                .members
                .get(&who)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let message =
                json!({ "type": "participant", "event": event, "id": who.0, "name": name });
            // Everyone hears who speaks, the speaker too (its own tile shows it); the other
            // events are about someone else.
            let to_self = event == "speaking";
            for (id, m) in &room.members {
                if (*id != who || to_self)
                    && let Some(tx) = &m.tx
                {
                    let _ = tx.send(message.clone());
                }
            }
        }
    }

    /// Joins (or resumes) `claims.sub` in `claims.room`; returns its id, the connection number
    /// and the welcome message.
    fn join(
        &self,
        claims: &RoomClaims,
        tx: mpsc::UnboundedSender<Value>,
    ) -> Result<(ParticipantId, u64, Value), RoomError> {
        let now = self.now();
        let mut inner = self.lock();
        inner.next_connection += 1;
        let connection = inner.next_connection;
        if !inner.rooms.contains_key(&claims.room) && inner.rooms.len() >= self.max_rooms {
            return Err(RoomError::Full(self.max_rooms));
        }
        let next_id = inner.next_id + 1;
        let room = inner
            .rooms
            .entry(claims.room.clone())
            .or_insert_with(|| RoomState {
                name: claims.room.clone(),
                core: Room::new(self.max_participants, self.grace.as_micros() as u64),
                members: BTreeMap::new(),
                media: RoomMedia::default(),
            });
        let existing = room
            .members
            .iter()
            .find(|(_, m)| m.identity == claims.sub)
            .map(|(id, _)| *id);
        let (id, outputs) = match existing {
            Some(id) if room.core.is_reconnecting(id) => (
                id,
                room.core.join(id, claims.publish, claims.subscribe, now)?,
            ),
            Some(id) => {
                // The same identity on a new connection: the old one is replaced.
                (id, vec![Output::Notice(Notice::Resumed(id))])
            }
            None => {
                let id = ParticipantId(next_id);
                let out = room.core.join(id, claims.publish, claims.subscribe, now)?;
                (id, out)
            }
        };
        if existing.is_none() {
            inner.next_id = next_id;
        }
        let room = inner
            .rooms
            .get_mut(&claims.room)
            .ok_or(RoomError::NotInRoom(id))?;
        let member = room.members.entry(id).or_insert_with(|| Member {
            identity: claims.sub.clone(),
            name: claims.name.clone(),
            muted: BTreeMap::new(),
            tx: None,
            connection,
        });
        member.tx = Some(tx.clone());
        member.connection = connection;
        if let Some(peer) = room.media.peers.get(&id) {
            peer.set_tx(tx.clone());
        }
        if let Some(t) = self.transport() {
            t.send(crate::transport::Command::SetTx {
                room: claims.room.clone(),
                id,
                tx,
            });
        }
        self.broadcast(room, &outputs);
        let others: Vec<Value> = room
            .members
            .iter()
            .filter(|(other, _)| **other != id)
            .map(|(other, m)| {
                json!({ "id": other.0, "name": m.name, "muted": m.muted,
                        "reconnecting": room.core.is_reconnecting(*other) })
            })
            .collect();
        let welcome = json!({ "type": "joined", "you": id.0, "room": claims.room,
                              "publish": claims.publish, "participants": others,
                              "resumed": existing.is_some(), "ice_servers": self.ice_servers });
        metrics::gauge!("sfu_participants", "room" => claims.room.clone())
            .set(room.members.len() as f64);
        metrics::gauge!("sfu_rooms").set(inner.rooms.len() as f64);
        Ok((id, connection, welcome))
    }

    /// The connection `connection` of `id` ended: without a leave, the place is kept.
    fn disconnected(&self, room_name: &str, id: ParticipantId, connection: u64, left: bool) {
        let now = self.now();
        let mut inner = self.lock();
        let Some(room) = inner.rooms.get_mut(room_name) else {
            return;
        };
        if room
            .members
            .get(&id)
            .is_none_or(|m| m.connection != connection)
        {
            return; // replaced by a newer connection
        }
        let outputs = if left {
            let out = room.core.leave(id).unwrap_or_default();
            self.broadcast(room, &out);
            room.members.remove(&id);
            out
        } else {
            if let Some(m) = room.members.get_mut(&id) {
                m.tx = None;
            }
            let out = room.core.dropped(id, now).unwrap_or_default();
            self.broadcast(room, &out);
            out
        };
        drop(outputs);
        metrics::gauge!("sfu_participants", "room" => room_name.to_owned())
            .set(room.members.len() as f64);
        if room.members.is_empty() {
            inner.rooms.remove(room_name);
        }
        metrics::gauge!("sfu_rooms").set(inner.rooms.len() as f64);
    }

    /// Removes a participant (the admin API): its socket is closed and the others hear it left.
    pub fn remove(&self, room_name: &str, id: u32) -> bool {
        let mut inner = self.lock();
        let Some(room) = inner.rooms.get_mut(room_name) else {
            return false;
        };
        let p = ParticipantId(id);
        let Some(member) = room.members.remove(&p) else {
            return false;
        };
        if let Some(tx) = member.tx {
            let _ =
                tx.send(json!({ "type": "removed", "message": "an administrator removed you" }));
        }
        let out = room.core.leave(p).unwrap_or_default();
        self.broadcast(room, &out);
        if room.members.is_empty() {
            inner.rooms.remove(room_name);
        }
        true
    }

    /// Closes a room (the admin API): everyone in it is told and disconnected.
    pub fn close(&self, room_name: &str) -> bool {
        let mut inner = self.lock();
        let Some(mut room) = inner.rooms.remove(room_name) else {
            return false;
        };
        let everyone: Vec<Output> = room
            .members
            .keys()
            .map(|p| Output::Notice(Notice::Left(*p)))
            .collect();
        match self.transport() {
            Some(t) => {
                t.send(crate::transport::Command::Outputs {
                    room: room_name.to_owned(),
                    outputs: everyone,
                });
            }
            None => room.media.follow(&everyone, &self.media),
        }
        for m in room.members.values() {
            if let Some(tx) = &m.tx {
                let _ = tx.send(json!({ "type": "closed", "message": "the room was closed" }));
            }
        }
        metrics::gauge!("sfu_participants", "room" => room_name.to_owned()).set(0.0);
        metrics::gauge!("sfu_rooms").set(inner.rooms.len() as f64);
        true
    }

    /// A mute change, told to the others.
    fn mute(&self, room_name: &str, id: ParticipantId, kind: &str, muted: bool) {
        let mut inner = self.lock();
        let Some(room) = inner.rooms.get_mut(room_name) else {
            return;
        };
        if let Some(m) = room.members.get_mut(&id) {
            m.muted.insert(kind.to_owned(), muted);
        }
        let message = json!({ "type": "mute", "id": id.0, "kind": kind, "muted": muted });
        for (other, m) in &room.members {
            if *other != id
                && let Some(tx) = &m.tx
            {
                let _ = tx.send(message.clone());
            }
        }
    }

    /// The node's media settings.
    pub(crate) fn media_config(&self) -> Arc<MediaConfig> {
        Arc::clone(&self.media)
    }

    /// Runs `f` on a room's media.
    pub(crate) fn with_media<T>(
        &self,
        room_name: &str,
        f: impl FnOnce(&mut RoomMedia) -> T,
    ) -> Result<T, MediaError> {
        let mut inner = self.lock();
        let room = inner.rooms.get_mut(room_name).ok_or(MediaError::Gone)?;
        Ok(f(&mut room.media))
    }

    /// A track `id` publishes: registered with the core; the peers that should get it.
    pub(crate) fn publish(
        &self,
        room_name: &str,
        layers: Vec<sfu_core::Layer>,
        track: Published,
    ) -> Result<(sfu_core::TrackId, Subscribers), RoomError> {
        let id = track.owner;
        let mut inner = self.lock();
        let room = inner
            .rooms
            .get_mut(room_name)
            .ok_or(RoomError::NotInRoom(id))?;
        let (tid, out) = room.core.publish(id, track.kind, layers)?;
        room.media.tracks.insert(tid, track);
        self.broadcast(room, &out);
        let subscribers = room
            .media
            .peers
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, peer)| (*p, Arc::clone(peer)))
            .collect();
        Ok((tid, subscribers))
    }

    /// A track `id` publishes (the str0m transport): registered with the core, told to the
    /// room.
    pub(crate) fn publish_track(
        &self,
        room_name: &str,
        id: ParticipantId,
        kind: sfu_core::Kind,
        layers: Vec<sfu_core::Layer>,
    ) -> Result<sfu_core::TrackId, RoomError> {
        let mut inner = self.lock();
        let room = inner
            .rooms
            .get_mut(room_name)
            .ok_or(RoomError::NotInRoom(id))?;
        let (tid, out) = room.core.publish(id, kind, layers)?;
        self.broadcast(room, &out);
        Ok(tid)
    }

    /// Runs `f` on a room's core (the str0m transport): its outputs; notices go out as
    /// signalling.
    pub(crate) fn run_core(
        &self,
        room_name: &str,
        f: impl FnOnce(&mut Room, u64) -> Vec<Output>,
    ) -> Result<Vec<Output>, MediaError> {
        let now = self.now();
        let mut inner = self.lock();
        let room = inner.rooms.get_mut(room_name).ok_or(MediaError::Gone)?;
        let out = f(&mut room.core, now);
        if out.iter().any(|o| matches!(o, Output::Notice(_))) {
            self.broadcast(room, &out);
        }
        Ok(out)
    }

    /// A published track ended.
    pub(crate) fn unpublish(&self, room_name: &str, id: ParticipantId, tid: sfu_core::TrackId) {
        let mut inner = self.lock();
        if let Some(room) = inner.rooms.get_mut(room_name)
            && let Ok(out) = room.core.unpublish(id, tid)
        {
            self.broadcast(room, &out);
        }
    }

    /// Runs `f` on a room's core (keeping `packet` under its handle first): what the transport
    /// must do; notices go out as signalling.
    pub(crate) fn core(
        &self,
        room_name: &str,
        packet: Option<(u64, rtc::rtp::Packet)>,
        f: impl FnOnce(&mut Room, u64) -> Vec<Output>,
    ) -> Result<Vec<crate::media::Work>, MediaError> {
        let now = self.now();
        let mut inner = self.lock();
        let room = inner.rooms.get_mut(room_name).ok_or(MediaError::Gone)?;
        if let Some((handle, p)) = packet {
            room.media.keep(handle, p);
        }
        let out = f(&mut room.core, now);
        if out.iter().any(|o| matches!(o, Output::Notice(_))) {
            self.broadcast(room, &out);
        }
        Ok(room.media.resolve(&out))
    }

    /// Publishes each room's media figures at /metrics: bitrate (over the time since the last
    /// call), upstream loss, round-trip time, participants.
    pub async fn measure(&self, last: &mut BTreeMap<String, (u64, Instant)>) {
        let by_transport = match self.transport() {
            Some(t) => Some(t.stats().await),
            None => None,
        };
        let rooms: Vec<(String, Vec<Arc<Peer>>, usize)> = {
            let inner = self.lock();
            inner
                .rooms
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        r.media.peers.values().cloned().collect(),
                        r.members.len(),
                    )
                })
                .collect()
        };
        last.retain(|name, _| rooms.iter().any(|(n, ..)| n == name));
        for (name, peers, members) in rooms {
            let stats = match &by_transport {
                Some(s) => s.get(&name).copied().unwrap_or_default(),
                None => crate::media::room_stats(peers).await,
            };
            let now = Instant::now();
            let (before, at) = last.get(&name).copied().unwrap_or((stats.bytes, now));
            let secs = now.duration_since(at).as_secs_f64();
            let bps = if secs > 0.0 {
                stats.bytes.saturating_sub(before) as f64 * 8.0 / secs
            } else {
                0.0
            };
            last.insert(name.clone(), (stats.bytes, now));
            metrics::gauge!("sfu_room_bitrate_bps", "room" => name.clone()).set(bps);
            metrics::gauge!("sfu_room_loss_ratio", "room" => name.clone()).set(stats.loss);
            metrics::gauge!("sfu_room_rtt_seconds", "room" => name.clone()).set(stats.rtt);
            metrics::gauge!("sfu_participants", "room" => name).set(members as f64);
        }
    }

    /// Time passes: the grace of dropped participants runs out.
    pub fn tick(&self) {
        let now = self.now();
        let mut inner = self.lock();
        let mut empty = Vec::new();
        for (name, room) in &mut inner.rooms {
            let out = room.core.tick(now);
            self.broadcast(room, &out);
            // Keyframe requests for subscribers moved off a layer that went quiet.
            if let Some(t) = self.transport() {
                let media: Vec<Output> = out
                    .iter()
                    .filter(|o| !matches!(o, Output::Notice(_)))
                    .cloned()
                    .collect();
                if !media.is_empty() {
                    t.send(crate::transport::Command::Outputs {
                        room: name.clone(),
                        outputs: media,
                    });
                }
            } else {
                let work = room.media.resolve(&out);
                if !work.is_empty() {
                    tokio::spawn(crate::media::perform(work));
                }
            }
            for o in &out {
                if let Output::Notice(Notice::Left(p)) = o {
                    room.members.remove(p);
                }
            }
            if room.members.is_empty() {
                empty.push(name.clone());
            }
        }
        for name in empty {
            inner.rooms.remove(&name);
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Connect {
    /// Missing is the same as wrong: 401.
    #[serde(default)]
    token: String,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /rooms/ws?token=...`.
pub(crate) async fn upgrade(
    State(rooms): State<Arc<Rooms>>,
    Query(q): Query<Connect>,
    ws: WebSocketUpgrade,
) -> Response {
    let claims = match &rooms.key {
        Err(e) => Err(e.clone()),
        Ok(key) => crate::token::verify(&q.token, key, unix_now()),
    };
    let claims = match claims {
        Ok(c) => c,
        Err(e) => {
            metrics::counter!("sfu_refused_total").increment(1);
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    ws.on_upgrade(move |socket| session(rooms, claims, socket))
}

async fn session(rooms: Arc<Rooms>, claims: RoomClaims, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let media_tx = tx.clone();
    let (id, connection, welcome) = match rooms.join(&claims, tx) {
        Ok(j) => j,
        Err(e) => {
            let _ = socket
                .send(Message::Text(
                    json!({ "type": "error", "code": "refused", "message": e.to_string() })
                        .to_string()
                        .into(),
                ))
                .await;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 4003,
                    reason: "refused".into(),
                })))
                .await;
            return;
        }
    };
    if socket
        .send(Message::Text(welcome.to_string().into()))
        .await
        .is_err()
    {
        rooms.disconnected(&claims.room, id, connection, false);
        return;
    }
    let mut left = false;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(v) => {
                    if socket.send(Message::Text(v.to_string().into())).await.is_err() {
                        break;
                    }
                    if matches!(v["type"].as_str(), Some("removed" | "closed")) {
                        let _ = socket.send(Message::Close(Some(CloseFrame {
                            code: 4000,
                            reason: "ended by an administrator".into(),
                        }))).await;
                        return;
                    }
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let refusal = match sfu_core::message::parse(&text) {
                        Ok(Incoming::Leave) => {
                            left = true;
                            break;
                        }
                        Ok(Incoming::Mute { kind, muted }) => {
                            rooms.mute(&claims.room, id, kind, muted);
                            None
                        }
                        Ok(m) => media_message(&rooms, &claims.room, id, m, &media_tx)
                            .await
                            .err()
                            .map(|e| Refusal {
                                code: "media",
                                field: Some(match &e {
                                    MediaError::Refused { field, .. } => *field,
                                    _ => "type",
                                }),
                                message: e.to_string(),
                            }),
                        Err(r) => Some(r),
                    };
                    if let Some(r) = refusal {
                        let _ = socket.send(Message::Text(r.to_json().to_string().into())).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    rooms.disconnected(&claims.room, id, connection, left);
}

/// An `offer`, `answer` or `candidate` from a participant.
async fn media_message(
    rooms: &Arc<Rooms>,
    room: &str,
    id: ParticipantId,
    m: Incoming,
    tx: &mpsc::UnboundedSender<Value>,
) -> Result<(), MediaError> {
    if let Some(t) = rooms.transport() {
        let room = room.to_owned();
        use crate::transport::Command;
        return match m {
            Incoming::Offer { sdp } => {
                let tx = tx.clone();
                t.ask(|reply| Command::Offer {
                    room,
                    id,
                    sdp,
                    tx,
                    reply,
                })
                .await
            }
            Incoming::Answer { sdp } => {
                t.ask(|reply| Command::Answer {
                    room,
                    id,
                    sdp,
                    reply,
                })
                .await
            }
            Incoming::Candidate { candidate, .. } => {
                t.ask(|reply| Command::Candidate {
                    room,
                    id,
                    candidate,
                    reply,
                })
                .await
            }
            Incoming::Leave | Incoming::Mute { .. } => Ok(()),
        };
    }
    match m {
        Incoming::Offer { sdp } => crate::media::offer(rooms, room, id, &sdp, tx).await,
        Incoming::Answer { sdp } => crate::media::answer(rooms, room, id, &sdp).await,
        Incoming::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => {
            let candidate = webrtc::peer_connection::RTCIceCandidateInit {
                candidate,
                sdp_mid,
                sdp_mline_index,
                ..Default::default()
            };
            crate::media::candidate(rooms, room, id, candidate).await
        }
        Incoming::Leave | Incoming::Mute { .. } => Ok(()),
    }
}

/// The admin API's bearer token, checked as an administration token; the refusal's reason.
fn admin(rooms: &Rooms, headers: &axum::http::HeaderMap) -> Result<(), String> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match &rooms.key {
        Err(e) => Err(e.to_string()),
        Ok(key) => crate::token::verify_admin(token, key, unix_now())
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

fn unauthorized(why: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": why })),
    )
        .into_response()
}

/// `GET /admin/rooms`: every room and its participants.
pub(crate) async fn list_rooms(
    State(rooms): State<Arc<Rooms>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(why) = admin(&rooms, &headers) {
        return unauthorized(why);
    }
    axum::Json(rooms.snapshot()).into_response()
}

/// `DELETE /admin/rooms/{room}`: closes a room.
pub(crate) async fn close_room(
    State(rooms): State<Arc<Rooms>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(room): axum::extract::Path<String>,
) -> Response {
    if let Err(why) = admin(&rooms, &headers) {
        return unauthorized(why);
    }
    if rooms.close(&room) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// `DELETE /admin/rooms/{room}/participants/{id}`: removes a participant.
pub(crate) async fn remove_participant(
    State(rooms): State<Arc<Rooms>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path((room, id)): axum::extract::Path<(String, u32)>,
) -> Response {
    if let Err(why) = admin(&rooms, &headers) {
        return unauthorized(why);
    }
    if rooms.remove(&room, id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
