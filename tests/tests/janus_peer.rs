//! The load harness's Janus participant (`e2e::janus`) against Debian's Janus 1.1: two
//! participants publish VP8 and Opus in one VideoRoom room and each receives the other's
//! packets with the payloads it sent. This keeps the SFU comparison (`sfu_load ... janus`)
//! honest: the peer it measures really forwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

/// A received packet: whether it is audio, and its payload.
type Received = (bool, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_exchange_media_through_janus() {
    let janus = e2e::janus::start((47_000, 47_999));
    e2e::janus::create_room(janus.port, 77, 4).await;
    let mut people = Vec::new();
    for feed in [1u64, 2] {
        let (video, vssrc) =
            e2e::webrtc::media_track(RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
        let (audio, assrc) =
            e2e::webrtc::media_track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
        let (video, audio) = (
            Arc::new(TrackLocalStaticRTP::new(video)),
            Arc::new(TrackLocalStaticRTP::new(audio)),
        );
        let p = e2e::janus::join(
            janus.port,
            77,
            feed,
            vec![
                Arc::clone(&video) as Arc<dyn TrackLocal>,
                Arc::clone(&audio) as Arc<dyn TrackLocal>,
            ],
        )
        .await;
        people.push((p, video, vssrc, audio, assrc));
    }
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    {
        let received = Arc::clone(&received);
        let on_track: e2e::webrtc::OnTrack = Arc::new(move |info: e2e::webrtc::TrackInfo| {
            let received = Arc::clone(&received);
            Box::new(move |p: &rtc::rtp::Packet| {
                received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((info.audio, p.payload.to_vec()));
            })
        });
        people[1].0.subscribe(&[1], on_track).await;
    }
    let (vpt, apt) = (
        people[0].0.payload_type(0).await,
        people[0].0.payload_type(1).await,
    );
    let mut sent = Vec::new();
    for n in 0..150u16 {
        let payload: Vec<u8> = [0x10u8, 0, 0, 0]
            .into_iter()
            .chain(n.to_le_bytes())
            .chain(std::iter::repeat_n(n as u8, 300))
            .collect();
        for (track, ssrc, pt) in [
            (&people[0].1, people[0].2, vpt),
            (&people[0].3, people[0].4, apt),
        ] {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: pt,
                    sequence_number: n,
                    timestamp: u32::from(n) * 960,
                    ssrc,
                    marker: true,
                    ..Default::default()
                },
                payload: payload.clone().into(),
            };
            let _ = track.write_rtp(packet).await;
        }
        sent.push(payload);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (audio, video): (Vec<_>, Vec<_>) = got.iter().partition(|(a, _)| *a);
    assert!(
        audio.len() > 100 && video.len() > 100,
        "received {} audio and {} video packets of 150 each\n{}",
        audio.len(),
        video.len(),
        janus.daemon.stdout()
    );
    for (_, p) in &got {
        assert!(sent.contains(p), "a payload that was never sent arrived");
    }
    for (p, ..) in &people {
        p.leave().await;
    }
}
