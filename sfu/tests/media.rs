//! Media through the real `sfu` binary with webrtc-rs clients: three participants join one room
//! over signalling, each offers a VP8 camera track and an Opus track and publishes the shared
//! clips (`output_vp8.ivf`, `output_first5s.ogg`); each receives the other two's tracks, named by
//! their stream (`p<id>`), with payloads intact: every VP8 frame reassembled from the forwarded
//! packets is byte-equal to a frame of the clip, every Opus payload to a page of the clip. The
//! server's media ports come from `listeners.sfu_media_udp`. Garbage SDP gets an error naming
//! the field, garbage datagrams at the media ports are dropped, and the room goes on.
//! Subscribers' feedback (PLI, NACK, REMB) reaches the core. A participant's UDP path cut and
//! restored resumes on the same connection; one that starts over on a new connection keeps its
//! place.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::Value;
use sfu::token::{RoomClaims, public_key_base64, sign};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

fn clip(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/media/webrtc-rs")
        .join(name)
}

/// The clip's VP8 frames and Opus pages.
fn clips() -> (Vec<bytes::Bytes>, Vec<(bytes::Bytes, u64)>) {
    let f = std::fs::File::open(clip("output_vp8.ivf")).expect("ivf clip");
    let (mut ivf, _) =
        rtc::media::io::ivf_reader::IVFReader::new(std::io::BufReader::new(f)).expect("ivf");
    let mut frames = Vec::new();
    while let Ok((frame, _)) = ivf.parse_next_frame() {
        frames.push(frame.freeze());
    }
    // Ogg pages carry many Opus packets (50 here): split them by their lacing values, and leave
    // out the two header packets (OpusHead, OpusTags). Each packet is 20 ms (960 samples).
    let ogg = std::fs::read(clip("output_first5s.ogg")).expect("ogg clip");
    let mut packets = Vec::new();
    let (mut o, mut current) = (0, Vec::new());
    while o + 27 <= ogg.len() && &ogg[o..o + 4] == b"OggS" {
        let segments = usize::from(ogg[o + 26]);
        let table = &ogg[o + 27..o + 27 + segments];
        let mut at = o + 27 + segments;
        for &lace in table {
            let lace = usize::from(lace);
            current.extend_from_slice(&ogg[at..at + lace]);
            at += lace;
            if lace < 255 {
                packets.push(bytes::Bytes::from(std::mem::take(&mut current)));
            }
        }
        o = at;
    }
    let pages: Vec<(bytes::Bytes, u64)> = packets.into_iter().skip(2).map(|p| (p, 960)).collect();
    assert!(
        pages.len() >= 200,
        "{} Opus packets in the clip",
        pages.len()
    );
    (frames, pages)
}

/// The VP8 payload descriptor's length (RFC 7741 section 4.2), and whether the packet starts a
/// frame (S bit on partition 0).
fn vp8_descriptor(p: &[u8]) -> Option<(usize, bool)> {
    let first = *p.first()?;
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut i = 1;
    if first & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            i += if p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    (i <= p.len()).then_some((i, start))
}

/// What one client received, by the publisher's stream id.
#[derive(Default)]
struct Received {
    /// Complete VP8 frames, with when they arrived.
    frames: HashMap<String, Vec<(Instant, Vec<u8>)>>,
    /// Opus payloads.
    audio: HashMap<String, Vec<Vec<u8>>>,
    /// Video tracks received: stream, track, SSRC, last sequence number.
    video_tracks: Vec<(String, Arc<dyn TrackRemote>, u32, u16)>,
}

struct Client {
    pc: Arc<dyn PeerConnection>,
    ws: Arc<tokio::sync::Mutex<e2e::webrtc::Sink>>,
    id: u64,
    received: Arc<Mutex<Received>>,
    video: (Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>, u32),
    audio: (Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>, u32),
    connected: tokio::sync::mpsc::UnboundedReceiver<()>,
    /// `error`, `participant` and `answer` messages received.
    errors: Arc<Mutex<Vec<Value>>>,
}

fn local_track(
    kind: RtpCodecKind,
    mime: &str,
    clock: u32,
    channels: u16,
) -> (Arc<TrackLocalStaticSample>, u32) {
    let (track, ssrc) = e2e::webrtc::media_track(kind, mime, clock, channels);
    let track = TrackLocalStaticSample::new(Instant::now(), track).expect("sample track");
    (Arc::new(track), ssrc)
}

/// What a client does with each received track: Opus payloads are kept; VP8 frames are
/// reassembled from their packets and kept with their arrival time.
fn keep(received: Arc<Mutex<Received>>) -> e2e::webrtc::OnTrack {
    Arc::new(move |info: e2e::webrtc::TrackInfo| {
        let received = Arc::clone(&received);
        let mut frame: Option<Vec<u8>> = None;
        Box::new(move |p: &rtc::rtp::Packet| {
            let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
            let stream = info.stream.clone();
            if info.audio {
                r.audio.entry(stream).or_default().push(p.payload.to_vec());
                return;
            }
            match r.video_tracks.iter_mut().find(|t| t.0 == stream) {
                Some(t) => t.3 = p.header.sequence_number,
                None => r.video_tracks.push((
                    stream.clone(),
                    Arc::clone(&info.track),
                    p.header.ssrc,
                    p.header.sequence_number,
                )),
            }
            let Some((skip, start)) = vp8_descriptor(&p.payload) else {
                frame = None;
                return;
            };
            if start {
                frame = Some(Vec::new());
            }
            if let Some(f) = frame.as_mut() {
                f.extend_from_slice(&p.payload[skip..]);
            }
            if p.header.marker
                && let Some(f) = frame.take()
            {
                r.frames
                    .entry(stream)
                    .or_default()
                    .push((Instant::now(), f));
            }
        })
    })
}

/// Joins, offers a camera and a microphone, and answers the server's offers as they come.
async fn join(port: u16, token: &str, proxy: Option<Arc<e2e::webrtc::Relay>>) -> Client {
    let received = Arc::new(Mutex::new(Received::default()));
    let (video, video_ssrc) = local_track(RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
    let (audio, audio_ssrc) = local_track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
    let rewrite: Option<e2e::webrtc::Rewrite> = proxy.as_ref().map(|p| {
        let p = Arc::clone(p);
        Arc::new(move |sdp: &str| p.rewrite(sdp)) as e2e::webrtc::Rewrite
    });
    let p = e2e::webrtc::join(
        port,
        token,
        e2e::webrtc::Options {
            tracks: vec![
                Arc::clone(&video) as Arc<dyn TrackLocal>,
                Arc::clone(&audio) as Arc<dyn TrackLocal>,
            ],
            on_track: keep(Arc::clone(&received)),
            strip_candidates: proxy.is_some(),
            skip_offers: 0,
            twcc: false,
            rewrite,
        },
    )
    .await;
    let mut senders = p.senders.into_iter();
    let (Some(video_sender), Some(audio_sender)) = (senders.next(), senders.next()) else {
        panic!("two senders");
    };
    Client {
        pc: p.pc,
        ws: p.ws,
        id: p.id,
        received,
        video: (video, video_sender, video_ssrc),
        audio: (audio, audio_sender, audio_ssrc),
        connected: p.connected,
        errors: p.log,
    }
}

/// Publishes the clips in real time for `seconds`.
async fn publish(
    c: &Client,
    frames: Arc<Vec<bytes::Bytes>>,
    pages: Arc<Vec<(bytes::Bytes, u64)>>,
    seconds: u64,
) {
    use rtc::media::Sample;
    let (vpt, apt) = (
        e2e::webrtc::payload_type(&c.video.1).await,
        e2e::webrtc::payload_type(&c.audio.1).await,
    );
    let (video, vssrc) = (Arc::clone(&c.video.0), c.video.2);
    let (audio, assrc) = (Arc::clone(&c.audio.0), c.audio.2);
    let until = Instant::now() + Duration::from_secs(seconds);
    let v = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for f in frames.iter().cycle() {
            tick.tick().await;
            if Instant::now() > until {
                break;
            }
            let _ = video
                .sample_writer(vssrc, vpt)
                .write_sample(&Sample {
                    data: f.clone(),
                    duration: Duration::from_millis(33),
                    ..Sample::new(Instant::now())
                })
                .await;
        }
    });
    let a = tokio::spawn(async move {
        for (page, samples) in pages.iter().cycle() {
            let d = Duration::from_millis(samples * 1000 / 48_000);
            tokio::time::sleep(d).await;
            if Instant::now() > until {
                break;
            }
            let _ = audio
                .sample_writer(assrc, apt)
                .write_sample(&Sample {
                    data: page.clone(),
                    duration: d,
                    ..Sample::new(Instant::now())
                })
                .await;
        }
    });
    let _ = v.await;
    let _ = a.await;
}

/// The WebRTC stacks the SFU can carry media on (`sfu.transport`); each test runs on both.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Transport {
    WebrtcRs,
    Str0m,
}

impl Transport {
    fn setting(self) -> &'static str {
        match self {
            Transport::WebrtcRs => "sfu.transport=webrtc-rs",
            Transport::Str0m => "sfu.transport=str0m",
        }
    }
}

fn start_sfu(key: &ed25519_dalek::SigningKey, t: Transport) -> (e2e::Daemon, e2e::Ports) {
    e2e::webrtc::start_sfu(key, &["--set", t.setting()])
}

/// Each test on both transports.
macro_rules! on_both {
    ($($name:ident, $webrtc_rs:ident, $str0m:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $webrtc_rs() {
            $name(Transport::WebrtcRs).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $str0m() {
            $name(Transport::Str0m).await;
        }
    )*};
}

on_both! {
    a_cut_udp_path_resumes, a_cut_udp_path_resumes_webrtc_rs, a_cut_udp_path_resumes_str0m;
    a_participant_starting_over_resumes_its_place,
        starting_over_webrtc_rs, starting_over_str0m;
    three_participants_receive_each_others_media_intact,
        three_participants_webrtc_rs, three_participants_str0m;
    the_loud_participant_becomes_the_active_speaker,
        active_speaker_webrtc_rs, active_speaker_str0m;
}

fn room_token(key: &ed25519_dalek::SigningKey, room: &str, who: &str) -> String {
    e2e::webrtc::room_token(key, room, who, who)
}

/// One participant's UDP path is cut for four seconds and restored: the media in both
/// directions comes back on the same connection, within the grace period, and nobody left.
async fn a_cut_udp_path_resumes(transport: Transport) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
    let (mut d, ports) = start_sfu(&key, transport);
    let (frames, pages) = clips();
    let (frames, pages) = (Arc::new(frames), Arc::new(pages));
    let proxy = e2e::webrtc::Relay::start().await;
    let mut a = join(
        ports.sfu_signalling,
        &room_token(&key, "ward-3", "doctor.a"),
        None,
    )
    .await;
    let mut c = join(
        ports.sfu_signalling,
        &room_token(&key, "ward-3", "nurse.c"),
        Some(Arc::clone(&proxy)),
    )
    .await;
    for x in [&mut a, &mut c] {
        tokio::time::timeout(Duration::from_secs(15), x.connected.recv())
            .await
            .expect("connected within 15 s");
    }
    let started = Instant::now();
    let cutter = {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            proxy.cut.store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(4)).await;
            proxy.cut.store(false, std::sync::atomic::Ordering::Relaxed);
        })
    };
    futures_util::future::join(
        publish(&a, Arc::clone(&frames), Arc::clone(&pages), 12),
        publish(&c, Arc::clone(&frames), Arc::clone(&pages), 12),
    )
    .await;
    cutter.await.expect("cutter");
    let at = |d: f64| started + Duration::from_secs_f64(d);
    for (who, from, x) in [("doctor.a", c.id, &a), ("nurse.c", a.id, &c)] {
        let r = x.received.lock().unwrap_or_else(|e| e.into_inner());
        let times: Vec<Instant> = r
            .frames
            .get(&format!("p{from}"))
            .map(|v| v.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default();
        let within = |a: f64, b: f64| times.iter().filter(|t| **t > at(a) && **t < at(b)).count();
        assert!(
            within(1.0, 3.0) > 20,
            "{who}: frames before the cut: {}",
            within(1.0, 3.0)
        );
        assert!(
            within(4.0, 6.5) < 3,
            "{who}: frames while cut: {}",
            within(4.0, 6.5)
        );
        assert!(
            within(8.5, 12.0) > 20,
            "{who}: frames after the cut: {}",
            within(8.5, 12.0)
        );
    }
    let rooms = e2e::get(ports.sfu_signalling, "/metrics")
        .expect("metrics")
        .body;
    assert!(
        rooms.contains("sfu_participants{room=\"ward-3\"} 2"),
        "both still in the room: {rooms}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// A participant whose connection drops starts over (a new signalling socket and a new peer
/// connection, same identity) within the grace period: the others see "reconnecting" and
/// "resumed", never a leave, and its media reaches them again under the same id.
async fn a_participant_starting_over_resumes_its_place(transport: Transport) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let (mut d, ports) = start_sfu(&key, transport);
    let (frames, pages) = clips();
    let (frames, pages) = (Arc::new(frames), Arc::new(pages));
    let mut a = join(
        ports.sfu_signalling,
        &room_token(&key, "icu-2", "doctor.a"),
        None,
    )
    .await;
    let mut b = join(
        ports.sfu_signalling,
        &room_token(&key, "icu-2", "expert.b"),
        None,
    )
    .await;
    for x in [&mut a, &mut b] {
        tokio::time::timeout(Duration::from_secs(15), x.connected.recv())
            .await
            .expect("connected");
    }
    futures_util::future::join(
        publish(&a, Arc::clone(&frames), Arc::clone(&pages), 3),
        publish(&b, Arc::clone(&frames), Arc::clone(&pages), 3),
    )
    .await;
    let b_id = b.id;
    // b's socket and connection go away at once.
    let _ = b.ws.lock().await.close().await;
    let _ = b.pc.close().await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut b = join(
        ports.sfu_signalling,
        &room_token(&key, "icu-2", "expert.b"),
        None,
    )
    .await;
    assert_eq!(b.id, b_id, "the same place in the room");
    tokio::time::timeout(Duration::from_secs(15), b.connected.recv())
        .await
        .expect("the new connection connects");
    let resumed_at = Instant::now();
    futures_util::future::join(
        publish(&a, Arc::clone(&frames), Arc::clone(&pages), 4),
        publish(&b, Arc::clone(&frames), Arc::clone(&pages), 4),
    )
    .await;
    let events: Vec<String> = a
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| m["type"] == "participant" && m["id"] == b_id)
        .filter_map(|m| m["event"].as_str().map(str::to_owned))
        .collect();
    assert!(events.contains(&"reconnecting".to_owned()), "{events:?}");
    assert!(events.contains(&"resumed".to_owned()), "{events:?}");
    assert!(!events.contains(&"left".to_owned()), "{events:?}");
    let after = |x: &Client, from: u64| {
        let r = x.received.lock().unwrap_or_else(|e| e.into_inner());
        r.frames
            .get(&format!("p{from}"))
            .map_or(0, |v| v.iter().filter(|(t, _)| *t > resumed_at).count())
    };
    assert!(
        after(&a, b_id) > 40,
        "a gets b's new connection: {}",
        after(&a, b_id)
    );
    assert!(after(&b, a.id) > 40, "b gets a again: {}", after(&b, a.id));
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

async fn three_participants_receive_each_others_media_intact(transport: Transport) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let ports = e2e::Ports::free();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sfu"));
    cmd.args(ports.args()).args([
        "--set",
        &format!("sfu.token_key={}", public_key_base64(&key)),
        "--set",
        transport.setting(),
    ]);
    let mut d = e2e::Daemon::spawn(cmd);
    d.wait_ok(ports.sfu_signalling, "/readyz", Duration::from_secs(30));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600;
    let token = |who: &str| {
        sign(
            &RoomClaims {
                room: "mdt-1".into(),
                sub: who.into(),
                name: who.into(),
                publish: true,
                subscribe: true,
                exp,
            },
            &key,
        )
    };
    let (frames, pages) = clips();
    let frame_set: HashSet<&[u8]> = frames.iter().map(|f| f.as_ref()).collect();
    let page_set: HashSet<&[u8]> = pages.iter().map(|(p, _)| p.as_ref()).collect();
    let (frames, pages) = (Arc::new(frames.clone()), Arc::new(pages.clone()));

    let mut clients = Vec::new();
    for who in ["doctor.a", "expert.b", "expert.c"] {
        clients.push(join(ports.sfu_signalling, &token(who), None).await);
    }
    for c in &mut clients {
        tokio::time::timeout(Duration::from_secs(15), c.connected.recv())
            .await
            .expect("connected to the SFU within 15 s");
    }
    // Garbage SDP: an error naming the field; the room goes on.
    clients[0]
        .ws
        .lock()
        .await
        .send(Message::text(r#"{"type":"offer","sdp":"v=0 garbage"}"#))
        .await
        .expect("send");
    clients[0]
        .ws
        .lock()
        .await
        .send(Message::text(r#"{"type":"answer"}"#))
        .await
        .expect("send");

    // Garbage at every port of the media range (random bytes, a truncated STUN header, RTP and
    // RTCP headers with nothing valid behind them): dropped, and the room goes on.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").expect("junk socket");
    let (first, last) = ports.media_udp();
    for port in first..=last {
        for datagram in [
            &b"\x00\x01\x00\x50\x21\x12"[..],
            &[
                0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
            ][..],
            &[0x81, 0xc9, 0x00, 0x07, 0xff, 0xff][..],
            &[0x16, 0xfe, 0xfd, 0x00][..],
            &[0xa5; 1400][..],
        ] {
            let _ = junk.send_to(datagram, ("127.0.0.1", port));
        }
    }
    let publishing: Vec<_> = clients
        .iter()
        .map(|c| publish(c, Arc::clone(&frames), Arc::clone(&pages), 6))
        .collect();
    futures_util::future::join_all(publishing).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ids: Vec<u64> = clients.iter().map(|c| c.id).collect();
    for c in &clients {
        let r = c.received.lock().unwrap_or_else(|e| e.into_inner());
        for other in ids.iter().filter(|i| **i != c.id) {
            let stream = format!("p{other}");
            let got = r.frames.get(&stream).map_or(&[][..], |v| &v[..]);
            assert!(
                got.len() >= 60,
                "participant {} got {} video frames from {stream} (streams: {:?})",
                c.id,
                got.len(),
                r.frames.keys().collect::<Vec<_>>()
            );
            let intact = got
                .iter()
                .filter(|(_, f)| frame_set.contains(&f[..]))
                .count();
            assert_eq!(
                intact,
                got.len(),
                "every forwarded frame is a frame of the clip"
            );
            let audio = r.audio.get(&stream).map_or(&[][..], |v| &v[..]);
            assert!(
                audio.len() >= 100,
                "{} got {} Opus packets from {stream}",
                c.id,
                audio.len()
            );
            assert!(
                audio.iter().all(|p| page_set.contains(&p[..])),
                "Opus payloads intact"
            );
        }
        assert!(
            !r.frames.contains_key(&format!("p{}", c.id)),
            "nobody gets their own media back"
        );
    }
    // Feedback from a subscriber reaches the core: a keyframe request goes on to the publisher,
    // a NACK is answered from the buffer, a bitrate estimate is taken.
    let (track, ssrc, seq) = {
        let r = clients[0]
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let t = r.video_tracks.first().expect("a video track");
        (Arc::clone(&t.1), t.2, t.3)
    };
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
    let feedback: Vec<Box<dyn rtc::rtcp::Packet>> = vec![
        Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        }),
        Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: ssrc,
            nacks: vec![NackPair {
                packet_id: seq.wrapping_sub(3),
                lost_packets: 0b11,
            }],
        }),
        Box::new(ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate: 300_000.0,
            ssrcs: vec![ssrc],
        }),
    ];
    track.write_rtcp(feedback).await.expect("feedback sent");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = e2e::get(ports.sfu_signalling, "/metrics")
        .expect("metrics")
        .body;
    let count = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        count("sfu_feedback_total{kind=\"keyframe\"}"),
        1.0,
        "{metrics}"
    );
    match transport {
        Transport::WebrtcRs => {
            assert_eq!(count("sfu_feedback_total{kind=\"nack\"}"), 1.0, "{metrics}");
            assert_eq!(
                count("sfu_feedback_total{kind=\"estimate\"}"),
                1.0,
                "{metrics}"
            );
            assert_eq!(
                count("sfu_retransmits_total"),
                3.0,
                "three packets resent: {metrics}"
            );
        }
        Transport::Str0m => {
            // str0m answers the NACK from its own send buffer and counts it in its stats
            // (reported each second); the estimates are its TWCC ones as well as the REMB.
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                let m = e2e::get(ports.sfu_signalling, "/metrics")
                    .expect("metrics")
                    .body;
                if m.contains("sfu_feedback_total{kind=\"nack\"} ") {
                    break;
                }
                assert!(Instant::now() < deadline, "the NACK was never counted: {m}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(
                count("sfu_feedback_total{kind=\"estimate\"}") >= 1.0,
                "{metrics}"
            );
        }
    }
    assert!(
        count("sfu_pli_total") >= 1.0,
        "the keyframe request went on: {metrics}"
    );

    // Per-room figures at /metrics.
    let metrics = e2e::get(ports.sfu_signalling, "/metrics")
        .expect("metrics")
        .body;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}{{room=\"mdt-1\"}} "))?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{name} for the room in {metrics}"))
    };
    assert_eq!(value("sfu_participants"), 3.0);
    assert!(value("sfu_room_bitrate_bps") > 100_000.0, "{metrics}");
    let rtt = value("sfu_room_rtt_seconds");
    assert!(rtt > 0.0 && rtt < 0.1, "loopback RTT {rtt}");
    assert!(value("sfu_room_loss_ratio") < 0.01, "{metrics}");
    assert!(value("sfu_room_bytes_out_total") > value("sfu_room_bytes_in_total"));
    let errors = clients[0]
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let fields: Vec<&str> = errors
        .iter()
        .filter(|e| e["type"] == "error")
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["sdp", "sdp"], "{errors:?}");
    // The server's media candidates are on the configured range.
    let (first, last) = ports.media_udp();
    for c in &clients {
        let log = c.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ports_used: Vec<u16> = log
            .iter()
            .filter(|m| m["type"] == "answer")
            .flat_map(|m| {
                m["sdp"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .filter(|l| l.starts_with("a=candidate"))
                    .filter_map(|l| l.split(' ').nth(5)?.parse().ok())
                    .collect::<Vec<u16>>()
            })
            .collect();
        assert!(!ports_used.is_empty(), "candidates in the answer");
        assert!(
            ports_used.iter().all(|p| (first..=last).contains(p)),
            "{ports_used:?} outside {first}-{last}"
        );
    }
    // Everyone leaves: every connection and every task the room had goes away.
    for c in &clients {
        let _ =
            c.ws.lock()
                .await
                .send(Message::text(r#"{"type":"leave"}"#))
                .await;
        let _ = c.pc.close().await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = e2e::get(ports.sfu_signalling, "/metrics")
            .expect("metrics")
            .body;
        let live = |name: &str| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let left = [
            live("sfu_peers "),
            live("sfu_receive_tasks "),
            live("sfu_feedback_tasks "),
        ];
        if left == [0.0; 3] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still alive after everyone left (peers, receiving, feedback): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// Two participants speak in turn, their audio packets carrying RFC 6464 levels as a
/// browser's do: the SFU reads the levels and names the loud one as the active speaker to both,
/// and names the other when the turn passes.
async fn the_loud_participant_becomes_the_active_speaker(transport: Transport) {
    use rtc::media::Sample;
    use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
    let key = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let (_d, ports) = start_sfu(&key, transport);
    let (_, pages) = clips();
    let mut a = join(
        ports.sfu_signalling,
        &room_token(&key, "mdt-speak", "doctor.a"),
        None,
    )
    .await;
    let mut b = join(
        ports.sfu_signalling,
        &room_token(&key, "mdt-speak", "expert.b"),
        None,
    )
    .await;
    for c in [&mut a, &mut b] {
        tokio::time::timeout(Duration::from_secs(15), c.connected.recv())
            .await
            .expect("connected to the SFU within 15 s");
    }
    let (apt, bpt) = (
        e2e::webrtc::payload_type(&a.audio.1).await,
        e2e::webrtc::payload_type(&b.audio.1).await,
    );
    // `loud` speaks at -20 dBov while `quiet` sends silence (127), for `ms` milliseconds.
    let turn = |loud: &Client, lpt: u8, quiet: &Client, qpt: u8, ms: u64| {
        let (lt, ls) = (Arc::clone(&loud.audio.0), loud.audio.2);
        let (qt, qs) = (Arc::clone(&quiet.audio.0), quiet.audio.2);
        let pages = pages.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for (page, _) in pages.iter().cycle().take((ms / 20) as usize) {
                tick.tick().await;
                for (track, ssrc, pt, level) in [(&lt, ls, lpt, 20u8), (&qt, qs, qpt, 127)] {
                    let _ = track
                        .sample_writer(ssrc, pt)
                        .with_audio_level(AudioLevelExtension {
                            level,
                            voice: level < 127,
                        })
                        .write_sample(&Sample {
                            data: page.clone(),
                            duration: Duration::from_millis(20),
                            ..Sample::new(Instant::now())
                        })
                        .await;
                }
            }
        }
    };
    let speaking = |c: &Client| -> Vec<u64> {
        c.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|m| m["type"] == "participant" && m["event"] == "speaking")
            .filter_map(|m| m["id"].as_u64())
            .collect()
    };
    turn(&a, apt, &b, bpt, 2000).await;
    assert_eq!(
        speaking(&b).last(),
        Some(&a.id),
        "b was told a speaks: {:?}",
        speaking(&b)
    );
    assert_eq!(
        speaking(&a).last(),
        Some(&a.id),
        "a was told it speaks: {:?}",
        speaking(&a)
    );
    turn(&b, bpt, &a, apt, 2000).await;
    assert_eq!(
        speaking(&a).last(),
        Some(&b.id),
        "a was told b speaks: {:?}",
        speaking(&a)
    );
}

/// A participant that leaves the server's offer unanswered (as a client that failed to apply
/// it) is offered the same tracks again after the offer timed out, and then receives them
/// (str0m transport).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_offer_is_made_again() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let (mut d, ports) = start_sfu(&key, Transport::Str0m);
    let (frames, pages) = clips();
    let received = Arc::new(Mutex::new(Received::default()));
    let (audio, _) = local_track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
    let x = e2e::webrtc::join(
        ports.sfu_signalling,
        &room_token(&key, "ward-9", "registrar.x"),
        e2e::webrtc::Options {
            tracks: vec![audio as Arc<dyn TrackLocal>],
            on_track: keep(Arc::clone(&received)),
            strip_candidates: false,
            skip_offers: 1,
            twcc: false,
            rewrite: None,
        },
    )
    .await;
    let y = join(
        ports.sfu_signalling,
        &room_token(&key, "ward-9", "doctor.y"),
        None,
    )
    .await;
    publish(&y, Arc::new(frames), Arc::new(pages), 18).await;
    let offers = x
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| m["type"] == "offer")
        .count();
    assert!(offers >= 2, "the offer was made again: {offers} offers");
    let r = received.lock().unwrap_or_else(|e| e.into_inner());
    let got = r.frames.get(&format!("p{}", y.id)).map_or(0, Vec::len);
    assert!(
        got >= 60,
        "frames received after the repeated offer was answered: {got}"
    );
    let metrics = e2e::get(ports.sfu_signalling, "/metrics")
        .expect("metrics")
        .body;
    assert!(metrics.contains("sfu_offers_repeated_total 1"), "{metrics}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
