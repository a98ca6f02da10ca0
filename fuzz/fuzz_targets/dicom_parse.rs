//! DICOM Part 10 bytes through the guard and on into dicom-rs's parse and the DICOM JSON of
//! what parsed. Whatever the guard passes must parse within the 2 GB the fuzzer allows: each
//! few-KB input it found that made the parse allocate gigabytes became a class the guard
//! refuses (docs/security.md lists them).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if imaging::dicom::guard::check(data).is_err() {
        return;
    }
    if let Ok((obj, _)) = imaging::dicom::guard::parse(data, false) {
        let _ = imaging::dicom::json::to_json(&obj, "/bulk");
    }
    let _ = imaging::dicom::guard::parse(data, true);
});
