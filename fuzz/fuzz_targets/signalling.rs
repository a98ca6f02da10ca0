//! What a participant sends on the SFU's signalling socket, one message per line: the message
//! parser must refuse what is wrong with a named field, and the SDPs it lets through go on into
//! str0m's SDP parser, as the SFU's transport hands them over (neither may panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfu_core::message::{Incoming, fingerprint, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A whole input as one SDP too: most inputs are not JSON.
    let _ = str0m::change::SdpOffer::from_sdp_string(text);
    for line in text.lines().take(16) {
        match parse(line) {
            Ok(Incoming::Offer { sdp }) => {
                let _ = fingerprint(&sdp);
                let _ = str0m::change::SdpOffer::from_sdp_string(&sdp);
            }
            Ok(Incoming::Answer { sdp }) => {
                let _ = str0m::change::SdpAnswer::from_sdp_string(&sdp);
            }
            Ok(_) => {}
            Err(r) => assert!(r.field.is_some() || r.code == "malformed", "{r:?}"),
        }
    }
});
