//! HL7 version 2 with no IO: the MLLP framer ([`mllp`]), character sets named by MSH-18
//! ([`charset`]), the parser with error locations ([`message`]), the clinical content of ADT,
//! order, result and document messages ([`content`]), and acknowledgements ([`ack`]). The
//! appliance's listener feeds bytes in and writes the acknowledgements this crate makes.

pub mod ack;
pub mod charset;
pub mod content;
pub mod message;
pub mod mllp;
pub mod time;
pub mod types;

pub use ack::{AckCode, acknowledge};
pub use content::{Content, Parsed, parse_content};
pub use message::{ErrorCode, Hl7Error, Location, Message};
