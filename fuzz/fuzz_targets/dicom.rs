//! DICOM Part 10 bytes as every way in receives them, through our structural guard (the walk
//! that must refuse what would hurt the parser): it must answer for any input, never panic or
//! hang. `dicom_parse` goes on into dicom-rs's parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imaging::dicom::guard::with_group_length(data);
    let _ = imaging::dicom::guard::check(data);
    let _ = imaging::dicom::guard::scan(data);
});
