//! Janus 1.1 (Debian's `janus` package) as a peer SFU for the load harness: starting it on
//! loopback with the VideoRoom plugin and the WebSocket transport only, and a webrtc-rs
//! participant that speaks its API (`janus-protocol`). A participant joins a room as a
//! publisher and publishes its tracks on one peer connection; once the room's other
//! publishers are up, it subscribes to all of their feeds on a second one (Janus's
//! multistream subscriber), handing each received packet to a sink as `webrtc.rs` does.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use crate::Daemon;
use crate::webrtc::{OnTrack, peer_connection};

/// A running Janus: the daemon, its WebSocket port and its configuration folder.
#[derive(Debug)]
pub struct Janus {
    /// The process.
    pub daemon: Daemon,
    /// The WebSocket API's port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// Starts Janus on loopback (`-i 127.0.0.1`), media on UDP `rtp_ports`, and waits until its
/// WebSocket API listens.
pub fn start(rtp_ports: (u16, u16)) -> Janus {
    let dir = crate::temp_dir();
    let lib = "/usr/lib/x86_64-linux-gnu/janus";
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let plugins = [
        "audiobridge",
        "duktape",
        "echotest",
        "lua",
        "nosip",
        "recordplay",
        "sip",
        "streaming",
        "textroom",
        "videocall",
        "voicemail",
    ]
    .map(|p| format!("libjanus_{p}.so"))
    .join(",");
    let transports = ["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"]
        .map(|p| format!("libjanus_{p}.so"))
        .join(",");
    let folder = dir.path().display();
    let config = format!(
        "general: {{\n configs_folder = \"{folder}\"\n plugins_folder = \"{lib}/plugins\"\n \
         transports_folder = \"{lib}/transports\"\n events_folder = \"{lib}/events\"\n \
         loggers_folder = \"{lib}/loggers\"\n debug_level = 3\n}}\n\
         media: {{\n rtp_port_range = \"{}-{}\"\n}}\n\
         nat: {{\n ice_ignore_list = \"vmnet\"\n}}\n\
         plugins: {{\n disable = \"{plugins}\"\n}}\n\
         transports: {{\n disable = \"{transports}\"\n}}\n\
         events: {{\n broadcast = false\n}}\n\
         loggers: {{\n disable = \"libjanus_jsonlog.so\"\n}}\n",
        rtp_ports.0, rtp_ports.1
    );
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).expect("write a Janus configuration")
    };
    write("janus.jcfg", &config);
    write(
        "janus.transport.websockets.jcfg",
        &format!("general: {{\n ws = true\n ws_port = {port}\n ws_ip = \"127.0.0.1\"\n}}\n"),
    );
    write("janus.plugin.videoroom.jcfg", "general: {\n}\n");
    let mut cmd = Command::new("janus");
    cmd.arg("-F")
        .arg(dir.path())
        .arg("-C")
        .arg(dir.path().join("janus.jcfg"))
        .args(["-i", "127.0.0.1", "--disable-colors"]);
    let daemon = Daemon::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "Janus did not listen on {port}: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Janus {
        daemon,
        port,
        _dir: dir,
    }
}

/// libnice leaves loopback out of Janus's candidates: Janus offers the machine's own
/// address, which a client bound to loopback only cannot pair with. Janus's clients bind to
/// every interface (still on this machine).
const CLIENT_BIND: &str = "0.0.0.0:0";

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One Janus session over one WebSocket.
pub struct Session {
    sink: tokio::sync::Mutex<crate::webrtc::Sink>,
    waiters: Waiters,
    id: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

static TRANSACTIONS: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// Opens a session on the Janus at `port`, kept alive while the socket is open.
    pub async fn open(port: u16) -> Arc<Self> {
        let mut request = format!("ws://127.0.0.1:{port}/")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().expect("header"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("Janus WebSocket");
        let (sink, mut stream) = socket.split();
        let waiters: Waiters = Arc::default();
        {
            let waiters = Arc::clone(&waiters);
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    // An "ack" only says an asynchronous request was taken; its answer comes
                    // later as an event with the same transaction.
                    if v["janus"] == "ack" {
                        continue;
                    }
                    if let Some(tx) = v["transaction"]
                        .as_str()
                        .and_then(|t| waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(t))
                    {
                        let _ = tx.send(v);
                    }
                }
            });
        }
        let mut session = Self {
            sink: tokio::sync::Mutex::new(sink),
            waiters,
            id: 0,
        };
        let created = session.call(json!({"janus": "create"})).await;
        session.id = created["data"]["id"].as_u64().expect("a session id");
        let session = Arc::new(session);
        let weak = Arc::downgrade(&session);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let Some(s) = weak.upgrade() else { return };
                s.send(json!({"janus": "keepalive"})).await;
            }
        });
        session
    }

    /// Sends a request with a new transaction (and this session's id, once it has one); its
    /// answer goes to `waiter` if given.
    async fn send_with(&self, v: &mut Value, waiter: Option<oneshot::Sender<Value>>) {
        let transaction = format!("t{}", TRANSACTIONS.fetch_add(1, Ordering::Relaxed));
        if let Some(tx) = waiter {
            self.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(transaction.clone(), tx);
        }
        v["transaction"] = json!(transaction);
        if self.id != 0 {
            v["session_id"] = json!(self.id);
        }
        let _ = self
            .sink
            .lock()
            .await
            .send(Message::text(v.to_string()))
            .await;
    }

    async fn send(&self, mut v: Value) {
        self.send_with(&mut v, None).await;
    }

    /// Sends a request and waits (up to 20 s) for its answer.
    async fn call(&self, mut v: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        self.send_with(&mut v, Some(tx)).await;
        let answer = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .unwrap_or_else(|_| panic!("Janus did not answer {v}"))
            .expect("the socket stayed open");
        assert_ne!(answer["janus"], "error", "Janus refused {v}: {answer}");
        answer
    }

    /// Attaches a VideoRoom handle.
    pub async fn attach(&self) -> u64 {
        let a = self
            .call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await;
        a["data"]["id"].as_u64().expect("a handle id")
    }

    /// A VideoRoom request on `handle`, with an SDP when given; the plugin's answer and its
    /// SDP, if any.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<(&str, &str)>,
    ) -> (Value, Option<String>) {
        let mut v = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some((kind, sdp)) = jsep {
            v["jsep"] = json!({"type": kind, "sdp": sdp});
        }
        let answer = self.call(v).await;
        let data = answer["plugindata"]["data"].clone();
        assert!(
            data["error"].is_null(),
            "the VideoRoom refused {body}: {data}",
            body = answer
        );
        (data, answer["jsep"]["sdp"].as_str().map(str::to_owned))
    }

    /// Tells Janus this handle's candidates are all in its SDP.
    async fn candidates_done(&self, handle: u64) {
        self.send(
            json!({"janus": "trickle", "handle_id": handle, "candidate": {"completed": true}}),
        )
        .await;
    }
}

/// Creates VideoRoom room `room` for up to `publishers` publishers (VP8 and Opus).
pub async fn create_room(port: u16, room: u64, publishers: usize) {
    let s = Session::open(port).await;
    let h = s.attach().await;
    s.message(
        h,
        json!({"request": "create", "room": room, "publishers": publishers,
               "videocodec": "vp8", "audiocodec": "opus", "bitrate": 0,
               "notify_joining": false}),
        None,
    )
    .await;
}

/// A participant: its session, its publishing connection and, once subscribed, its
/// receiving one.
pub struct Participant {
    /// The Janus session.
    pub session: Arc<Session>,
    /// Its feed id in the room.
    pub feed: u64,
    /// The publishing connection.
    pub publisher: Arc<dyn PeerConnection>,
    /// The senders of its tracks, in the order given.
    pub senders: Vec<Arc<dyn RtpSender>>,
    /// The receiving connection, once `subscribe` ran.
    pub subscriber: Option<Arc<dyn PeerConnection>>,
    room: u64,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

/// Joins `room` as publisher `feed` and publishes `tracks`; returns once Janus answered and
/// the connection is up (or 15 s passed).
pub async fn join(
    port: u16,
    room: u64,
    feed: u64,
    tracks: Vec<Arc<dyn TrackLocal>>,
) -> Participant {
    let session = Session::open(port).await;
    let handle = session.attach().await;
    session
        .message(
            handle,
            json!({"request": "join", "ptype": "publisher", "room": room, "id": feed,
                   "display": format!("p{feed}")}),
            None,
        )
        .await;
    let nothing: OnTrack = Arc::new(|_| Box::new(|_: &rtc::rtp::Packet| {}));
    let (pc, mut gathered, mut connected) = peer_connection(nothing, CLIENT_BIND, false).await;
    let mut senders = Vec::new();
    for t in tracks {
        senders.push(pc.add_track(t).await.expect("a local track"));
    }
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("local");
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let sdp = pc.local_description().await.expect("described").sdp;
    let (_, answer) = session
        .message(
            handle,
            json!({"request": "publish", "audio": true, "video": true}),
            Some(("offer", &sdp)),
        )
        .await;
    session.candidates_done(handle).await;
    let answer = RTCSessionDescription::answer(answer.expect("Janus's answer")).expect("answer");
    pc.set_remote_description(answer).await.expect("remote");
    let up = tokio::time::timeout(Duration::from_secs(15), connected.recv()).await;
    assert!(
        up.is_ok(),
        "publisher {feed} did not connect to Janus within 15 s"
    );
    Participant {
        session,
        feed,
        publisher: pc,
        senders,
        subscriber: None,
        room,
    }
}

impl Participant {
    /// The payload type negotiated for sender `i`.
    pub async fn payload_type(&self, i: usize) -> u8 {
        crate::webrtc::payload_type(&self.senders[i]).await
    }

    /// Subscribes to `feeds` (the room's other publishers) on a second connection, whose
    /// tracks go to `on_track`; returns once it is up (or 15 s passed).
    pub async fn subscribe(&mut self, feeds: &[u64], on_track: OnTrack) {
        let handle = self.session.attach().await;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let (_, offer) = self
            .session
            .message(
                handle,
                json!({"request": "join", "ptype": "subscriber", "room": self.room,
                       "streams": streams}),
                None,
            )
            .await;
        let (pc, mut gathered, mut connected) = peer_connection(on_track, CLIENT_BIND, false).await;
        let offer = RTCSessionDescription::offer(offer.expect("Janus's offer")).expect("offer");
        pc.set_remote_description(offer).await.expect("remote");
        let answer = pc.create_answer(None).await.expect("answer");
        pc.set_local_description(answer).await.expect("local");
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
        let sdp = pc.local_description().await.expect("described").sdp;
        self.session
            .message(handle, json!({"request": "start"}), Some(("answer", &sdp)))
            .await;
        self.session.candidates_done(handle).await;
        let _ = tokio::time::timeout(Duration::from_secs(15), connected.recv()).await;
        self.subscriber = Some(pc);
    }

    /// Closes both connections.
    pub async fn leave(&self) {
        let _ = self.publisher.close().await;
        if let Some(s) = &self.subscriber {
            let _ = s.close().await;
        }
    }
}
