//! DICOM Part 10 bytes as every way in receives them: the structural guard, the parse, and
//! the DICOM JSON (WADO-RS metadata) of what parsed. Nothing may panic or hang.
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
