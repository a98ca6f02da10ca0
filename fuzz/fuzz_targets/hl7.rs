//! HL7 v2 over MLLP as the listener takes it: the bytes cut into pieces (the first byte says
//! where), framed, each frame split into a batch's messages, parsed with its character set,
//! read for its clinical content, and acknowledged. Nothing may panic or hang.
#![no_main]

use hl7v2::ack::{AckCode, Echo, acknowledge};
use hl7v2::mllp::{Frame, Framer};
use libfuzzer_sys::fuzz_target;

fn take(bytes: &[u8]) {
    let messages = hl7v2::message::split_batch(bytes).unwrap_or_else(|| vec![bytes.to_vec()]);
    for m in messages {
        let (echo, error) = match hl7v2::Message::parse(&m) {
            Ok(msg) => {
                let echo = Echo::of(&msg);
                (echo, hl7v2::parse_content(&msg, 480).err())
            }
            Err(e) => (Echo::of_raw(&m), Some(e)),
        };
        let code = if error.is_some() { AckCode::Error } else { AckCode::Accept };
        let _ = acknowledge(&echo, code, error.as_ref(), "", "A1", 0, 480);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    // Whole, as one message.
    take(rest);
    // Framed, arriving in two pieces.
    let mut framer = Framer::new(4096);
    let at = usize::from(cut).min(rest.len());
    for piece in [&rest[..at], &rest[at..]] {
        framer.push(piece);
        while let Some(f) = framer.next_frame() {
            match f {
                Frame::Message(m) => take(&m),
                Frame::Problem { partial, .. } => {
                    let _ = Echo::of_raw(&partial);
                }
            }
        }
    }
});
