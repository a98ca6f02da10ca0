//! The SFU's tests and benches: starting `sfu` with a token key, room tokens, local track
//! descriptions, and a webrtc-rs participant. The participant joins a room over signalling,
//! offers the tracks it is given, answers the server's offers as they come, and hands each
//! received RTP packet to a sink made for its track (which knows the publisher's stream id).
//! Answers, errors and participant notices are kept in a log for the caller to read.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::{Daemon, Ports};

/// Starts the `sfu` binary on free ports with `key`'s public half as its token key and `extra`
/// arguments (`--set` pairs); returns once it is ready.
pub fn start_sfu(key: &ed25519_dalek::SigningKey, extra: &[&str]) -> (Daemon, Ports) {
    let ports = Ports::free();
    let mut cmd = std::process::Command::new(crate::bin("sfu"));
    cmd.args(ports.args())
        .args([
            "--set",
            &format!("sfu.token_key={}", sfu::token::public_key_base64(key)),
        ])
        .args(extra);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.sfu_signalling, "/readyz", Duration::from_secs(30));
    (d, ports)
}

/// A token for `who` (shown as `name`) to publish and subscribe in `room` for a day.
pub fn room_token(key: &ed25519_dalek::SigningKey, room: &str, who: &str, name: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    sfu::token::sign(
        &sfu::token::RoomClaims {
            room: room.into(),
            sub: who.into(),
            name: name.into(),
            publish: true,
            subscribe: true,
            exp,
        },
        key,
    )
}

/// A local track's description: one encoding of `mime` on an SSRC of its own; and the SSRC.
pub fn media_track(
    kind: RtpCodecKind,
    mime: &str,
    clock_rate: u32,
    channels: u16,
) -> (MediaStreamTrack, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ssrc = (std::process::id() ^ n.rotate_left(20)).wrapping_mul(2_654_435_761);
    let track = MediaStreamTrack::new(
        format!("local-{kind}-{n}"),
        format!("local-{kind}-track-{n}"),
        format!("local {kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    );
    (track, ssrc)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
/// The sending half of the signalling socket.
pub type Sink = futures_util::stream::SplitSink<Socket, Message>;

/// A received track, as its packet sink is made.
#[derive(Clone)]
pub struct TrackInfo {
    /// The publisher's stream id (`p<participant id>`).
    pub stream: String,
    /// Audio (else video).
    pub audio: bool,
    /// The track (feedback can be written to it).
    pub track: Arc<dyn TrackRemote>,
}

impl std::fmt::Debug for TrackInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackInfo")
            .field("stream", &self.stream)
            .field("audio", &self.audio)
            .finish_non_exhaustive()
    }
}

/// Takes each RTP packet of one received track.
pub type PacketSink = Box<dyn FnMut(&rtc::rtp::Packet) + Send>;
/// Makes a packet sink for each received track.
pub type OnTrack = Arc<dyn Fn(TrackInfo) -> PacketSink + Send + Sync>;
/// Rewrites the server's SDP before it is used (a relay in the path, for example).
pub type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How a participant joins.
pub struct Options {
    /// What it publishes.
    pub tracks: Vec<Arc<dyn TrackLocal>>,
    /// What it does with what it receives.
    pub on_track: OnTrack,
    /// Leave its own candidates out of its offer and its answers (the server then learns its
    /// address from the packets that reach it).
    pub strip_candidates: bool,
    /// Leave this many of the server's offers unanswered (as a client that failed to apply
    /// them), answering the ones after.
    pub skip_offers: usize,
    /// Send TWCC feedback on what it receives (`peer_connection`).
    pub twcc: bool,
    /// Applied to the server's answers and offers.
    pub rewrite: Option<Rewrite>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("tracks", &self.tracks.len())
            .field("strip_candidates", &self.strip_candidates)
            .finish_non_exhaustive()
    }
}

/// An SDP without its candidate lines.
fn without_candidates(sdp: &str) -> String {
    sdp.lines()
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// A participant in a room.
pub struct Participant {
    /// Its peer connection.
    pub pc: Arc<dyn PeerConnection>,
    /// Its signalling socket.
    pub ws: Arc<tokio::sync::Mutex<Sink>>,
    /// Its id in the room.
    pub id: u64,
    /// The senders of its tracks, in the order given.
    pub senders: Vec<Arc<dyn RtpSender>>,
    /// Told when the connection is up.
    pub connected: mpsc::UnboundedReceiver<()>,
    /// `answer`, `error` and `participant` messages received, and `offer` (without its SDP).
    pub log: Arc<Mutex<Vec<Value>>>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

struct Handler {
    gathered: mpsc::UnboundedSender<()>,
    connected: mpsc::UnboundedSender<()>,
    on_track: OnTrack,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let on_track = Arc::clone(&self.on_track);
        tokio::spawn(async move {
            let info = TrackInfo {
                stream: track.stream_id().await.to_string(),
                audio: track.kind().await == RtpCodecKind::Audio,
                track: Arc::clone(&track),
            };
            let mut sink = on_track(info);
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => sink(&p),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// A client peer connection bound to `bind` (VP8, H.264, Opus; the audio level extension), with
/// what it receives handed to `on_track`; and channels told when its ICE gathering completes
/// and when it connects. With `twcc` it sends transport-wide congestion control feedback on
/// what it receives, as browsers do.
pub async fn peer_connection(
    on_track: OnTrack,
    bind: &str,
    twcc: bool,
) -> (
    Arc<dyn PeerConnection>,
    mpsc::UnboundedReceiver<()>,
    mpsc::UnboundedReceiver<()>,
) {
    let mut media = MediaEngine::default();
    media.register_default_codecs().expect("codecs");
    // Audio packets may carry their level (RFC 6464), as browsers' do.
    media
        .register_header_extension(
            rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .expect("audio level extension");
    let (gathered_tx, gathered) = mpsc::unbounded_channel();
    let (connected_tx, connected) = mpsc::unbounded_channel();
    let mut builder = PeerConnectionBuilder::new();
    if twcc {
        let registry = rtc::peer_connection::configuration::interceptor_registry::configure_twcc_receiver_only(
            rtc::interceptor::Registry::new(),
            &mut media,
        )
        .expect("TWCC feedback");
        builder = builder.with_interceptor_registry(registry);
    }
    let pc: Arc<dyn PeerConnection> = Arc::new(
        builder
            .with_media_engine(media)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_include_loopback_candidate(true)
                    .build(),
            )
            .with_handler(Arc::new(Handler {
                gathered: gathered_tx,
                connected: connected_tx,
                on_track,
            }))
            .with_udp_addrs(vec![bind.to_owned()])
            .build()
            .await
            .expect("client peer connection"),
    );
    (pc, gathered, connected)
}

/// The payload type negotiated for `sender`.
pub async fn payload_type(sender: &Arc<dyn RtpSender>) -> u8 {
    sender
        .get_parameters()
        .await
        .ok()
        .and_then(|p| p.rtp_parameters.codecs.first().map(|c| c.payload_type))
        .expect("a negotiated codec")
}

/// Joins the room the token names on the SFU at `port`, and offers `options.tracks`.
pub async fn join(port: u16, token: &str, options: Options) -> Participant {
    let url = format!("ws://127.0.0.1:{port}/rooms/ws?token={token}");
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("signalling");
    let (mut sink, mut stream) = socket.split();
    let joined: Value = match stream.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).expect("JSON"),
        other => panic!("no welcome: {other:?}"),
    };
    assert_eq!(joined["type"], "joined", "{joined}");
    let id = joined["you"].as_u64().expect("id");

    let (pc, mut gathered, connected) =
        peer_connection(options.on_track, "127.0.0.1:0", options.twcc).await;
    let mut senders = Vec::new();
    for t in options.tracks {
        senders.push(pc.add_track(t).await.expect("a local track"));
    }
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("local");
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let mut sdp = pc.local_description().await.expect("described").sdp;
    let strip = options.strip_candidates;
    let own = move |sdp: String| if strip { without_candidates(&sdp) } else { sdp };
    sdp = own(sdp);
    sink.send(Message::text(
        json!({"type": "offer", "sdp": sdp}).to_string(),
    ))
    .await
    .expect("send offer");
    let ws = Arc::new(tokio::sync::Mutex::new(sink));
    let log = Arc::new(Mutex::new(Vec::new()));
    {
        let (pc, ws, log) = (Arc::clone(&pc), Arc::clone(&ws), Arc::clone(&log));
        let rewrite = options.rewrite;
        let via = move |sdp: &str| rewrite.as_ref().map_or(sdp.to_owned(), |r| r(sdp));
        let mut skip = options.skip_offers;
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                let sdp = via(v["sdp"].as_str().unwrap_or(""));
                match v["type"].as_str() {
                    Some("answer") => {
                        log.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                        if let Ok(a) = RTCSessionDescription::answer(sdp) {
                            let _ = pc.set_remote_description(a).await;
                        }
                    }
                    Some("offer") => {
                        log.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(json!({"type": "offer"}));
                        if skip > 0 {
                            skip -= 1;
                            continue;
                        }
                        let Ok(o) = RTCSessionDescription::offer(sdp) else {
                            continue;
                        };
                        if pc.set_remote_description(o).await.is_err() {
                            continue;
                        }
                        let Ok(a) = pc.create_answer(None).await else {
                            continue;
                        };
                        if pc.set_local_description(a).await.is_err() {
                            continue;
                        }
                        if let Some(l) = pc.local_description().await {
                            let _ = ws
                                .lock()
                                .await
                                .send(Message::text(
                                    json!({"type": "answer", "sdp": own(l.sdp)}).to_string(),
                                ))
                                .await;
                        }
                    }
                    Some("error" | "participant") => {
                        log.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                    }
                    _ => {}
                }
            }
        });
    }
    Participant {
        pc,
        ws,
        id,
        senders,
        connected,
        log,
    }
}

impl Participant {
    /// The payload type negotiated for sender `i`.
    pub async fn payload_type(&self, i: usize) -> u8 {
        payload_type(&self.senders[i]).await
    }

    /// Sends a raw signalling message.
    pub async fn send(&self, text: &str) {
        let _ = self
            .ws
            .lock()
            .await
            .send(Message::text(text.to_owned()))
            .await;
    }

    /// Leaves the room and closes the connection.
    pub async fn leave(&self) {
        self.send(r#"{"type":"leave"}"#).await;
        let _ = self.ws.lock().await.close().await;
        let _ = self.pc.close().await;
    }

    /// Waits until the connection is up.
    pub async fn until_connected(&mut self, within: Duration) {
        tokio::time::timeout(within, self.connected.recv())
            .await
            .expect("connected to the SFU in time");
    }
}

/// A UDP relay in front of the SFU for one client: the client is told the relay's port in
/// place of the server's (`rewrite` on the server's descriptions), and the server sees the
/// relay's address. The path can be cut (`cut`), and what goes toward the client can be held
/// to a bit rate (`limit_bps`, 0 for none): packets wait their turn, and those that would wait
/// more than 200 ms are dropped, as at a congested link.
#[derive(Debug)]
pub struct Relay {
    front: Arc<tokio::net::UdpSocket>,
    server: Mutex<Option<std::net::SocketAddr>>,
    /// While set, nothing passes either way.
    pub cut: std::sync::atomic::AtomicBool,
    /// The bit rate toward the client (0: unlimited).
    pub limit_bps: std::sync::atomic::AtomicU64,
}

impl Relay {
    /// A relay on loopback.
    pub async fn start() -> Arc<Self> {
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("front"),
        );
        let back = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("back"),
        );
        let relay = Arc::new(Self {
            front: Arc::clone(&front),
            server: Mutex::new(None),
            cut: std::sync::atomic::AtomicBool::new(false),
            limit_bps: std::sync::atomic::AtomicU64::new(0),
        });
        let client = Arc::new(Mutex::new(None));
        let (r, b, c) = (Arc::clone(&relay), Arc::clone(&back), Arc::clone(&client));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *c.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                let server = *r.server.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(to) = server
                    && !r.cut.load(Ordering::Relaxed)
                {
                    let _ = b.send_to(&buf[..n], to).await;
                }
            }
        });
        let r = Arc::clone(&relay);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            // When the link is free again (the shaper's clock).
            let mut free = tokio::time::Instant::now();
            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                let to = *client.lock().unwrap_or_else(|e| e.into_inner());
                let Some(to) = to else { continue };
                if r.cut.load(Ordering::Relaxed) {
                    continue;
                }
                let limit = r.limit_bps.load(Ordering::Relaxed);
                if limit > 0 {
                    let now = tokio::time::Instant::now();
                    let start = free.max(now);
                    if start - now > Duration::from_millis(200) {
                        continue; // the queue is full: dropped
                    }
                    free = start + Duration::from_secs_f64(n as f64 * 8.0 / limit as f64);
                    tokio::time::sleep_until(start).await;
                }
                let _ = r.front.send_to(&buf[..n], to).await;
            }
        });
        relay
    }

    /// The server's SDP with its UDP host candidate moved to the relay; the addresses it
    /// learned (a peer-reflexive one is the relay's own front) are left out, so the relay is
    /// the only path the client knows.
    pub fn rewrite(&self, sdp: &str) -> String {
        let port = self.front.local_addr().map_or(0, |a| a.port());
        sdp.lines()
            .filter(|l| !l.starts_with("a=candidate") || l.contains(" typ host"))
            .map(|l| {
                let mut f: Vec<String> = l.split(' ').map(str::to_owned).collect();
                if l.starts_with("a=candidate") && f.len() > 5 && f[2].eq_ignore_ascii_case("udp") {
                    if let (Ok(ip), Ok(p)) = (f[4].parse(), f[5].parse()) {
                        *self.server.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(std::net::SocketAddr::new(ip, p));
                    }
                    f[5] = port.to_string();
                }
                format!("{}\r\n", f.join(" "))
            })
            .collect()
    }
}
