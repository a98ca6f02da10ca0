//! sfu: the media SFU. Rooms of participants with audio and video over WebRTC, forwarded by
//! the pure core in `sfu-core` (`sfu/core`): `signalling` is the WebSocket (joins, SDP,
//! candidates, notices, the admin API), `transport` the str0m transport around the core (the
//! default), `media` the webrtc-rs one (`sfu.transport`) and `feedback` the subscribers' RTCP it
//! brings to the core, `token` the room tokens it checks.
//!
//! The `sfu` binary runs this alone; `appliance run` runs it beside the others in one process.
//! It trusts only tokens the appliance signs and never depends on `appliance`.

pub mod feedback;
pub mod media;
mod server;
pub mod signalling;
pub mod token;
pub mod transport;

pub use server::{SfuError, run};
