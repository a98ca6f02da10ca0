//! Pixel decoding: a DICOM file's frames as stored values (no modality rescale). Uncompressed
//! pixels are read natively (1, 8, 16 and 32 bits, greyscale or RGB, either planar
//! configuration, either byte order); everything else goes through dicom-rs's registered
//! decoders (deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS through CharLS, JPEG 2000
//! and HTJ2K through openjp2). A file that cannot be decoded gives an error naming its transfer
//! syntax.

use std::path::{Path, PathBuf};

use dicom_object::DefaultDicomObject;
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
    /// Stored values, frame by frame, row by row, samples interleaved (i64: unsigned 32-bit
    /// samples fit).
    pub values: Vec<i64>,
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
    let obj = crate::guard::open_file(path).map_err(|reason| DecodeError::Read {
        path: path.to_owned(),
        reason,
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
    if let Some(values) = native(obj, &transfer_syntax).or_else(|| rle(obj, &transfer_syntax)) {
        return Ok(values);
    }
    let decoded = obj.decode_pixel_data().map_err(|e| fail(e.to_string()))?;
    let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let values: Vec<i64> = decoded
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
    let values = if samples == 3 && jpeg_ls_by_plane(obj, &transfer_syntax) {
        interleave(values, rows * cols)
    } else {
        values
    };
    Ok(Decoded {
        rows,
        cols,
        frames,
        samples,
        transfer_syntax,
        values,
    })
}

/// Uncompressed YBR_FULL_422 (8 bits: Y Y Cb Cr for each pair of pixels in a row) as RGB, by
/// the YBR_FULL equations of PS3.3 C.7.6.3.1.2.
fn ybr_full_422(
    obj: &DefaultDicomObject,
    transfer_syntax: &str,
    rows: usize,
    cols: usize,
    frames: usize,
    allocated: u32,
) -> Option<Decoded> {
    use dicom_dictionary_std::tags;
    if allocated != 8 || !cols.is_multiple_of(2) {
        return None;
    }
    let bytes = obj.element(tags::PIXEL_DATA).ok()?.to_bytes().ok()?;
    let pairs = rows.checked_mul(cols / 2)?.checked_mul(frames)?;
    let data = bytes.get(..pairs.checked_mul(4)?)?;
    let rgb = |y: u8, cb: u8, cr: u8| -> [i64; 3] {
        let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
        let c = |v: f64| v.round().clamp(0.0, 255.0) as i64;
        [
            c(y + 1.402 * cr),
            c(y - 0.344_136 * cb - 0.714_136 * cr),
            c(y + 1.772 * cb),
        ]
    };
    let mut values = Vec::with_capacity(pairs * 6);
    for q in data.chunks_exact(4) {
        values.extend(rgb(q[0], q[2], q[3]));
        values.extend(rgb(q[1], q[2], q[3]));
    }
    Some(Decoded {
        rows,
        cols,
        frames,
        samples: 3,
        transfer_syntax: transfer_syntax.to_owned(),
        values,
    })
}

/// The Image Pixel module attributes the native paths read.
struct PixelAttrs {
    rows: usize,
    cols: usize,
    frames: usize,
    samples: usize,
    allocated: u32,
    stored: u32,
    high: u32,
    signed: bool,
    planar: bool,
    photometric: String,
}

impl PixelAttrs {
    fn read(obj: &DefaultDicomObject) -> Option<Self> {
        use dicom_dictionary_std::tags;
        let int = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u32>().ok());
        Some(Self {
            rows: int(tags::ROWS)? as usize,
            cols: int(tags::COLUMNS)? as usize,
            frames: obj
                .element(tags::NUMBER_OF_FRAMES)
                .ok()
                .and_then(|e| e.to_str().ok()?.trim().parse::<usize>().ok())
                .unwrap_or(1)
                .max(1),
            samples: int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize,
            allocated: int(tags::BITS_ALLOCATED)?,
            stored: int(tags::BITS_STORED)?,
            high: int(tags::HIGH_BIT)?,
            signed: int(tags::PIXEL_REPRESENTATION)? == 1,
            planar: int(tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1,
            photometric: obj
                .element(tags::PHOTOMETRIC_INTERPRETATION)
                .ok()
                .and_then(|e| e.to_str().ok().map(|s| s.trim().to_owned()))
                .unwrap_or_default(),
        })
    }

    /// A raw sample as its stored value: masked to Bits Stored, sign-extended when Pixel
    /// Representation is 1.
    fn value(&self, raw: u32) -> i64 {
        let stored = self.stored.clamp(1, 32);
        let raw = if stored == 32 {
            raw
        } else {
            raw & ((1u32 << stored) - 1)
        };
        if self.signed {
            let shift = 32 - stored;
            i64::from(((raw << shift) as i32) >> shift)
        } else {
            i64::from(raw)
        }
    }

    /// Greyscale or RGB: the layouts the native paths produce.
    fn grey_or_rgb(&self) -> bool {
        match self.samples {
            1 => self.photometric.starts_with("MONOCHROME"),
            3 => self.photometric == "RGB",
            _ => false,
        }
    }
}

/// RLE Lossless (PS3.5 Annex G) for every sample width, 32 bits included (dicom-rs 0.10 stops
/// at 16): per frame, one fragment of up to 15 PackBits segments, one per byte of each sample,
/// most significant byte first, colour planes in order. `None` when the layout is not that
/// (then dicom-rs tries, and names the transfer syntax if it cannot).
fn rle(obj: &DefaultDicomObject, transfer_syntax: &str) -> Option<Decoded> {
    use dicom_dictionary_std::tags;
    if transfer_syntax != "1.2.840.10008.1.2.5" {
        return None;
    }
    let a = PixelAttrs::read(obj)?;
    let (rows, cols, frames, samples) = (a.rows, a.cols, a.frames, a.samples);
    let (allocated, stored) = (a.allocated, a.stored);
    if !a.grey_or_rgb() || !matches!(allocated, 8 | 16 | 32) || stored == 0 || stored > allocated {
        return None;
    }
    let fragments = obj.element(tags::PIXEL_DATA).ok()?.fragments()?;
    if fragments.len() != frames {
        return None;
    }
    let width = allocated as usize / 8;
    let plane = rows.checked_mul(cols)?;
    let mut values = Vec::with_capacity(plane * samples * frames);
    for fragment in fragments {
        let header = fragment.get(..64)?;
        let word = |i: usize| {
            u32::from_le_bytes([
                header[4 * i],
                header[4 * i + 1],
                header[4 * i + 2],
                header[4 * i + 3],
            ]) as usize
        };
        let segments = word(0);
        if segments != samples * width || segments > 15 {
            return None;
        }
        let mut planes: Vec<Vec<u8>> = Vec::with_capacity(segments);
        for k in 0..segments {
            let start = word(k + 1);
            let end = if k + 1 < segments {
                word(k + 2)
            } else {
                fragment.len()
            };
            planes.push(packbits(fragment.get(start..end)?, plane)?);
        }
        let frame_start = values.len();
        values.resize(frame_start + plane * samples, 0);
        for p in 0..plane {
            for c in 0..samples {
                let mut raw = 0u32;
                for b in 0..width {
                    raw = (raw << 8) | u32::from(planes[c * width + b][p]);
                }
                values[frame_start + p * samples + c] = a.value(raw);
            }
        }
    }
    Some(Decoded {
        rows,
        cols,
        frames,
        samples,
        transfer_syntax: transfer_syntax.to_owned(),
        values,
    })
}

/// One PackBits segment, decoded to exactly `len` bytes (`None` if it holds fewer).
fn packbits(mut data: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let (&n, rest) = data.split_first()?;
        let n = n as i8;
        data = rest;
        if n >= 0 {
            let count = n as usize + 1;
            out.extend_from_slice(data.get(..count)?);
            data = &data[count..];
        } else if n != -128 {
            let (&byte, rest) = data.split_first()?;
            data = rest;
            out.extend(std::iter::repeat_n(byte, (1 - isize::from(n)) as usize));
        }
    }
    out.truncate(len);
    Some(out)
}

/// Whether colour JPEG-LS was coded one component per scan (interleave mode 0): CharLS then
/// hands back the planes one after the other, whatever the Planar Configuration says.
fn jpeg_ls_by_plane(obj: &DefaultDicomObject, transfer_syntax: &str) -> bool {
    use dicom_dictionary_std::tags;
    if !matches!(
        transfer_syntax,
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81"
    ) {
        return false;
    }
    let Some(fragment) = obj
        .element(tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.fragments())
        .and_then(|f| f.first())
    else {
        return false;
    };
    // The first Start Of Scan marker: FFDA, length (2 bytes), Ns (components in this scan).
    fragment
        .windows(5)
        .find(|w| w[0] == 0xFF && w[1] == 0xDA)
        .is_some_and(|w| w[4] == 1)
}

/// Planes (R..., G..., B...) of each frame as interleaved samples (R G B ...).
fn interleave(values: Vec<i64>, plane: usize) -> Vec<i64> {
    let per_frame = plane * 3;
    let mut out = vec![0i64; values.len()];
    for (frame, dst) in values.chunks(per_frame).zip(out.chunks_mut(per_frame)) {
        for p in 0..plane.min(frame.len() / 3) {
            for c in 0..3 {
                dst[p * 3 + c] = frame[c * plane + p];
            }
        }
    }
    out
}

/// Uncompressed pixels without the general decoder: greyscale or RGB (either planar
/// configuration), 8, 16 or 32 bits allocated, the high bit at the top of the stored bits. The
/// values are masked to Bits Stored and sign-extended when Pixel Representation is 1, exactly as
/// the general path does (a test holds them equal); about ten times faster, which is most of
/// the time a volume takes to build, and it covers layouts dicom-rs 0.10 does not (32-bit
/// samples, planar configuration 1). `None` when the image is anything else.
fn native(obj: &DefaultDicomObject, transfer_syntax: &str) -> Option<Decoded> {
    use dicom_dictionary_std::tags;
    if !matches!(
        transfer_syntax,
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2"
    ) {
        return None;
    }
    let a = PixelAttrs::read(obj)?;
    let (rows, cols, frames, samples) = (a.rows, a.cols, a.frames, a.samples);
    let (allocated, stored, high, planar) = (a.allocated, a.stored, a.high, a.planar);
    if a.photometric == "YBR_FULL_422" {
        return ybr_full_422(obj, transfer_syntax, rows, cols, frames, allocated);
    }
    if !a.grey_or_rgb()
        || !matches!(allocated, 1 | 8 | 16 | 32)
        || stored == 0
        || stored > allocated
        || high + 1 != stored
        || obj.element(tags::MODALITY_LUT_SEQUENCE).is_ok()
    {
        return None;
    }
    let bytes = obj.element(tags::PIXEL_DATA).ok()?.to_bytes().ok()?;
    let per_frame = rows.checked_mul(cols)?.checked_mul(samples)?;
    let n = per_frame.checked_mul(frames)?;
    if allocated == 1 {
        // Bit-packed (segmentations): least significant bit first, frames back to back.
        if samples != 1 || bytes.len() < n.div_ceil(8) {
            return None;
        }
        let values = (0..n)
            .map(|i| i64::from((bytes[i / 8] >> (i % 8)) & 1))
            .collect();
        return Some(Decoded {
            rows,
            cols,
            frames,
            samples,
            transfer_syntax: transfer_syntax.to_owned(),
            values,
        });
    }
    let width = allocated as usize / 8;
    if bytes.len() < n.checked_mul(width)? {
        return None;
    }
    // dicom-rs swaps a big endian OW value in 16-bit words; a 32-bit sample is then two words
    // in big endian order.
    let words_swapped = transfer_syntax == "1.2.840.10008.1.2.2"
        && obj
            .element(tags::PIXEL_DATA)
            .is_ok_and(|e| e.header().vr == dicom_core::VR::OW);
    let mut values = Vec::with_capacity(n);
    for chunk in bytes[..n * width].chunks_exact(width) {
        let raw = match width {
            1 => u32::from(chunk[0]),
            2 => u32::from(u16::from_ne_bytes([chunk[0], chunk[1]])),
            _ if words_swapped => {
                (u32::from(u16::from_ne_bytes([chunk[0], chunk[1]])) << 16)
                    | u32::from(u16::from_ne_bytes([chunk[2], chunk[3]]))
            }
            _ => u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
        };
        values.push(a.value(raw));
    }
    if planar && samples == 3 {
        values = interleave(values, rows * cols);
    }
    Some(Decoded {
        rows,
        cols,
        frames,
        samples,
        transfer_syntax: transfer_syntax.to_owned(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The native path and dicom-pixeldata agree on every uncompressed test file both decode.
    #[test]
    fn the_native_fast_path_equals_the_general_decoder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
        let mut checked = 0;
        let mut dirs = vec![
            root.join("dicom"),
            root.join("series/ct-ge-head-varspacing-28"),
        ];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                    continue;
                }
                // Files the length check refuses would stall the parser.
                let ok = std::fs::read(&p).is_ok_and(|b| crate::guard::check(&b).is_ok());
                if !ok {
                    continue;
                }
                let Ok(obj) = dicom_object::open_file(&p) else {
                    continue;
                };
                let ts = obj
                    .meta()
                    .transfer_syntax()
                    .trim_end_matches('\0')
                    .to_owned();
                let Some(fast) = native(&obj, &ts) else {
                    continue;
                };
                let Ok(general) = obj.decode_pixel_data() else {
                    continue;
                };
                let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
                // Layouts only the native path reads are checked against twins elsewhere.
                let Ok(values) = general.to_vec_with_options::<i64>(&options) else {
                    continue;
                };
                assert_eq!(fast.values, values, "{}", p.display());
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} files checked");
    }
}
