//! The pure DICOM side: bytes of Part 10 files in, data sets, JSON and pixels out, with no IO
//! beyond reading the file asked for and no network, store or HTTP. `guard` checks a file's
//! structure before dicom-rs parses it, `decode` turns pixel data into stored values (with
//! `jpeg12` for 12-bit JPEG), `json` writes DICOM JSON, and `series` builds a
//! `render::Volume` from the slices of a series, `stack` what is not a volume (2D films,
//! cine loops) as frames to show one by one; `synthetic` writes demo studies as Part 10
//! files. It could become a crate of its own, as dicom-rs keeps pixel data apart from the
//! network; nothing here imports the rest of imaging.

pub mod decode;
pub mod guard;
pub mod jpeg12;
pub mod json;
pub mod series;
pub mod stack;
pub mod synthetic;
