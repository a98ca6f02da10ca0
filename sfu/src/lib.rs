//! sfu: the media SFU. It will host multi-party audio/video rooms over WebRTC and QUIC with a
//! pure forwarding core. Today it serves its signalling listener (8082) with the operations
//! routes, and defines the room tokens it will check (`token`); rooms and media arrive with
//! their issues.
//!
//! The `sfu` binary runs this alone; `appliance run` runs it beside the others in one process.
//! It trusts only tokens the appliance signs and never depends on `appliance`.

mod server;
pub mod signalling;
pub mod token;

pub use server::{SfuError, run};
