//! Load harness for the SFU (issue 6), against the real `sfu` binary: N rooms of M webrtc-rs
//! participants, each publishing at the packet rate of a 720p 1.5 Mbps camera (156 packets/s of
//! 1,200 bytes, a keyframe each second) plus Opus (50 packets/s), payloads cut from the shared
//! clips with a send time written into them. It reports packets forwarded per second, loss,
//! latency end to end and inside the SFU (receive to hand-over, p50/p99), the SFU's CPU and
//! RSS, and the harness's own CPU. Beside it, in the same run, the machine's limit: a bare UDP
//! loop that receives SRTP, decrypts, encrypts and sends on one core.
//!
//! Build first: `cargo build --release -p sfu -p benches`, then
//! `target/release/sfu_load [ROOMS,ROOMS...] [SIZE] [SECONDS] [str0m|webrtc-rs|janus|both|all]`
//! (default `1,2,4 4 8 str0m`): the SFU on its str0m or webrtc-rs transport (`sfu.transport`),
//! Janus, str0m and Janus, or all three. `janus`, `both` and `all` run the same rooms against
//! Janus 1.1's VideoRoom
//! (Debian's `janus`, started on loopback with `-i 127.0.0.1`): each participant publishes on
//! one connection and subscribes to the room's other feeds on a second.
//!
//! `target/release/sfu_load soak [CYCLES] [PARALLEL] [TRANSPORT]` (default 10,000, 8 and
//! str0m) is the soak run:
//! participants join a room where one publishes, connect, receive, and leave; the SFU's RSS
//! and open files after a warm-up and at the end. `SFU_LOAD_DEBUG=1` prints what each
//! participant sent and received.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

/// Microseconds since the harness started: the clock written into payloads.
fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// CPU seconds of a process so far (utime + stime).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What every receiver saw: packets and latencies per (publisher tag, kind).
#[derive(Default)]
struct Seen {
    packets: HashMap<(u32, bool), u64>,
    latency_us: Vec<u64>,
}

/// The server under load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// This project's `sfu` with one of its transports (`sfu.transport`).
    Sfu(&'static str),
    /// Janus 1.1's VideoRoom.
    Janus,
}

/// A participant's connection(s): the shared webrtc-rs client of our SFU, or a Janus
/// VideoRoom publisher and subscriber.
enum Client {
    Sfu(e2e::webrtc::Participant),
    Janus(e2e::janus::Participant),
}

impl Client {
    async fn payload_type(&self, i: usize) -> u8 {
        match self {
            Client::Sfu(p) => p.payload_type(i).await,
            Client::Janus(p) => p.payload_type(i).await,
        }
    }

    /// Waits (up to `within`) until the connection is up; a Janus participant's join already
    /// waited.
    async fn connected(&mut self, within: Duration) -> bool {
        match self {
            Client::Sfu(p) => tokio::time::timeout(within, p.connected.recv())
                .await
                .is_ok(),
            Client::Janus(_) => true,
        }
    }

    async fn leave(&self) {
        match self {
            Client::Sfu(p) => p.leave().await,
            Client::Janus(p) => p.leave().await,
        }
    }
}

/// A participant of the harness: its client, the tracks it writes (each payload carries the
/// send time and the participant's tag), what it saw and sent.
struct Participant {
    p: Client,
    tag: u32,
    video: (Arc<TrackLocalStaticRTP>, u32),
    audio: (Arc<TrackLocalStaticRTP>, u32),
    seen: Arc<Mutex<Seen>>,
    sent: Arc<[AtomicU64; 2]>,
    /// Next video and audio sequence numbers and the video frame count: a publisher's
    /// numbering runs on across the warm-up and the measurement.
    next: Arc<[AtomicU64; 3]>,
}

fn track(
    kind: RtpCodecKind,
    mime: &str,
    clock: u32,
    channels: u16,
) -> (Arc<TrackLocalStaticRTP>, u32) {
    let (track, ssrc) = e2e::webrtc::media_track(kind, mime, clock, channels);
    (Arc::new(TrackLocalStaticRTP::new(track)), ssrc)
}

/// Counts each received packet by publisher and kind, and its latency while measuring.
fn count(
    seen: Arc<Mutex<Seen>>,
    measuring: Arc<std::sync::atomic::AtomicBool>,
) -> e2e::webrtc::OnTrack {
    Arc::new(move |info: e2e::webrtc::TrackInfo| {
        let (seen, measuring) = (Arc::clone(&seen), Arc::clone(&measuring));
        let audio = info.audio;
        Box::new(move |p: &rtc::rtp::Packet| {
            if p.payload.len() < 16 {
                return;
            }
            let mut tag = [0u8; 4];
            tag.copy_from_slice(&p.payload[12..16]);
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            *s.packets
                .entry((u32::from_le_bytes(tag), audio))
                .or_default() += 1;
            if measuring.load(Ordering::Relaxed) {
                let mut t = [0u8; 8];
                t.copy_from_slice(&p.payload[4..12]);
                let sent = u64::from_le_bytes(t);
                s.latency_us.push(now_us().saturating_sub(sent));
            }
        })
    })
}

/// Where a participant joins: our SFU with a room token, or a Janus room as a feed.
enum Joining<'a> {
    Sfu { port: u16, token: &'a str },
    Janus { port: u16, room: u64 },
}

async fn join(
    at: Joining<'_>,
    tag: u32,
    measuring: Arc<std::sync::atomic::AtomicBool>,
) -> Participant {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (v, vssrc) = track(RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
    let (a, assrc) = track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
    let tracks = vec![
        Arc::clone(&v) as Arc<dyn TrackLocal>,
        Arc::clone(&a) as Arc<dyn TrackLocal>,
    ];
    let p = match at {
        Joining::Sfu { port, token } => Client::Sfu(
            e2e::webrtc::join(
                port,
                token,
                e2e::webrtc::Options {
                    tracks,
                    on_track: count(Arc::clone(&seen), measuring),
                    strip_candidates: false,
                    skip_offers: 0,
                    twcc: false,
                    rewrite: None,
                },
            )
            .await,
        ),
        Joining::Janus { port, room } => {
            Client::Janus(e2e::janus::join(port, room, u64::from(tag) + 1, tracks).await)
        }
    };
    Participant {
        p,
        tag,
        video: (v, vssrc),
        audio: (a, assrc),
        seen,
        sent: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        next: Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]),
    }
}

async fn publish(p: &Participant, clip: Arc<Vec<u8>>, until: Instant) {
    let (vpt, apt) = (p.p.payload_type(0).await, p.p.payload_type(1).await);
    let (v, vssrc, a, assrc) = (
        Arc::clone(&p.video.0),
        p.video.1,
        Arc::clone(&p.audio.0),
        p.audio.1,
    );
    let sent = Arc::clone(&p.sent);
    let next = Arc::clone(&p.next);
    let tag = p.tag.to_le_bytes();
    let video = {
        let (clip, sent, next) = (Arc::clone(&clip), Arc::clone(&sent), Arc::clone(&next));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / 26));
            let (mut seq, mut frame) = (
                next[0].load(Ordering::Relaxed) as u16,
                next[2].load(Ordering::Relaxed) as u32,
            );
            while Instant::now() < until {
                tick.tick().await;
                for k in 0..6u16 {
                    let at = (usize::from(seq) * 1200) % (clip.len() - 1300);
                    let mut payload = clip[at..at + 1200].to_vec();
                    // VP8 descriptor: S=1 on the frame's first packet; a keyframe each 26 frames.
                    payload[0] = if k == 0 { 0x10 } else { 0x00 };
                    payload[1] = if frame % 26 == 0 { 0x00 } else { 0x01 };
                    payload[4..12].copy_from_slice(&now_us().to_le_bytes());
                    payload[12..16].copy_from_slice(&tag);
                    let packet = rtc::rtp::Packet {
                        header: rtc::rtp::header::Header {
                            version: 2,
                            payload_type: vpt,
                            sequence_number: seq,
                            timestamp: frame.wrapping_mul(3462),
                            ssrc: vssrc,
                            marker: k == 5,
                            ..Default::default()
                        },
                        payload: payload.into(),
                    };
                    seq = seq.wrapping_add(1);
                    if v.write_rtp(packet).await.is_ok() {
                        sent[0].fetch_add(1, Ordering::Relaxed);
                    }
                }
                frame += 1;
            }
            next[0].store(u64::from(seq), Ordering::Relaxed);
            next[2].store(u64::from(frame), Ordering::Relaxed);
        })
    };
    let audio = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut seq = next[1].load(Ordering::Relaxed) as u16;
        while Instant::now() < until {
            tick.tick().await;
            let at = (usize::from(seq) * 100) % (clip.len() - 200);
            let mut payload = clip[at..at + 100].to_vec();
            payload[4..12].copy_from_slice(&now_us().to_le_bytes());
            payload[12..16].copy_from_slice(&tag);
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: apt,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 960,
                    ssrc: assrc,
                    ..Default::default()
                },
                payload: payload.into(),
            };
            seq = seq.wrapping_add(1);
            if a.write_rtp(packet).await.is_ok() {
                sent[1].fetch_add(1, Ordering::Relaxed);
            }
        }
        next[1].store(u64::from(seq), Ordering::Relaxed);
    });
    let _ = video.await;
    let _ = audio.await;
}

fn metric(port: u16, name: &str) -> f64 {
    let body = e2e::get(port, "/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// The server under load: its process and, for our SFU, its signalling port (for /metrics).
enum Server {
    Sfu(e2e::Daemon, u16),
    Janus(e2e::janus::Janus),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Sfu(d, _) => d.pid(),
            Server::Janus(j) => j.daemon.pid(),
        }
    }
}

/// One load step: `rooms` rooms of `size` participants on `target` for `seconds`.
async fn run(target: Target, rooms: usize, size: usize, seconds: u64, clip: Arc<Vec<u8>>) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut all: Vec<(usize, Participant)> = Vec::new();
    let server = match target {
        Target::Sfu(transport) => {
            let (d, ports) = e2e::webrtc::start_sfu(
                &key,
                &[
                    "--set",
                    &format!("sfu.transport={transport}"),
                    "--set",
                    "sfu.max_rooms=1000",
                    "--set",
                    "sfu.max_participants_per_room=16",
                    "--set",
                    "listeners.sfu_media_udp=30000-31999",
                ],
            );
            let port = ports.sfu_signalling;
            for r in 0..rooms {
                for i in 0..size {
                    let who = format!("p{r}-{i}");
                    let token = e2e::webrtc::room_token(&key, &format!("load-{r}"), &who, &who);
                    let tag = (r * size + i) as u32;
                    let at = Joining::Sfu {
                        port,
                        token: &token,
                    };
                    all.push((r, join(at, tag, Arc::clone(&measuring)).await));
                }
            }
            for (_, p) in &mut all {
                p.p.connected(Duration::from_secs(30)).await;
            }
            Server::Sfu(d, port)
        }
        Target::Janus => {
            let janus = e2e::janus::start((40_000, 49_999));
            for r in 0..rooms {
                let room = 1000 + r as u64;
                e2e::janus::create_room(janus.port, room, size).await;
                for i in 0..size {
                    let tag = (r * size + i) as u32;
                    let at = Joining::Janus {
                        port: janus.port,
                        room,
                    };
                    all.push((r, join(at, tag, Arc::clone(&measuring)).await));
                }
            }
            // Every publisher is up: each subscribes to the others in its room.
            let feeds: Vec<(usize, u64)> = all
                .iter()
                .filter_map(|(r, p)| match &p.p {
                    Client::Janus(c) => Some((*r, c.feed)),
                    Client::Sfu(_) => None,
                })
                .collect();
            for (r, p) in &mut all {
                let others: Vec<u64> = feeds
                    .iter()
                    .filter(|(r2, f)| r2 == r && u64::from(p.tag) + 1 != *f)
                    .map(|(_, f)| *f)
                    .collect();
                let on_track = count(Arc::clone(&p.seen), Arc::clone(&measuring));
                if let Client::Janus(c) = &mut p.p {
                    c.subscribe(&others, on_track).await;
                }
            }
            Server::Janus(janus)
        }
    };
    // Warm up: everyone publishes until everyone receives everyone (negotiations done).
    let warm = Instant::now() + Duration::from_secs(4);
    let warming: Vec<_> = all
        .iter()
        .map(|(_, p)| publish(p, Arc::clone(&clip), warm))
        .collect();
    futures_util::future::join_all(warming).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (_, p) in &all {
        let mut s = p.seen.lock().unwrap_or_else(|e| e.into_inner());
        s.packets.clear();
        s.latency_us.clear();
        p.sent[0].store(0, Ordering::Relaxed);
        p.sent[1].store(0, Ordering::Relaxed);
    }
    let pid = server.pid();
    let (server_cpu0, me_cpu0) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let out0 = match &server {
        Server::Sfu(_, port) => metric(*port, "sfu_packets_out_total"),
        Server::Janus(_) => 0.0,
    };
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let running: Vec<_> = all
        .iter()
        .map(|(_, p)| publish(p, Arc::clone(&clip), until))
        .collect();
    futures_util::future::join_all(running).await;
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(false, Ordering::Relaxed);
    let server_cpu = (cpu_seconds(pid) - server_cpu0) / elapsed * 100.0;
    let me_cpu = (cpu_seconds(std::process::id()) - me_cpu0) / elapsed * 100.0;
    let (mut expected, mut received, mut lat) = (0u64, 0u64, Vec::new());
    for (r, p) in &all {
        let s = p.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (r2, q) in &all {
            if r2 != r || q.tag == p.tag {
                continue;
            }
            for (k, audio) in [(0, false), (1, true)] {
                let sent = q.sent[k].load(Ordering::Relaxed);
                let got = s.packets.get(&(q.tag, audio)).copied().unwrap_or(0);
                expected += sent;
                received += got.min(sent);
            }
        }
        lat.extend_from_slice(&s.latency_us);
        if std::env::var_os("SFU_LOAD_DEBUG").is_some() {
            eprintln!("    participant {} received {:?}", p.tag, s.packets);
        }
    }
    if std::env::var_os("SFU_LOAD_DEBUG").is_some() {
        for (_, q) in &all {
            eprintln!("    participant {} sent {:?}", q.tag, q.sent);
        }
    }
    let loss = if expected > 0 {
        100.0 * (1.0 - received as f64 / expected as f64)
    } else {
        100.0
    };
    let delivered = received as f64 / elapsed;
    let per_core = if server_cpu > 0.0 {
        delivered / (server_cpu / 100.0)
    } else {
        0.0
    };
    let name = match target {
        Target::Sfu("str0m") => "sfu/str0m    ",
        Target::Sfu(_) => "sfu/webrtc-rs",
        Target::Janus => "janus        ",
    };
    let inside = match &server {
        Server::Sfu(_, port) => {
            let forwarded = (metric(*port, "sfu_packets_out_total") - out0) / elapsed;
            let fwd = |q: &str| {
                metric(*port, &format!("sfu_forward_seconds{{quantile=\"{q}\"}}")) * 1000.0
            };
            format!(
                ", sent on {forwarded:.0}/s, inside the SFU p50 {:.3} / p99 {:.3} ms",
                fwd("0.5"),
                fwd("0.99")
            )
        }
        Server::Janus(_) => String::new(),
    };
    println!(
        "  {name} {rooms:>3} rooms x {size}: {delivered:>8.0} packets delivered/s, loss {loss:.2}%, \
         end to end p50 {:.2} / p99 {:.2} ms{inside}, server CPU {server_cpu:.0}% of one core \
         ({per_core:.0} packets/s per core), RSS {:.0} MB; harness CPU {me_cpu:.0}%",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        rss_mb(pid),
    );
    for (_, p) in &all {
        p.p.leave().await;
    }
    match server {
        Server::Sfu(mut d, _) => {
            d.signal("TERM");
            let _ = d.wait_exit(Duration::from_secs(20));
        }
        Server::Janus(mut j) => {
            j.daemon.signal("TERM");
            let _ = j.daemon.wait_exit(Duration::from_secs(20));
        }
    }
}

/// The machine's limit: one core receiving SRTP on a UDP socket, decrypting, encrypting and
/// sending it on (plain recv_from/send_to; no batching), fed and drained by two other threads.
fn bare_loop(seconds: f64) -> f64 {
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;
    let crypto = rtc::crypto::providers::RingCrypto;
    let (key, salt) = ([7u8; 16], [9u8; 14]);
    let ctx = || {
        Context::new(
            &key,
            &salt,
            ProtectionProfile::Aes128CmHmacSha1_80,
            None,
            None,
            &crypto,
        )
        .expect("srtp context")
    };
    let (mut enc_in, mut dec, mut enc_out) = (ctx(), ctx(), ctx());
    let lp = UdpSocket::bind("127.0.0.1:0").expect("loop socket");
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    let src = UdpSocket::bind("127.0.0.1:0").expect("source");
    let (lp_addr, sink_addr) = (
        lp.local_addr().expect("addr"),
        sink.local_addr().expect("addr"),
    );
    lp.set_read_timeout(Some(Duration::from_millis(200))).ok();
    sink.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let mut seq = 0u16;
        let payload = vec![0x5au8; 1200];
        while !s2.load(Ordering::Relaxed) {
            let header = rtc::rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc: 0x1234,
                ..Default::default()
            };
            let pkt = rtc::rtp::Packet {
                header,
                payload: payload.clone().into(),
            };
            use rtc::shared::marshal::Marshal;
            let Ok(raw) = pkt.marshal() else { break };
            if let Ok(e) = enc_in.encrypt_rtp(&raw) {
                let _ = src.send_to(&e, lp_addr);
            }
            seq = seq.wrapping_add(1);
            // Keep the loop, not the feeder, the bottleneck, without flooding the socket.
            if seq.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
    });
    let s3 = Arc::clone(&stop);
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !s3.load(Ordering::Relaxed) {
            let _ = sink.recv_from(&mut buf);
        }
    });
    let mut buf = [0u8; 2048];
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let Ok((len, _)) = lp.recv_from(&mut buf) else {
            continue;
        };
        let Ok(plain) = dec.decrypt_rtp(&buf[..len]) else {
            continue;
        };
        let Ok(out) = enc_out.encrypt_rtp(&plain) else {
            continue;
        };
        if lp.send_to(&out, sink_addr).is_ok() {
            n += 1;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let _ = drain.join();
    rate
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Soak: `cycles` participants join a room where one participant publishes, connect, receive
/// its media, and leave, `parallel` at a time; the SFU's RSS and open files after a warm-up
/// and at the end.
async fn soak(cycles: usize, parallel: usize, transport: &str, clip: Arc<Vec<u8>>) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let (mut d, ports) = e2e::webrtc::start_sfu(
        &key,
        &[
            "--set",
            &format!("sfu.transport={transport}"),
            "--set",
            "sfu.max_participants_per_room=64",
            "--set",
            "listeners.sfu_media_udp=30000-31999",
        ],
    );
    let port = ports.sfu_signalling;
    let token = |who: String| e2e::webrtc::room_token(&key, "soak", &who, &who);
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let host_token = token("host".into());
    let at = Joining::Sfu {
        port,
        token: &host_token,
    };
    let mut host = join(at, 0, Arc::clone(&measuring)).await;
    host.p.connected(Duration::from_secs(30)).await;
    let host = Arc::new(host);
    let publishing = {
        let (h, clip) = (Arc::clone(&host), Arc::clone(&clip));
        tokio::spawn(async move {
            publish(&h, clip, Instant::now() + Duration::from_secs(24 * 3600)).await;
        })
    };
    let failures = Arc::new(AtomicU64::new(0));
    let one = |i: usize| {
        let (failures, measuring) = (Arc::clone(&failures), Arc::clone(&measuring));
        let t = token(format!("guest-{i}"));
        async move {
            let at = Joining::Sfu { port, token: &t };
            let mut g = join(at, i as u32 + 1, measuring).await;
            let ok = tokio::time::timeout(Duration::from_secs(10), async {
                g.p.connected(Duration::from_secs(10)).await;
                loop {
                    let got = g
                        .seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .packets
                        .get(&(0, false))
                        .copied()
                        .unwrap_or(0);
                    if got > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .is_ok();
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            g.p.leave().await;
        }
    };
    let batch = |from: usize, to: usize| {
        let one = &one;
        async move {
            let mut i = from;
            while i < to {
                let n = parallel.min(to - i);
                futures_util::future::join_all((i..i + n).map(one)).await;
                i += n;
            }
        }
    };
    let warm = (cycles / 10).max(100);
    batch(0, warm).await;
    // Past the daemons' allocator trim (every 10 s, firmware_runtime::memory), so that both
    // readings are of memory the SFU holds, not of free pages waiting for the next trim.
    let settle = Duration::from_secs(12);
    tokio::time::sleep(settle).await;
    let (rss0, fds0) = (rss_mb(d.pid()), open_fds(d.pid()));
    let started = Instant::now();
    batch(warm, warm + cycles).await;
    let took = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let (rss1, fds1) = (rss_mb(d.pid()), open_fds(d.pid()));
    let live = |name: &str| metric(port, name);
    println!(
        "  soak: still alive at the end: {} peers, {} receiving and {} feedback tasks \
         (the host's: 1, 2, 0)",
        live("sfu_peers"),
        live("sfu_receive_tasks"),
        live("sfu_feedback_tasks"),
    );
    println!(
        "  soak: {cycles} join/receive/leave cycles ({parallel} at a time) in {took:.0} s, \
         {} failed; SFU RSS {rss0:.1} -> {rss1:.1} MB ({:+.1}%), open files {fds0} -> {fds1} ({:+.1}%)",
        failures.load(Ordering::Relaxed),
        (rss1 - rss0) / rss0 * 100.0,
        (fds1 as f64 - fds0 as f64) / fds0.max(1) as f64 * 100.0,
    );
    publishing.abort();
    host.p.leave().await;
    d.signal("TERM");
    let _ = d.wait_exit(Duration::from_secs(20));
}

const USAGE: &str = "
usage: sfu_load [ROOMS,ROOMS...] [SIZE] [SECONDS] [str0m|webrtc-rs|janus|both|all]
       sfu_load soak [CYCLES] [PARALLEL] [str0m|webrtc-rs]

Load: rooms of SIZE webrtc-rs participants publishing 720p-rate VP8 and Opus for SECONDS,
against the SFU and/or Janus 1.1's VideoRoom, beside a bare UDP loop on one core
(default: 1,2,4 4 8 str0m). Soak: CYCLES join/receive/leave cycles, PARALLEL at a time,
with the SFU's RSS and open files before and after (default: 10000 8 str0m).
Build first: cargo build --release -p sfu -p benches.
";

fn transport(args: &benches::Args, i: usize) -> &'static str {
    match args.str(i) {
        None | Some("str0m") => "str0m",
        Some("webrtc-rs") => "webrtc-rs",
        Some(other) => args.fail(&format!(
            "TRANSPORT must be str0m or webrtc-rs, not {other:?}"
        )),
    }
}

fn main() {
    let args = benches::Args::parse(USAGE, 4);
    if args.str(0) == Some("soak") {
        let cycles: usize = args.get(1, "CYCLES", 10_000);
        let parallel: usize = args.get(2, "PARALLEL", 8);
        if cycles == 0 || parallel == 0 {
            args.fail("CYCLES and PARALLEL must be at least 1");
        }
        let transport = transport(&args, 3);
        let clip = Arc::new(
            std::fs::read(
                benches::repo_root().join("../shared/testdata/media/webrtc-rs/output_vp8.ivf"),
            )
            .expect("the VP8 clip"),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(soak(cycles, parallel, transport, clip));
        return;
    }
    let rooms: Vec<usize> = args
        .str(0)
        .unwrap_or("1,2,4")
        .split(',')
        .map(|r| match r.parse() {
            Ok(n) if n > 0 => n,
            _ => args.fail(&format!("ROOMS: cannot read {r:?} as a room count")),
        })
        .collect();
    let size: usize = args.get(1, "SIZE", 4);
    let seconds: u64 = args.get(2, "SECONDS", 8);
    if size < 2 || seconds == 0 {
        args.fail("SIZE must be at least 2 and SECONDS at least 1");
    }
    let clip = Arc::new(
        std::fs::read(
            benches::repo_root().join("../shared/testdata/media/webrtc-rs/output_vp8.ivf"),
        )
        .expect("the VP8 clip"),
    );
    println!(
        "sfu load: webrtc-rs participants publishing 720p-rate VP8 (156 packets/s) + Opus (50/s)"
    );
    let bare = bare_loop(3.0);
    println!(
        "  reference, bare UDP loop (recv, SRTP decrypt, encrypt, send) on one core: {bare:.0} packets/s"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let targets: &[Target] = match args.str(3) {
        Some("janus") => &[Target::Janus],
        Some("webrtc-rs") => &[Target::Sfu("webrtc-rs")],
        None | Some("str0m") => &[Target::Sfu("str0m")],
        Some("both") => &[Target::Sfu("str0m"), Target::Janus],
        Some("all") => &[
            Target::Sfu("webrtc-rs"),
            Target::Sfu("str0m"),
            Target::Janus,
        ],
        Some(other) => args.fail(&format!(
            "the last argument must be str0m, webrtc-rs, janus, both or all, not {other:?}"
        )),
    };
    for r in rooms {
        for t in targets {
            rt.block_on(run(*t, r, size, seconds, Arc::clone(&clip)));
        }
    }
}
