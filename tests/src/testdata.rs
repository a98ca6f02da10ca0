//! The shared test data (../shared/testdata) as the tests read it: DICOM files by their
//! relative path, and the DICOM manifest's records.

use std::path::PathBuf;

/// A file of ../shared/testdata/dicom.
pub fn dicom(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/dicom")
        .join(rel)
}

/// The records of ../shared/testdata/dicom/MANIFEST_dicom.csv, header left out: path, size,
/// modality, SOP class, transfer syntax, rows, columns, frames, samples, photometric, bits, and
/// what an independent decoder made of it ("OK (...)" or the error). A record may span lines
/// (an error text with a newline); fields may be quoted and hold commas.
pub fn dicom_manifest() -> Vec<Vec<String>> {
    let fields = |line: &str| {
        let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => out.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        out.push(cur);
        out
    };
    let manifest =
        std::fs::read_to_string(dicom("MANIFEST_dicom.csv")).expect("the DICOM manifest");
    let mut records = Vec::new();
    let mut pending = String::new();
    for line in manifest.lines().skip(1) {
        pending.push_str(line);
        if pending.matches('"').count().is_multiple_of(2) {
            records.push(fields(&std::mem::take(&mut pending)));
        } else {
            pending.push(' ');
        }
    }
    records
}
