//! Pixel decoding: a DICOM file's frames as stored values (no modality rescale), through
//! dicom-rs's registered decoders (native, deflate, RLE, JPEG baseline/extended/lossless,
//! JPEG 2000). A file that cannot be decoded gives an error naming its transfer syntax; JPEG-LS
//! needs the `charls` decoder, not built here (it needs cmake), so those files say so.

use std::path::{Path, PathBuf};

use dicom_object::{DefaultDicomObject, open_file};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};

/// Decoded frames of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Rows per frame.
    pub rows: usize,
    /// Columns per frame.
    pub cols: usize,
    /// Frames.
    pub frames: usize,
    /// Samples per pixel (1 grey, 3 colour).
    pub samples: usize,
    /// Transfer syntax UID of the file.
    pub transfer_syntax: String,
    /// Stored values, frame by frame, row by row, samples interleaved.
    pub values: Vec<i32>,
}

/// Why a file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not readable as DICOM.
    #[error("{}: not readable as DICOM: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The pixel data cannot be decoded.
    #[error("{}: cannot decode pixel data in transfer syntax {transfer_syntax}: {reason}", path.display())]
    Pixels {
        /// The file.
        path: PathBuf,
        /// The transfer syntax UID.
        transfer_syntax: String,
        /// Why.
        reason: String,
    },
}

/// Decodes every frame of `path`.
pub fn decode_file(path: &Path) -> Result<Decoded, DecodeError> {
    let obj = open_file(path).map_err(|e| DecodeError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    decode_object(&obj, path)
}

/// Decodes every frame of an opened file (`path` names it in errors).
pub(crate) fn decode_object(obj: &DefaultDicomObject, path: &Path) -> Result<Decoded, DecodeError> {
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_owned();
    let fail = |reason: String| DecodeError::Pixels {
        path: path.to_owned(),
        transfer_syntax: transfer_syntax.clone(),
        reason,
    };
    let decoded = obj.decode_pixel_data().map_err(|e| fail(e.to_string()))?;
    let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let values: Vec<i32> = decoded
        .to_vec_with_options(&options)
        .map_err(|e| fail(e.to_string()))?;
    let (rows, cols) = (decoded.rows() as usize, decoded.columns() as usize);
    let (frames, samples) = (
        decoded.number_of_frames() as usize,
        usize::from(decoded.samples_per_pixel()),
    );
    if values.len() != rows * cols * frames * samples {
        return Err(fail(format!(
            "{} values for {frames} frames of {rows}x{cols}x{samples}",
            values.len()
        )));
    }
    Ok(Decoded {
        rows,
        cols,
        frames,
        samples,
        transfer_syntax,
        values,
    })
}
