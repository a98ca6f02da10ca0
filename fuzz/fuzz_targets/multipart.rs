//! STOW-RS request bodies: the first line is the Content-Type header, the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(content_type) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    let _ = imaging::dicomweb::multipart::media_type(content_type);
    let _ = imaging::dicomweb::multipart::param(content_type, "boundary");
    let _ = imaging::dicomweb::multipart::parse(content_type, body);
});
