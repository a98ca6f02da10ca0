//! The viewer's JSON operations, one per line, applied by two participants of one session in
//! turn: parsing and the state machine must refuse what is wrong without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut session =
        imaging::viewer::view::Session::new(1, "li", std::time::Duration::from_secs(30));
    session.join(2, "wang");
    for (i, line) in text.lines().take(64).enumerate() {
        if let Ok(op) = imaging::viewer::view::parse(line) {
            let _ = session.operate(1 + (i as u64 % 2), &op);
        }
    }
    let _ = session.request_control(2);
    let _ = session.grant_control(1);
});
