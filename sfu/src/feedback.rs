//! Subscribers' RTCP feedback, brought to the application: webrtc-rs ends inbound RTCP inside
//! its interceptor chain unless an interceptor marks a packet for the application. This one,
//! last in the chain, marks what the forwarding core acts on (keyframe requests, NACKs and
//! receiver bitrate estimates) and leaves the rest (reports) to the interceptors before it.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

/// What the core hears from a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Feedback {
    /// It needs a keyframe (PLI or FIR).
    Keyframe,
    /// These packets were lost (sequence numbers as sent to it).
    Nack(Vec<u16>),
    /// Its receiver estimates it can take this many bits per second.
    Estimate(u64),
}

/// Whether the core acts on this RTCP packet (a cheap type test: nothing is decoded).
fn wanted(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
}

/// Reads what the core acts on from a compound RTCP packet.
pub fn read(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<Feedback> {
    let mut out = Vec::new();
    for p in packets {
        let any = p.as_any();
        if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
            out.push(Feedback::Keyframe);
        } else if let Some(n) = any.downcast_ref::<TransportLayerNack>() {
            let seqs: Vec<u16> = n.nacks.iter().flat_map(|pair| pair.packet_list()).collect();
            if !seqs.is_empty() {
                out.push(Feedback::Nack(seqs));
            }
        } else if let Some(r) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>()
            && r.bitrate.is_finite()
            && r.bitrate > 0.0
        {
            out.push(Feedback::Estimate(r.bitrate as u64));
        }
    }
    out
}

/// The interceptor: marks feedback for the application, passes everything else on unmarked.
#[derive(Default)]
pub struct ToApplication {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for ToApplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToApplication")
            .field("queued", &(self.reads.len() + self.writes.len()))
            .finish()
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for ToApplication {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| wanted(p.as_ref()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for ToApplication {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// One connection's interceptors: RTCP reports (so both ends measure loss and round trips),
/// then the feedback for the core, last.
pub fn registry() -> Registry {
    rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports(
        Registry::new(),
    )
    .with(Slot::from(14_000), ToApplication::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    #[test]
    fn reads_keyframe_requests_nacks_and_estimates_and_nothing_else() {
        let packets: Vec<Box<dyn rtc::rtcp::Packet>> = vec![
            Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 2,
            }),
            Box::new(TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: 2,
                nacks: vec![NackPair {
                    packet_id: 100,
                    lost_packets: 0b101,
                }],
            }),
            Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 1,
                bitrate: 250_000.0,
                ssrcs: vec![2],
            }),
            Box::new(rtc::rtcp::receiver_report::ReceiverReport::default()),
        ];
        assert_eq!(
            read(&packets),
            vec![
                Feedback::Keyframe,
                Feedback::Nack(vec![100, 101, 103]),
                Feedback::Estimate(250_000),
            ]
        );
    }
}
