//! The str0m transport around `sfu-core`: every participant's WebRTC connection is a sans-IO
//! `str0m::Rtc`. A driver thread owns the connections of the rooms given to it and one UDP
//! socket they share (`Rtc::accepts` says whose a datagram is); there is one driver per core,
//! on the first ports of `listeners.sfu_media_udp`, and a room always goes to the same one. RTP
//! arrives as packets (str0m's RTP mode), goes through the core (`Room::packet`), and each
//! forward the core decides is written, rewritten, on the subscriber's send stream: the payload
//! is shared, not copied. str0m answers subscribers' NACKs from its own send buffer (over RTX),
//! estimates each subscriber's bandwidth from TWCC (or takes its REMB) and reports it as an
//! event, which the core turns into a layer choice; keyframe requests both ways are events and
//! calls. Nothing here decides who gets what.
//!
//! Signalling talks to the driver by [`Command`]s; what the driver tells a participant (its
//! answer, the server's offers) goes straight to that participant's socket outbox, in order.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sfu_core::{Kind, Notice, Output, ParticipantId, TrackId};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Rids};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use tokio::sync::{mpsc, oneshot};

use crate::media::{Counted, MediaError, RoomStats, refused};
use crate::signalling::Rooms;

/// What signalling asks of the driver.
pub(crate) enum Command {
    /// A participant's offer (its first, a renegotiation, an ICE restart, or a new connection).
    Offer {
        room: String,
        id: ParticipantId,
        sdp: String,
        tx: mpsc::UnboundedSender<Value>,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// A participant's answer to the server's offer.
    Answer {
        room: String,
        id: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// A participant's trickled candidate.
    Candidate {
        room: String,
        id: ParticipantId,
        candidate: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// A participant's signalling now goes to this outbox (it reconnected).
    SetTx {
        room: String,
        id: ParticipantId,
        tx: mpsc::UnboundedSender<Value>,
    },
    /// The core's outputs outside a packet (notices to follow, keyframe requests from `tick`).
    Outputs { room: String, outputs: Vec<Output> },
    /// Each room's transport figures.
    Stats {
        reply: oneshot::Sender<BTreeMap<String, RoomStats>>,
    },
}

impl Command {
    /// The room a command is about (it goes to that room's driver).
    fn room(&self) -> Option<&str> {
        match self {
            Command::Offer { room, .. }
            | Command::Answer { room, .. }
            | Command::Candidate { room, .. }
            | Command::SetTx { room, .. }
            | Command::Outputs { room, .. } => Some(room),
            Command::Stats { .. } => None,
        }
    }
}

/// The handle signalling keeps: commands go to the driver of their room.
#[derive(Debug, Clone)]
pub struct Transport {
    drivers: Vec<DriverHandle>,
}

/// One driver: its thread owns a UDP socket and the connections of the rooms given to it.
#[derive(Debug, Clone)]
struct DriverHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl Transport {
    /// One driver per core (as many as the range `first..=last` has ports), each on its own
    /// thread and port; a room's participants all go to one driver, chosen by the room's name,
    /// so forwarding never crosses threads.
    pub fn start(ip: IpAddr, first: u16, last: u16, rooms: Weak<Rooms>) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let n = cores.min(usize::from(last - first) + 1).max(1);
        let mut drivers = Vec::with_capacity(n);
        for i in 0..n {
            let port = first + i as u16;
            drivers.push(DriverHandle::start(ip, port, i, rooms.clone())?);
        }
        Ok(Self { drivers })
    }

    fn driver(&self, room: &str) -> &DriverHandle {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same room always goes to the same driver.
        let mut h = std::hash::DefaultHasher::new();
        room.hash(&mut h);
        &self.drivers[(h.finish() % self.drivers.len() as u64) as usize]
    }

    /// Sends a command to its room's driver; false when the driver has stopped.
    pub(crate) fn send(&self, c: Command) -> bool {
        match c.room() {
            Some(room) => self.driver(room).commands.send(c).is_ok(),
            None => false,
        }
    }

    /// Sends a command that replies, and waits for the reply.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, MediaError>>) -> Command,
    ) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(make(reply)) {
            return Err(MediaError::Gone);
        }
        answer.await.unwrap_or(Err(MediaError::Gone))
    }

    /// Each room's figures, from every driver.
    pub(crate) async fn stats(&self) -> BTreeMap<String, RoomStats> {
        let mut all = BTreeMap::new();
        for d in &self.drivers {
            let (reply, answer) = oneshot::channel();
            if d.commands.send(Command::Stats { reply }).is_ok() {
                all.extend(answer.await.unwrap_or_default());
            }
        }
        all
    }
}

impl DriverHandle {
    /// Binds the driver's socket on `ip:port` and starts it on its own thread.
    fn start(ip: IpAddr, port: u16, i: usize, rooms: Weak<Rooms>) -> std::io::Result<Self> {
        let addr = SocketAddr::new(ip, port);
        let raw = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // All of a driver's media crosses this one socket: buffers as large as the system
        // allows (net.core.rmem_max / wmem_max), so bursts wait instead of being dropped.
        let _ = raw.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = raw.set_send_buffer_size(SOCKET_BUFFER);
        raw.set_nonblocking(true)?;
        raw.bind(&addr.into())?;
        let std_socket: std::net::UdpSocket = raw.into();
        let local = std_socket.local_addr()?;
        // ICE-TCP (RFC 6544, passive) on the same port number, for clients whose UDP is blocked.
        let tcp = std::net::TcpListener::bind(local)?;
        tcp.set_nonblocking(true)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("sfu-media-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let sockets = tokio::net::UdpSocket::from_std(std_socket)
                        .and_then(|u| Ok((u, tokio::net::TcpListener::from_std(tcp)?)));
                    match sockets {
                        Ok((socket, tcp)) => Driver::new(socket, tcp, local, rooms).run(rx).await,
                        Err(e) => tracing::error!(error = %e, "media socket"),
                    }
                });
            })?;
        tracing::info!(%local, "media driver (str0m)");
        Ok(Self { commands })
    }
}

/// A track a participant publishes, as its connection receives it.
struct Incoming {
    /// The core's track, once the first packet came (None: refused).
    track: Option<TrackId>,
    kind: Kind,
    codec: Codec,
    /// Simulcast rids in layer order (empty: one layer).
    rids: Vec<Rid>,
    counted: Counted,
}

/// A track forwarded to one subscriber.
struct Outgoing {
    /// Its media section, once offered.
    mid: Option<Mid>,
    /// The publisher (its stream id is `p<owner>`).
    owner: ParticipantId,
    kind: Kind,
    /// Offered; packets go once the answer is taken.
    open: bool,
    /// Being stopped (its publisher ended it), and whether an offer carried the stop.
    stopping: bool,
    stop_offered: bool,
    /// The subscriber's payload type per publisher payload type.
    pts: Vec<(Pt, Pt)>,
    /// The last extended sequence number written (the core rewrites 16 bits).
    seq: Option<u64>,
    counted: Counted,
}

/// One participant's connection.
struct Client {
    rtc: Rtc,
    /// Its room (shared: every packet's path names it).
    room: Arc<str>,
    id: ParticipantId,
    tx: Option<mpsc::UnboundedSender<Value>>,
    fingerprint: String,
    timeout: Instant,
    incoming: HashMap<Mid, Incoming>,
    outgoing: BTreeMap<TrackId, Outgoing>,
    /// The server's offer waiting for its answer.
    pending: Option<(SdpPendingOffer, Instant)>,
    /// Tracks changed while an offer was pending: offer again after the answer.
    again: bool,
    /// Figures from str0m's stats events.
    rtt: Option<Duration>,
    bytes: u64,
    received: u64,
    lost: f64,
    /// NACKs each send stream had, as last reported.
    nacks: HashMap<(Mid, Option<Rid>), u64>,
}

impl Client {
    fn send(&self, message: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(message);
        }
    }
}

/// A published track, as the room's other clients find it.
#[derive(Clone, Copy)]
struct Source {
    owner: u64,
    mid: Mid,
    kind: Kind,
}

/// A room as the driver knows it.
#[derive(Default)]
struct RoomClients {
    members: HashMap<ParticipantId, u64>,
    tracks: BTreeMap<TrackId, Source>,
}

struct Driver {
    socket: tokio::net::UdpSocket,
    /// ICE-TCP: the listener, what its connections' readers hand over (a frame, or None when
    /// the connection closed), and each connection's writer.
    tcp: tokio::net::TcpListener,
    tcp_tx: mpsc::UnboundedSender<(SocketAddr, Option<Vec<u8>>)>,
    tcp_rx: mpsc::UnboundedReceiver<(SocketAddr, Option<Vec<u8>>)>,
    tcp_out: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    local: SocketAddr,
    rooms: Weak<Rooms>,
    clients: HashMap<u64, Client>,
    by_room: HashMap<String, RoomClients>,
    /// The client each remote address last belonged to.
    by_addr: HashMap<SocketAddr, u64>,
    next_key: u64,
    /// Clients with input since they were last polled.
    dirty: Vec<u64>,
    crypto: Arc<str0m::config::CryptoProvider>,
    forward_seconds: metrics::Histogram,
    /// Datagrams waiting for the socket to take them, in order.
    queued: std::collections::VecDeque<(Vec<u8>, SocketAddr)>,
    send_dropped: metrics::Counter,
    /// The gauges as this driver last moved them.
    said: [usize; 3],
    /// When unanswered offers are looked for next.
    next_sweep: Instant,
}

/// The media socket's buffer sizes asked for (the system caps them).
const SOCKET_BUFFER: usize = 8 << 20;

/// ICE-TCP connections a driver keeps at most.
const MAX_TCP: usize = 4096;

/// An ICE-TCP connection silent this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(30);

/// Datagrams kept while the socket cannot take more; beyond that they are dropped (counted).
const SEND_QUEUE: usize = 16_384;

/// The bitrate a subscriber's estimate starts from.
const INITIAL_ESTIMATE: u64 = 2_500;

impl Driver {
    fn new(
        socket: tokio::net::UdpSocket,
        tcp: tokio::net::TcpListener,
        local: SocketAddr,
        rooms: Weak<Rooms>,
    ) -> Self {
        let (tcp_tx, tcp_rx) = mpsc::unbounded_channel();
        Self {
            socket,
            tcp,
            tcp_tx,
            tcp_rx,
            tcp_out: HashMap::new(),
            local,
            rooms,
            clients: HashMap::new(),
            by_room: HashMap::new(),
            by_addr: HashMap::new(),
            next_key: 1,
            dirty: Vec::new(),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            forward_seconds: metrics::histogram!("sfu_forward_seconds"),
            queued: std::collections::VecDeque::new(),
            send_dropped: metrics::counter!("sfu_media_send_dropped_total"),
            said: [0; 3],
            next_sweep: Instant::now(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = self
                .clients
                .values()
                .map(|c| c.timeout)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
            if deadline <= Instant::now() {
                // Something is due now: no waiting (a timer would round up to the next
                // millisecond), only what is there already.
                self.receive(&mut buf);
                self.flush();
                loop {
                    match commands.try_recv() {
                        Ok(c) => self.command(c),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                while let Ok((from, frame)) = self.tcp_rx.try_recv() {
                    self.tcp_frame(from, frame);
                }
            } else {
                tokio::select! {
                    ready = self.socket.readable() => {
                        if ready.is_err() {
                            return;
                        }
                        self.receive(&mut buf);
                    }
                    c = commands.recv() => match c {
                        Some(c) => self.command(c),
                        None => return,
                    },
                    ready = self.socket.writable(), if !self.queued.is_empty() => {
                        if ready.is_err() {
                            return;
                        }
                        self.flush();
                    }
                    accepted = self.tcp.accept() => {
                        if let Ok((stream, peer)) = accepted {
                            self.tcp_connection(stream, peer);
                        }
                    }
                    Some((from, frame)) = self.tcp_rx.recv() => self.tcp_frame(from, frame),
                    () = tokio::time::sleep_until(deadline.into()) => {}
                }
            }
            let now = Instant::now();
            let due: Vec<u64> = self
                .clients
                .iter()
                .filter(|(_, c)| c.timeout <= now)
                .map(|(k, _)| *k)
                .collect();
            for key in due {
                if let Some(c) = self.clients.get_mut(&key)
                    && guarded(|| c.rtc.handle_input(Input::Timeout(now))).is_none()
                {
                    self.broken(key);
                    continue;
                }
                self.dirty.push(key);
            }
            if now >= self.next_sweep {
                self.next_sweep = now + Duration::from_secs(1);
                self.sweep(now);
                self.gauges();
            }
            self.poll_dirty();
        }
    }

    /// Once a second: server offers unanswered for `OFFER_TIMEOUT` are made again (a client that could not
    /// apply one would otherwise never be offered anything more).
    fn sweep(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.pending
                    .as_ref()
                    .is_some_and(|(_, at)| now.duration_since(*at) >= OFFER_TIMEOUT)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(c) = self.clients.get_mut(&key) {
                tracing::info!(room = %c.room, id = c.id.0, "server offer unanswered: made again");
                metrics::counter!("sfu_offers_repeated_total").increment(1);
                withdraw(c);
            }
            self.negotiate(key);
        }
    }

    /// Takes the datagrams waiting at the socket (up to 256, then the polls).
    fn receive(&mut self, buf: &mut [u8]) {
        for _ in 0..256 {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => self.datagram(&buf[..n], source, Protocol::Udp),
                Err(_) => break,
            }
        }
    }

    /// This driver's share of the node's gauges (connections, published and forwarded
    /// tracks), moved by what changed since it last said (once a second).
    fn gauges(&mut self) {
        let now = [
            self.clients.len(),
            self.clients.values().map(|c| c.incoming.len()).sum(),
            self.clients.values().map(|c| c.outgoing.len()).sum(),
        ];
        for ((name, said), now) in ["sfu_peers", "sfu_receive_tasks", "sfu_feedback_tasks"]
            .into_iter()
            .zip(&mut self.said)
            .zip(now)
        {
            if *said != now {
                metrics::gauge!(name).increment(now as f64 - *said as f64);
                *said = now;
            }
        }
    }

    /// One datagram from the media socket: to the client it belongs to.
    fn datagram(&mut self, data: &[u8], source: SocketAddr, proto: Protocol) {
        let Ok(contents) = data.try_into() else {
            metrics::counter!("sfu_media_dropped_total").increment(1);
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto,
                source,
                destination: self.local,
                contents,
            },
        );
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|k| self.clients.get(k).is_some_and(|c| c.rtc.accepts(&input)));
        let key = known.or_else(|| {
            self.clients
                .iter()
                .find(|(_, c)| c.rtc.accepts(&input))
                .map(|(k, _)| *k)
        });
        let Some(key) = key else {
            tracing::debug!(%source, len = data.len(), "a datagram no connection takes");
            metrics::counter!("sfu_media_dropped_total").increment(1);
            return;
        };
        self.by_addr.insert(source, key);
        if let Some(c) = self.clients.get_mut(&key) {
            match guarded(|| c.rtc.handle_input(input)) {
                Some(Ok(())) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "media input refused"),
                None => return self.broken(key),
            }
            self.poll(key);
        }
    }

    /// A connection whose str0m instance panicked (a broken invariant inside the library): it
    /// is dropped, its tracks end, and the rest of the driver goes on. The participant keeps its
    /// place and can offer again.
    fn broken(&mut self, key: u64) {
        let Some((room, id)) = self.clients.get(&key).map(|c| (c.room.clone(), c.id)) else {
            return;
        };
        tracing::error!(
            room = %room,
            id = id.0,
            "a media connection failed inside str0m: dropped"
        );
        metrics::counter!("sfu_media_connections_broken_total").increment(1);
        self.remove(&room, id);
    }

    /// Polls every client with input until none has more.
    fn poll_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let mut keys = std::mem::take(&mut self.dirty);
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                self.poll(key);
            }
        }
    }

    /// Drains one client's output: datagrams go out, events are handled (which may give
    /// other clients input: they are marked dirty).
    fn poll(&mut self, key: u64) {
        // A timeout already due is handled here, a few times over, rather than on the next
        // turn of the loop (str0m's pacer hands out what is queued at each one).
        let mut catch_up = 8;
        loop {
            let Some(c) = self.clients.get_mut(&key) else {
                return;
            };
            if !c.rtc.is_alive() {
                c.timeout = Instant::now() + Duration::from_secs(3600);
                return;
            }
            let out = match guarded(|| c.rtc.poll_output()) {
                Some(Ok(o)) => o,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "media connection failed");
                    c.rtc.disconnect();
                    return;
                }
                None => return self.broken(key),
            };
            match out {
                RtcOutput::Timeout(t) => {
                    let now = Instant::now();
                    if t <= now && catch_up > 0 {
                        catch_up -= 1;
                        if guarded(|| c.rtc.handle_input(Input::Timeout(now))).is_none() {
                            return self.broken(key);
                        }
                        continue;
                    }
                    c.timeout = t;
                    return;
                }
                RtcOutput::Transmit(t) if t.proto == Protocol::Tcp => {
                    if let Some(w) = self.tcp_out.get(&t.destination) {
                        let _ = w.send(t.contents.into());
                    }
                }
                RtcOutput::Transmit(t) => self.transmit(t.contents.into(), t.destination),
                RtcOutput::Event(e) => self.event(key, e),
            }
        }
    }

    /// A frame from an ICE-TCP connection, or None: that connection closed.
    fn tcp_frame(&mut self, from: SocketAddr, frame: Option<Vec<u8>>) {
        match frame {
            Some(f) => self.datagram(&f, from, Protocol::Tcp),
            None => {
                self.tcp_out.remove(&from);
            }
        }
    }

    /// A client's ICE-TCP connection: frames (RFC 4571: a 16-bit length, then the packet) are
    /// read by one task and handed to the driver, and written by another.
    fn tcp_connection(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.tcp_out.len() >= MAX_TCP {
            metrics::counter!("sfu_media_dropped_total").increment(1);
            return;
        }
        let _ = stream.set_nodelay(true);
        let (mut r, mut w) = stream.into_split();
        let (out, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
        self.tcp_out.insert(peer, out);
        let frames = self.tcp_tx.clone();
        tokio::spawn(async move {
            loop {
                // ICE consent checks come every few seconds on a live connection.
                let read = async {
                    let mut len = [0u8; 2];
                    r.read_exact(&mut len).await?;
                    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    r.read_exact(&mut frame).await?;
                    Ok::<_, std::io::Error>(frame)
                };
                match tokio::time::timeout(TCP_IDLE, read).await {
                    Ok(Ok(frame)) => {
                        if frames.send((peer, Some(frame))).is_err() {
                            return;
                        }
                    }
                    _ => break,
                }
            }
            let _ = frames.send((peer, None));
        });
        tokio::spawn(async move {
            while let Some(packet) = to_write.recv().await {
                let Ok(len) = u16::try_from(packet.len()) else {
                    continue;
                };
                if w.write_all(&len.to_be_bytes()).await.is_err()
                    || w.write_all(&packet).await.is_err()
                {
                    return;
                }
            }
        });
    }

    /// Sends a datagram, or queues it behind those the socket could not take yet.
    fn transmit(&mut self, data: Vec<u8>, to: SocketAddr) {
        if self.queued.is_empty() {
            match self.socket.try_send_to(&data, to) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => return,
            }
        }
        if self.queued.len() >= SEND_QUEUE {
            self.send_dropped.increment(1);
            return;
        }
        self.queued.push_back((data, to));
    }

    /// Sends what was queued, as far as the socket takes it.
    fn flush(&mut self) {
        while let Some((data, to)) = self.queued.front() {
            match self.socket.try_send_to(data, *to) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                _ => {
                    self.queued.pop_front();
                }
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Offer {
                room,
                id,
                sdp,
                tx,
                reply,
            } => {
                let r = self.offer(&room, id, &sdp, tx);
                let _ = reply.send(r);
            }
            Command::Answer {
                room,
                id,
                sdp,
                reply,
            } => {
                let r = self.answer(&room, id, &sdp);
                let _ = reply.send(r);
            }
            Command::Candidate {
                room,
                id,
                candidate,
                reply,
            } => {
                let r = self.candidate(&room, id, &candidate);
                let _ = reply.send(r);
            }
            Command::SetTx { room, id, tx } => {
                if let Some(c) = self.client_of(&room, id) {
                    c.tx = Some(tx);
                }
            }
            Command::Outputs { room, outputs } => self.outputs(&room, &outputs, None),
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn key_of(&self, room: &str, id: ParticipantId) -> Option<u64> {
        self.by_room.get(room)?.members.get(&id).copied()
    }

    fn client_of(&mut self, room: &str, id: ParticipantId) -> Option<&mut Client> {
        let key = self.key_of(room, id)?;
        self.clients.get_mut(&key)
    }

    fn new_rtc(&self) -> Rtc {
        Rtc::builder()
            .set_crypto_provider(Arc::clone(&self.crypto))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE)))
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(Instant::now())
    }

    /// A participant's offer: answered (on a new connection when its DTLS fingerprint
    /// changed), then the tracks others publish are offered.
    fn offer(
        &mut self,
        room: &str,
        id: ParticipantId,
        sdp: &str,
        tx: mpsc::UnboundedSender<Value>,
    ) -> Result<(), MediaError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| refused("sdp", e))?;
        let Some(fingerprint) = sfu_core::message::fingerprint(sdp).map(str::to_owned) else {
            return Err(refused("sdp", "no a=fingerprint: DTLS-SRTP is required"));
        };
        if let Some(key) = self.key_of(room, id)
            && self
                .clients
                .get(&key)
                .is_some_and(|c| c.fingerprint != fingerprint)
        {
            // A new connection (the client started over after a drop): the old one goes and
            // its tracks end; the new one takes its place.
            tracing::info!(
                room,
                id = id.0,
                "participant reconnected with a new connection"
            );
            self.remove(room, id);
        }
        let key = match self.key_of(room, id) {
            Some(k) => k,
            None => {
                let mut rtc = self.new_rtc();
                let host = Candidate::host(self.local, "udp").map_err(|e| refused("sdp", e))?;
                rtc.add_local_candidate(host);
                let tcp = Candidate::builder()
                    .tcp()
                    .host(self.local)
                    .tcptype(str0m::net::TcpType::Passive)
                    .build()
                    .map_err(|e| refused("sdp", e))?;
                rtc.add_local_candidate(tcp);
                let key = self.next_key;
                self.next_key += 1;
                self.clients.insert(
                    key,
                    Client {
                        rtc,
                        room: Arc::from(room),
                        id,
                        tx: None,
                        fingerprint,
                        timeout: Instant::now(),
                        incoming: HashMap::new(),
                        outgoing: BTreeMap::new(),
                        pending: None,
                        again: false,
                        rtt: None,
                        bytes: 0,
                        received: 0,
                        lost: 0.0,
                        nacks: HashMap::new(),
                    },
                );
                self.by_room
                    .entry(room.to_owned())
                    .or_default()
                    .members
                    .insert(id, key);
                key
            }
        };
        let c = self.clients.get_mut(&key).ok_or(MediaError::Gone)?;
        c.tx = Some(tx);
        if c.pending.is_some() {
            return Err(refused(
                "sdp",
                "an offer from the server is waiting for its answer",
            ));
        }
        let answer = c
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| refused("sdp", e))?;
        c.send(json!({ "type": "answer", "sdp": answer.to_sdp_string() }));
        self.dirty.push(key);
        // Everything others publish that this one does not get yet.
        let sources: Vec<(TrackId, Source)> = self
            .by_room
            .get(room)
            .map(|r| r.tracks.iter().map(|(t, s)| (*t, *s)).collect())
            .unwrap_or_default();
        for (tid, s) in sources {
            if s.owner != key {
                self.add_outgoing(key, tid, s);
            }
        }
        self.negotiate(key);
        self.poll_dirty();
        Ok(())
    }

    /// Gives client `key` a send-only media section for `tid` (offered by `negotiate`).
    fn add_outgoing(&mut self, key: u64, tid: TrackId, s: Source) {
        let Some(owner) = self.clients.get(&s.owner).map(|c| c.id) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        if c.outgoing.contains_key(&tid) {
            return;
        }
        // Offered by `negotiate`, with everything else added meanwhile.
        c.outgoing.insert(
            tid,
            Outgoing {
                mid: None,
                owner,
                kind: s.kind,
                open: false,
                stopping: false,
                stop_offered: false,
                pts: Vec::new(),
                seq: None,
                counted: Counted::sent(&c.room),
            },
        );
        c.again = true;
    }

    /// Offers client `key` what changed, unless an offer is pending or its own first offer
    /// was not taken yet.
    fn negotiate(&mut self, key: u64) {
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        if c.pending.is_some() || !c.again {
            return;
        }
        let Client { rtc, outgoing, .. } = c;
        let mut api = rtc.sdp_api();
        for (tid, o) in outgoing.iter_mut() {
            match o.mid {
                None if !o.stopping => {
                    let kind = match o.kind {
                        Kind::Audio => MediaKind::Audio,
                        Kind::Video => MediaKind::Video,
                    };
                    o.mid = Some(api.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(format!("p{}", o.owner.0)),
                        Some(format!("t{}", tid.0)),
                        None,
                    ));
                }
                Some(mid) if o.stopping && o.open => {
                    api.stop_media(mid);
                    o.stop_offered = true;
                }
                _ => {}
            }
        }
        // Never offered and already ended: nothing to stop.
        outgoing.retain(|_, o| !(o.stopping && o.mid.is_none()));
        let Some((offer, pending)) = api.apply() else {
            c.again = false;
            return;
        };
        c.again = false;
        c.pending = Some((pending, Instant::now()));
        c.send(json!({ "type": "offer", "sdp": offer.to_sdp_string() }));
        self.dirty.push(key);
    }

    fn answer(&mut self, room: &str, id: ParticipantId, sdp: &str) -> Result<(), MediaError> {
        let key = self
            .key_of(room, id)
            .ok_or_else(|| refused("type", "no offer was made to you"))?;
        let c = self.clients.get_mut(&key).ok_or(MediaError::Gone)?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| refused("sdp", e))?;
        let (pending, _) = c
            .pending
            .take()
            .ok_or_else(|| refused("type", "no offer from the server is waiting"))?;
        if let Err(e) = c.rtc.sdp_api().accept_answer(pending, answer) {
            // The offer is void: what it carried is offered again.
            withdraw(c);
            self.negotiate(key);
            self.poll_dirty();
            return Err(refused("sdp", e));
        }
        // What the offer carried is open now; what it stopped is gone.
        c.outgoing.retain(|_, o| !o.stop_offered);
        for o in c.outgoing.values_mut() {
            o.open |= o.mid.is_some();
        }
        self.dirty.push(key);
        self.negotiate(key);
        self.poll_dirty();
        Ok(())
    }

    fn candidate(&mut self, room: &str, id: ParticipantId, line: &str) -> Result<(), MediaError> {
        let c = self
            .client_of(room, id)
            .ok_or_else(|| refused("type", "send an offer before candidates"))?;
        let line = line.trim().trim_start_matches("a=");
        if line.is_empty() {
            return Ok(()); // end of candidates
        }
        match Candidate::from_sdp_string(line) {
            Ok(candidate) => {
                c.rtc.add_remote_candidate(candidate);
                Ok(())
            }
            // A browser's mDNS name (x.local) cannot be resolved here; its checks reach us
            // and make a peer-reflexive candidate instead.
            Err(_) if line.contains(".local ") => Ok(()),
            Err(e) => Err(refused("candidate", e)),
        }
    }

    /// Removes a participant's connection; its tracks end.
    fn remove(&mut self, room: &str, id: ParticipantId) {
        let Some(key) = self.key_of(room, id) else {
            return;
        };
        if let Some(r) = self.by_room.get_mut(room) {
            r.members.remove(&id);
            r.tracks.retain(|_, s| s.owner != key);
        }
        if let Some(mut c) = self.clients.remove(&key) {
            c.rtc.disconnect();
            let tracks: Vec<TrackId> = c.incoming.values().filter_map(|i| i.track).collect();
            if let Some(rooms) = self.rooms.upgrade() {
                for t in tracks {
                    rooms.unpublish(room, id, t);
                }
            }
        }
        self.by_addr.retain(|_, k| *k != key);
        if self.by_room.get(room).is_some_and(|r| r.members.is_empty()) {
            self.by_room.remove(room);
        }
    }

    /// Follows the core's outputs: forwards, keyframe requests, and notices (a participant
    /// left: its connection closes; a track ended: its subscribers stop it). `packet` is the
    /// packet the forwards are of.
    fn outputs(&mut self, room: &str, outputs: &[Output], packet: Option<&RtpPacket>) {
        for o in outputs {
            match o {
                Output::Forward {
                    to,
                    track,
                    seq,
                    ts,
                    marker,
                    ..
                } => {
                    if let Some(p) = packet {
                        let _ = self.write(room, *to, *track, *seq, *ts, *marker, p);
                    }
                }
                // str0m answers NACKs itself, from its send buffer.
                Output::Retransmit { .. } => {}
                Output::RequestKeyframe { track, layer, .. } => {
                    self.request_keyframe(room, *track, *layer);
                }
                Output::Notice(Notice::Left(p)) => self.remove(room, *p),
                Output::Notice(Notice::Unpublished(_, tid)) => self.unpublished(room, *tid),
                Output::Notice(_) => {}
            }
        }
    }

    /// A track ended: every subscriber stops its media section.
    fn unpublished(&mut self, room: &str, tid: TrackId) {
        let Some(r) = self.by_room.get_mut(room) else {
            return;
        };
        r.tracks.remove(&tid);
        let keys: Vec<u64> = r.members.values().copied().collect();
        for key in keys {
            let Some(c) = self.clients.get_mut(&key) else {
                continue;
            };
            let Some(o) = c.outgoing.get_mut(&tid) else {
                continue;
            };
            // Stopped now if open; if in the pending offer, after its answer.
            o.stopping = true;
            c.again = true;
            self.negotiate(key);
        }
    }

    /// Writes one forwarded packet on a subscriber's send stream.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        room: &str,
        to: ParticipantId,
        track: TrackId,
        seq: u16,
        ts: u32,
        marker: bool,
        p: &RtpPacket,
    ) -> Option<()> {
        let key = self.key_of(room, to)?;
        let from = p.header.payload_type;
        let o = self.clients.get(&key)?.outgoing.get(&track)?;
        let (Some(mid), true, false) = (o.mid, o.open, o.stopping) else {
            return None;
        };
        let known = o.pts.iter().find(|(a, _)| *a == from).map(|(_, b)| *b);
        let pt = match known {
            Some(pt) => pt,
            None => self.subscriber_pt(room, track, key, from)?,
        };
        let c = self.clients.get_mut(&key)?;
        let o = c.outgoing.get_mut(&track)?;
        if known.is_none() {
            o.pts.push((from, pt));
        }
        let extended = extend(o.seq, seq);
        o.seq = Some(extended);
        o.counted.count((p.payload.len() + 12) as u64);
        let nackable = o.kind == Kind::Video;
        let mut api = c.rtc.direct_api();
        let stream = api.stream_tx_by_mid(mid, None)?;
        // Forwarded as it comes: the publisher paced it, and a subscriber's estimate picks
        // its layer (str0m's pacer would hold packets to the estimate and drop the rest).
        stream.set_unpaced(true);
        stream.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(extended),
                ts,
                p.timestamp,
                p.payload.clone(),
            )
            .marker(marker)
            .nackable(nackable),
        );
        self.dirty.push(key);
        Some(())
    }

    /// The subscriber `key`'s payload type for the codec the publisher of `track` sends as
    /// `from`.
    fn subscriber_pt(&self, room: &str, track: TrackId, key: u64, from: Pt) -> Option<Pt> {
        let owner = self.by_room.get(room)?.tracks.get(&track)?.owner;
        let params = *self
            .clients
            .get(&owner)?
            .rtc
            .codec_config()
            .find(|x| x.pt() == from)?;
        let sub = self.clients.get(&key)?;
        sub.rtc.codec_config().match_params(params).map(|x| x.pt())
    }

    /// Asks a track's publisher for a keyframe of `layer`.
    fn request_keyframe(&mut self, room: &str, tid: TrackId, layer: u8) {
        let Some(s) = self
            .by_room
            .get(room)
            .and_then(|r| r.tracks.get(&tid))
            .copied()
        else {
            return;
        };
        let Some(c) = self.clients.get_mut(&s.owner) else {
            return;
        };
        let rid = c
            .incoming
            .get(&s.mid)
            .and_then(|i| i.rids.get(usize::from(layer)).copied());
        let mut api = c.rtc.direct_api();
        let stream = match api.stream_rx_by_mid(s.mid, rid) {
            Some(s) => Some(s),
            None => api.stream_rx_by_mid(s.mid, None),
        };
        if let Some(stream) = stream {
            stream.request_keyframe(KeyframeRequestKind::Pli);
            metrics::counter!("sfu_pli_total").increment(1);
            self.dirty.push(s.owner);
        }
    }

    fn event(&mut self, key: u64, e: Event) {
        match e {
            Event::RtpPacket(p) => self.packet(key, p),
            Event::KeyframeRequest(req) => self.feedback(key, req.mid, Feedback::Keyframe),
            Event::EgressBitrateEstimate(
                BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
            ) => {
                let bps = estimate.as_u64();
                tracing::debug!(key, bps, "bandwidth estimate");
                self.feedback(key, None, Feedback::Estimate(bps));
            }
            Event::IceConnectionStateChange(state) => {
                metrics::counter!("sfu_peer_state_total", "state" => format!("{state:?}"))
                    .increment(1);
            }
            Event::PeerStats(s) => {
                if let Some(c) = self.clients.get_mut(&key) {
                    // The round trip of the selected pair's STUN checks (as a browser reports
                    // it), else str0m's TWCC one.
                    let ice = s
                        .selected_candidate_pair
                        .as_ref()
                        .and_then(|p| p.current_round_trip_time);
                    c.rtt = ice.or(s.rtt).filter(|d| !d.is_zero()).or(c.rtt);
                    c.bytes = s.peer_bytes_rx + s.peer_bytes_tx;
                }
            }
            Event::MediaEgressStats(s) => {
                // str0m answers NACKs from its send buffer; they are counted here.
                if let Some(c) = self.clients.get_mut(&key) {
                    let before = c.nacks.insert((s.mid, s.rid), s.nacks).unwrap_or(0);
                    let new = s.nacks.saturating_sub(before);
                    if new > 0 {
                        metrics::counter!("sfu_feedback_total", "kind" => "nack").increment(new);
                    }
                }
            }
            Event::MediaIngressStats(s) => {
                if let Some(c) = self.clients.get_mut(&key) {
                    c.received = c.received.max(s.packets);
                    if let Some(l) = s.loss {
                        c.lost = f64::from(l);
                    }
                }
            }
            _ => {}
        }
    }

    fn feedback(&mut self, key: u64, mid: impl Into<Option<Mid>>, f: Feedback) {
        let Some(c) = self.clients.get(&key) else {
            return;
        };
        let (room, sub) = (c.room.clone(), c.id);
        let tid = mid.into().and_then(|m| {
            c.outgoing
                .iter()
                .find(|(_, o)| o.mid == Some(m))
                .map(|(t, _)| *t)
        });
        let Some(rooms) = self.rooms.upgrade() else {
            return;
        };
        let (kind, out) = match f {
            Feedback::Keyframe => {
                let Some(tid) = tid else { return };
                (
                    "keyframe",
                    rooms.run_core(&room, |core, now| core.keyframe_request(sub, tid, now)),
                )
            }
            Feedback::Estimate(bps) => (
                "estimate",
                rooms.run_core(&room, |core, now| core.estimate(sub, bps, now)),
            ),
        };
        metrics::counter!("sfu_feedback_total", "kind" => kind).increment(1);
        if let Ok(out) = out {
            self.outputs(&room, &out, None);
        }
    }

    /// One RTP packet from a publisher: published on its first packet, then through the core.
    fn packet(&mut self, key: u64, p: RtpPacket) {
        let received = Instant::now();
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        let Some((mid, rid)) = c
            .rtc
            .direct_api()
            .stream_rx(&p.header.ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        if !c.incoming.contains_key(&mid) {
            self.publish(key, mid, &p);
        }
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        let Some(inc) = c.incoming.get(&mid) else {
            return;
        };
        let Some(tid) = inc.track else {
            return;
        };
        let layer = rid
            .and_then(|r| inc.rids.iter().position(|x| *x == r))
            .unwrap_or(0) as u8;
        let keyframe = match inc.codec {
            Codec::Vp8 => crate::media::vp8_keyframe(&p.payload),
            Codec::H264 => crate::media::h264_keyframe(&p.payload),
            _ => false,
        };
        let audio_level = if inc.kind == Kind::Audio {
            p.header.ext_vals.audio_level.map(|l| l.unsigned_abs())
        } else {
            None
        };
        inc.counted.count((p.payload.len() + 12) as u64);
        let core_packet = sfu_core::Packet {
            track: tid,
            layer,
            seq: p.header.sequence_number,
            ts: p.header.timestamp,
            marker: p.header.marker,
            keyframe,
            audio_level,
            handle: 0,
        };
        let room = c.room.clone();
        let Some(rooms) = self.rooms.upgrade() else {
            return;
        };
        let Ok(out) = rooms.run_core(&room, |core, now| core.packet(core_packet, now)) else {
            return;
        };
        self.outputs(&room, &out, Some(&p));
        self.forward_seconds
            .record(received.elapsed().as_secs_f64());
    }

    /// A publisher's new media section: registered with the core and offered to the others.
    fn publish(&mut self, key: u64, mid: Mid, p: &RtpPacket) {
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        let Some(media) = c.rtc.media(mid) else {
            return;
        };
        let kind = if media.kind() == MediaKind::Audio {
            Kind::Audio
        } else {
            Kind::Video
        };
        let rids: Vec<Rid> = match media.rids_rx() {
            Rids::Specific(v) if v.len() > 1 => v.clone(),
            _ => Vec::new(),
        };
        let codec = c
            .rtc
            .codec_config()
            .find(|x| x.pt() == p.header.payload_type)
            .map(|x| x.spec().codec)
            .unwrap_or(Codec::Null);
        let layers = if rids.is_empty() {
            crate::media::default_layers(kind)
        } else {
            crate::media::simulcast_layers(rids.len())
        };
        let (room, id) = (c.room.clone(), c.id);
        let track = self.rooms.upgrade().and_then(|rooms| {
            match rooms.publish_track(&room, id, kind, layers) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::info!(id = id.0, error = %e, "publish refused");
                    None
                }
            }
        });
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        c.incoming.insert(
            mid,
            Incoming {
                track,
                kind,
                codec,
                rids,
                counted: Counted::received(&room),
            },
        );
        let Some(tid) = track else {
            return;
        };
        let source = Source {
            owner: key,
            mid,
            kind,
        };
        let others: Vec<u64> = match self.by_room.get_mut(&*room) {
            Some(r) => {
                r.tracks.insert(tid, source);
                r.members.values().copied().filter(|k| *k != key).collect()
            }
            None => Vec::new(),
        };
        for other in others {
            // Only clients whose own first offer was taken get offers.
            self.add_outgoing(other, tid, source);
            self.negotiate(other);
        }
    }

    fn stats(&self) -> BTreeMap<String, RoomStats> {
        let mut out: BTreeMap<String, (RoomStats, f64, u32, f64, u64)> = BTreeMap::new();
        for c in self.clients.values() {
            let e = out.entry(c.room.to_string()).or_default();
            e.0.bytes += c.bytes;
            if let Some(rtt) = c.rtt {
                e.1 += rtt.as_secs_f64();
                e.2 += 1;
            }
            e.3 += c.lost * c.received as f64;
            e.4 += c.received;
        }
        out.into_iter()
            .map(|(room, (mut s, rtt, n, lost, received))| {
                if n > 0 {
                    s.rtt = rtt / f64::from(n);
                }
                if received > 0 {
                    s.loss = lost / received as f64;
                }
                (room, s)
            })
            .collect()
    }
}

/// Runs `f`, catching a panic (str0m panics on a broken internal invariant): None if it did.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// How long a server offer waits for its answer before it is made again.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Forgets the client's pending offer (unanswered, or its answer refused): what it added is
/// added again and what it stopped is stopped again by the next offer.
fn withdraw(c: &mut Client) {
    c.pending = None;
    for o in c.outgoing.values_mut() {
        if !o.open {
            o.mid = None;
        }
        o.stop_offered = false;
    }
    c.again = true;
}

enum Feedback {
    Keyframe,
    Estimate(u64),
}

/// The extended sequence number of `seq` (16 bits, as the core rewrites it) after `last`.
fn extend(last: Option<u64>, seq: u16) -> u64 {
    let Some(last) = last else {
        return u64::from(seq);
    };
    let delta = seq.wrapping_sub(last as u16) as i16;
    last.saturating_add_signed(i64::from(delta))
}

#[cfg(test)]
mod tests {
    use super::extend;

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        assert_eq!(extend(None, 65_530), 65_530);
        assert_eq!(extend(Some(65_530), 65_535), 65_535);
        assert_eq!(extend(Some(65_535), 0), 65_536);
        assert_eq!(extend(Some(65_536), 3), 65_539);
        // A late packet (a retransmission, a reordering) goes back, not forward a whole cycle.
        assert_eq!(extend(Some(65_539), 65_534), 65_534);
        assert_eq!(extend(Some(10), 8), 8);
    }
}
