//! The forwarding core on a virtual clock: joins and limits, layer choice and switching at
//! keyframes, the keyframe-request throttle, rewriting continuity across switches, NACKs from
//! the buffer, the active speaker, and rejoin within the grace period; with property tests
//! over random packet streams and estimate changes.

use proptest::prelude::*;

use super::*;

const A: ParticipantId = ParticipantId(1);
const B: ParticipantId = ParticipantId(2);
const C: ParticipantId = ParticipantId(3);
const MS: Micros = 1_000;

fn simulcast() -> Vec<Layer> {
    vec![
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
    ]
}

fn packet(track: TrackId, layer: u8, seq: u16, ts: u32, keyframe: bool) -> Packet {
    Packet {
        track,
        layer,
        seq,
        ts,
        marker: true,
        keyframe,
        audio_level: None,
        handle: u64::from(layer) << 32 | u64::from(seq),
    }
}

fn forwarded_to(out: &[Output], who: ParticipantId) -> Vec<(u16, u32, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Forward {
                to,
                seq,
                ts,
                handle,
                ..
            } if *to == who => Some((*seq, *ts, *handle)),
            _ => None,
        })
        .collect()
}

fn room_with_video() -> (Room, TrackId) {
    let mut room = Room::new(6, 20_000 * MS);
    room.join(A, true, true, 0).unwrap();
    room.join(B, true, true, 0).unwrap();
    let (track, _) = room.publish(A, Kind::Video, simulcast()).unwrap();
    (room, track)
}

#[test]
fn joins_limits_and_permissions() {
    let mut room = Room::new(2, 20_000 * MS);
    assert_eq!(
        room.join(A, true, true, 0).unwrap(),
        vec![Output::Notice(Notice::Joined(A))]
    );
    assert_eq!(room.join(A, true, true, 0), Err(RoomError::AlreadyIn(A)));
    room.join(B, false, true, 0).unwrap();
    assert_eq!(room.join(C, true, true, 0), Err(RoomError::Full(2)));
    assert_eq!(
        room.publish(B, Kind::Video, simulcast()).unwrap_err(),
        RoomError::MayNotPublish(B)
    );
    let mut bad = simulcast();
    bad.swap(0, 2);
    assert_eq!(room.publish(A, Kind::Video, bad), Err(RoomError::BadLayers));
    // A publisher never receives its own packets.
    let (audio, _) = room.publish(A, Kind::Audio, Vec::new()).unwrap();
    let out = room.packet(packet(audio, 0, 10, 960, false), 0);
    assert!(forwarded_to(&out, A).is_empty());
    assert_eq!(forwarded_to(&out, B).len(), 1);
}

#[test]
fn a_poor_link_gets_a_lower_layer_switched_at_a_keyframe() {
    let (mut room, track) = room_with_video();
    // The publisher sends all three layers.
    for (layer, seq) in [(0, 899), (1, 499), (2, 99)] {
        room.packet(packet(track, layer, seq, 9000, false), 0);
    }
    // Unknown bandwidth: the top layer is the target; its keyframe starts the stream.
    let out = room.packet(packet(track, 2, 100, 9000, false), 500 * MS);
    assert!(out.contains(&Output::RequestKeyframe {
        from: A,
        track,
        layer: 2
    }));
    assert!(
        forwarded_to(&out, B).is_empty(),
        "nothing before a keyframe"
    );
    let out = room.packet(packet(track, 2, 101, 12000, true), 510 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1);
    assert_eq!(room.current_layer(B, track), Some(2));
    room.packet(packet(track, 0, 900, 12000, false), 990 * MS);
    room.packet(packet(track, 1, 500, 12000, false), 990 * MS);
    // The link degrades to 600 kbps: layer 1 is the target; a keyframe is asked for.
    let out = room.estimate(B, 600_000, 1_000 * MS);
    assert!(out.contains(&Output::RequestKeyframe {
        from: A,
        track,
        layer: 1
    }));
    // Until layer 1's keyframe, layer 2 keeps flowing; then layer 1 only.
    let out = room.packet(packet(track, 1, 501, 12000, false), 1_010 * MS);
    assert!(forwarded_to(&out, B).is_empty());
    let out = room.packet(packet(track, 2, 102, 15000, false), 1_020 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1);
    let out = room.packet(packet(track, 1, 502, 15000, true), 1_030 * MS);
    let sent = forwarded_to(&out, B);
    assert_eq!(room.current_layer(B, track), Some(1));
    // Continuous numbering across the switch.
    assert_eq!(
        sent[0].0,
        102u16.wrapping_add(0).wrapping_sub(100).wrapping_add(101)
    );
    let out = room.packet(packet(track, 2, 103, 18000, false), 1_040 * MS);
    assert!(forwarded_to(&out, B).is_empty(), "the old layer stops");
    // A small tile caps the layer too.
    room.packet(packet(track, 0, 901, 18000, false), 1_990 * MS);
    room.estimate(B, 10_000_000, 2_000 * MS);
    room.request_height(B, track, 200, 2_000 * MS);
    let out = room.packet(packet(track, 0, 902, 21000, true), 2_010 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1);
    assert_eq!(room.current_layer(B, track), Some(0));
}

#[test]
fn only_layers_the_publisher_sends_are_chosen() {
    let (mut room, track) = room_with_video();
    // A browser sends two of its three layers (the top one paused): a subscriber with plenty
    // of bandwidth gets the best of those, not a layer that never comes.
    room.packet(packet(track, 0, 1, 0, false), 0);
    let out = room.packet(packet(track, 1, 1, 0, false), 0);
    assert!(forwarded_to(&out, B).is_empty());
    let out = room.packet(packet(track, 1, 2, 3000, true), 600 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1);
    assert_eq!(room.current_layer(B, track), Some(1));
    // The top layer starts: it becomes the target, switched to at its keyframe.
    let out = room.packet(packet(track, 2, 1, 3000, false), 1_200 * MS);
    assert!(out.contains(&Output::RequestKeyframe {
        from: A,
        track,
        layer: 2
    }));
    room.packet(packet(track, 1, 3, 6000, false), 1_300 * MS);
    let out = room.packet(packet(track, 2, 2, 6000, true), 1_400 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1);
    assert_eq!(room.current_layer(B, track), Some(2));
    // It stops again: once it is over a second quiet, the subscriber is moved back down.
    room.packet(packet(track, 1, 4, 9000, false), 2_300 * MS);
    assert!(
        room.tick(2_350 * MS).is_empty(),
        "not yet quiet for a second"
    );
    room.packet(packet(track, 1, 5, 9000, false), 2_500 * MS);
    let out = room.tick(2_500 * MS);
    assert!(out.contains(&Output::RequestKeyframe {
        from: A,
        track,
        layer: 1
    }));
    let out = room.packet(packet(track, 1, 6, 12000, true), 2_600 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1);
    assert_eq!(room.current_layer(B, track), Some(1));
}

#[test]
fn keyframe_requests_are_throttled_per_track() {
    let (mut room, track) = room_with_video();
    let mut plis = Vec::new();
    for i in 0..100u16 {
        let now = u64::from(i) * 20 * MS;
        for o in room.packet(packet(track, 2, i, u32::from(i) * 3000, false), now) {
            if matches!(o, Output::RequestKeyframe { .. }) {
                plis.push(now);
            }
        }
        for o in room.keyframe_request(B, track, now) {
            if matches!(o, Output::RequestKeyframe { .. }) {
                plis.push(now);
            }
        }
    }
    assert!(plis.len() >= 3, "{plis:?}");
    assert!(
        plis.windows(2).all(|w| w[1] - w[0] >= PLI_INTERVAL),
        "{plis:?}"
    );
}

#[test]
fn nacks_are_answered_from_the_buffer() {
    let (mut room, track) = room_with_video();
    let mut sent = Vec::new();
    for i in 0..600u16 {
        let out = room.packet(
            packet(track, 2, i, u32::from(i) * 3000, i == 0),
            u64::from(i) * MS,
        );
        sent.extend(forwarded_to(&out, B));
    }
    let (seq, ts, handle) = sent[550];
    assert_eq!(
        room.nack(B, track, &[seq]),
        vec![Output::Retransmit {
            to: B,
            track,
            seq,
            ts,
            handle
        }]
    );
    // Older than the buffer: gone.
    assert!(room.nack(B, track, &[sent[10].0]).is_empty());
    assert!(room.nack(C, track, &[seq]).is_empty());
}

#[test]
fn rejoin_within_grace_keeps_the_place_and_late_means_gone() {
    let (mut room, track) = room_with_video();
    assert_eq!(
        room.dropped(A, 1_000 * MS).unwrap(),
        vec![Output::Notice(Notice::Reconnecting(A))]
    );
    assert!(room.is_reconnecting(A));
    assert!(room.tick(15_000 * MS).is_empty(), "within the grace");
    // Packets from a dropped publisher are not forwarded (its connection is gone).
    assert!(
        room.packet(packet(track, 2, 1, 0, true), 15_000 * MS)
            .is_empty()
    );
    assert_eq!(
        room.join(A, true, true, 16_000 * MS).unwrap(),
        vec![Output::Notice(Notice::Resumed(A))]
    );
    assert!(!room.is_reconnecting(A));
    let out = room.packet(packet(track, 2, 2, 3000, true), 16_100 * MS);
    assert_eq!(forwarded_to(&out, B).len(), 1, "its track still flows");
    room.dropped(B, 17_000 * MS).unwrap();
    let out = room.tick(37_000 * MS);
    assert!(out.contains(&Output::Notice(Notice::Left(B))));
    assert_eq!(room.participants(), vec![A]);
}

#[test]
fn the_loudest_voice_becomes_the_speaker_after_a_hold() {
    let mut room = Room::new(6, 20_000 * MS);
    room.join(A, true, true, 0).unwrap();
    room.join(B, true, true, 0).unwrap();
    let (ta, _) = room.publish(A, Kind::Audio, Vec::new()).unwrap();
    let (tb, _) = room.publish(B, Kind::Audio, Vec::new()).unwrap();
    let audio = |track, seq: u16, level| Packet {
        audio_level: Some(level),
        ..packet(track, 0, seq, u32::from(seq) * 960, false)
    };
    let mut speakers = Vec::new();
    for i in 0..100u16 {
        let now = u64::from(i) * 20 * MS;
        // A speaks for the first second, then B louder.
        let (la, lb) = if i < 50 { (30, 100) } else { (100, 20) };
        for o in room
            .packet(audio(ta, i, la), now)
            .into_iter()
            .chain(room.packet(audio(tb, i, lb), now))
        {
            if let Output::Notice(Notice::ActiveSpeaker(p)) = o {
                speakers.push((now, p));
            }
        }
    }
    assert_eq!(speakers.iter().map(|(_, p)| *p).collect::<Vec<_>>(), [A, B]);
    assert!(speakers[1].0 >= 1_000 * MS + speaker::HOLD, "{speakers:?}");
}

proptest! {
    /// Any stream of packets on three layers, with keyframes and estimate changes at random:
    /// each subscriber's sequence numbers are consecutive, its timestamps never go back, a
    /// layer starts only at a keyframe, and keyframe requests respect the throttle.
    #[test]
    fn rewriting_stays_continuous_and_requests_stay_throttled(
        steps in prop::collection::vec(
            (0u8..3, any::<bool>(), prop::option::of(50_000u64..3_000_000), 1u64..40),
            1..400,
        )
    ) {
        let (mut room, track) = room_with_video();
        let mut seqs = [0u16; 3];
        let mut now = 0;
        let mut last: Option<(u16, u32)> = None;
        let mut last_pli: Option<Micros> = None;
        for (layer, keyframe, estimate, dt) in steps {
            now += dt * MS;
            let mut outs = Vec::new();
            if let Some(bps) = estimate {
                outs.extend(room.estimate(B, bps, now));
            }
            let l = usize::from(layer);
            seqs[l] = seqs[l].wrapping_add(1);
            let ts = (now / MS) as u32 * 90;
            // Each layer numbers its own packets (simulcast layers are separate streams).
            let p = packet(track, layer, seqs[l].wrapping_add(1000 * u16::from(layer)), ts, keyframe);
            let before = room.current_layer(B, track);
            outs.extend(room.packet(p, now));
            let after = room.current_layer(B, track);
            if after != before {
                prop_assert!(keyframe && after == Some(layer), "switched without a keyframe");
            }
            for o in &outs {
                if let Output::RequestKeyframe { .. } = o {
                    if let Some(at) = last_pli {
                        prop_assert!(now >= at + PLI_INTERVAL);
                    }
                    last_pli = Some(now);
                }
            }
            for (seq, ts, _) in forwarded_to(&outs, B) {
                if let Some((ls, lt)) = last {
                    prop_assert_eq!(seq, ls.wrapping_add(1));
                    prop_assert!(ts.wrapping_sub(lt) as i32 >= 0);
                }
                last = Some((seq, ts));
            }
        }
    }
}
