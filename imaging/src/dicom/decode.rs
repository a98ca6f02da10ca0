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
#[derive(Debug, Clone, PartialEq)]
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
    /// samples fit). For Float and Double Float Pixel Data, the real samples divided by
    /// `real.step` and rounded.
    pub values: Vec<i64>,
    /// The samples as they are, for Float (7FE0,0008) and Double Float (7FE0,0009) Pixel Data.
    pub real: Option<RealSamples>,
}

/// Floating point samples (parametric maps): exact, and the step `values` are counted in.
#[derive(Debug, Clone, PartialEq)]
pub struct RealSamples {
    /// The samples, frame by frame, row by row.
    pub values: Vec<f64>,
    /// What one unit of [`Decoded::values`] is worth: a power of two that puts the largest
    /// magnitude between 2^13 and 2^14, so the values fit the 16-bit volumes render works on
    /// (display precision; the exact samples are in `values` here).
    pub step: f64,
}

impl Decoded {
    /// Integer samples (no real-valued view).
    fn integers(
        (rows, cols, frames, samples): (usize, usize, usize, usize),
        transfer_syntax: &str,
        values: Vec<i64>,
    ) -> Self {
        Self {
            rows,
            cols,
            frames,
            samples,
            transfer_syntax: transfer_syntax.to_owned(),
            values,
            real: None,
        }
    }
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
    let obj = crate::dicom::guard::open_file(path).map_err(|reason| DecodeError::Read {
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
    if let Some(decoded) = jpeg(obj, &transfer_syntax) {
        return decoded.map_err(fail);
    }
    if let Some(decoded) = jpeg2000(obj, &transfer_syntax) {
        return decoded.map_err(fail);
    }
    let decoded = match obj.decode_pixel_data() {
        Ok(d) => d,
        Err(e) => {
            return match jpeg_ls_padded(obj, &transfer_syntax) {
                Some(decoded) => decoded.map_err(fail),
                None => Err(fail(e.to_string())),
            };
        }
    };
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
    // dicom-rs's JPEG-LS and JPEG 2000 paths leave signed samples narrower than their
    // allocation unextended (a 15-bit -3232 came back as 29536; a 13-bit codestream that says
    // unsigned under Pixel Representation 1 as 7189 for -1003, where pydicom corrects it):
    // grey samples are masked to Bits Stored and sign-extended here, as the native paths do.
    let values = match PixelAttrs::read(obj) {
        Some(a) if samples == 1 && a.allocated <= 16 && a.stored < a.allocated => {
            values.into_iter().map(|v| a.value(v as u32)).collect()
        }
        // dicom-rs hands uncompressed and RLE YBR_FULL over as it is stored (its JPEG
        // decoders give RGB): converted here, so colour always comes out as RGB.
        Some(a)
            if samples == 3
                && a.allocated == 8
                && a.photometric == "YBR_FULL"
                && matches!(
                    transfer_syntax.as_str(),
                    "1.2.840.10008.1.2"
                        | "1.2.840.10008.1.2.1"
                        | "1.2.840.10008.1.2.2"
                        | "1.2.840.10008.1.2.1.99"
                        | "1.2.840.10008.1.2.5"
                ) =>
        {
            values
                .chunks_exact(3)
                .flat_map(|p| ybr_to_rgb(p[0] as f64, p[1] as f64, p[2] as f64))
                .collect()
        }
        _ => values,
    };
    Ok(Decoded::integers(
        (rows, cols, frames, samples),
        &transfer_syntax,
        values,
    ))
}

/// One 8-bit YBR_FULL sample as RGB (PS3.3 C.7.6.3.1.2).
fn ybr_to_rgb(y: f64, cb: f64, cr: f64) -> [i64; 3] {
    let (cb, cr) = (cb - 128.0, cr - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as i64;
    [
        c(y + 1.402 * cr),
        c(y - 0.344_136 * cb - 0.714_136 * cr),
        c(y + 1.772 * cb),
    ]
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
    let rgb = |y: u8, cb: u8, cr: u8| ybr_to_rgb(f64::from(y), f64::from(cb), f64::from(cr));
    let mut values = Vec::with_capacity(pairs * 6);
    for q in data.chunks_exact(4) {
        values.extend(rgb(q[0], q[2], q[3]));
        values.extend(rgb(q[1], q[2], q[3]));
    }
    Some(Decoded::integers(
        (rows, cols, frames, 3),
        transfer_syntax,
        values,
    ))
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
    Some(Decoded::integers(
        (rows, cols, frames, samples),
        transfer_syntax,
        values,
    ))
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
    if obj.element(tags::PIXEL_DATA).is_err() {
        return float(obj, transfer_syntax);
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
        return Some(Decoded::integers(
            (rows, cols, frames, samples),
            transfer_syntax,
            values,
        ));
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
    Some(Decoded::integers(
        (rows, cols, frames, samples),
        transfer_syntax,
        values,
    ))
}

/// Each frame's compressed stream: one fragment per frame, all fragments for a single frame,
/// or else fragments grouped by where a new stream starts (`start`, e.g. a JPEG SOI).
fn frame_streams(obj: &DefaultDicomObject, frames: usize, start: &[u8]) -> Option<Vec<Vec<u8>>> {
    use dicom_dictionary_std::tags;
    let fragments = obj.element(tags::PIXEL_DATA).ok()?.fragments()?;
    if fragments.len() == frames {
        return Some(fragments.iter().map(|f| f.to_vec()).collect());
    }
    if frames == 1 {
        return Some(vec![fragments.concat()]);
    }
    let mut streams: Vec<Vec<u8>> = Vec::with_capacity(frames);
    for f in fragments {
        let new_stream = f.starts_with(start) && streams.len() < frames;
        match streams.last_mut() {
            Some(last) if !new_stream => last.extend_from_slice(f),
            _ => streams.push(f.to_vec()),
        }
    }
    (streams.len() == frames).then_some(streams)
}

/// JPEG Baseline and Extended where dicom-rs falls short: 12-bit greyscale (jpeg-decoder
/// refuses it; [`crate::dicom::jpeg12`] reads it), and colour whose Photometric Interpretation is RGB,
/// whose components are then R, G and B as coded (PS3.5 8.2.1) unless a complete Adobe APP14
/// marker says they were transformed; jpeg-decoder would otherwise assume YCbCr. `None` for
/// everything else, which dicom-rs decodes.
fn jpeg(obj: &DefaultDicomObject, transfer_syntax: &str) -> Option<Result<Decoded, String>> {
    if !matches!(
        transfer_syntax,
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51"
    ) {
        return None;
    }
    let a = PixelAttrs::read(obj)?;
    let streams = frame_streams(obj, a.frames, &[0xFF, 0xD8])?;
    let first = streams.first()?;
    let plane = a.rows.checked_mul(a.cols)?;
    let mut values = Vec::with_capacity(plane.checked_mul(a.samples)?.checked_mul(a.frames)?);
    if a.samples == 1 && sof_precision(first) == Some(12) {
        for (i, stream) in streams.iter().enumerate() {
            let grey = match crate::dicom::jpeg12::decode(stream) {
                Ok(g) => g,
                Err(e) => return Some(Err(format!("frame {}: {e}", i + 1))),
            };
            if (grey.height, grey.width) != (a.rows, a.cols) {
                return Some(Err(format!(
                    "frame {} is {}x{}, not the {}x{} the data set says",
                    i + 1,
                    grey.width,
                    grey.height,
                    a.cols,
                    a.rows
                )));
            }
            values.extend(grey.samples.iter().map(|&v| a.value(u32::from(v))));
        }
    } else if a.samples == 3 && a.photometric == "RGB" && !adobe_transformed(first) {
        for (i, stream) in streams.iter().enumerate() {
            let mut decoder = jpeg_decoder::Decoder::new(&stream[..]);
            decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB);
            let pixels = match decoder.decode() {
                Ok(p) => p,
                Err(e) => return Some(Err(format!("frame {}: {e}", i + 1))),
            };
            if pixels.len() != plane * 3 {
                return Some(Err(format!(
                    "frame {}: {} samples for {}x{} RGB",
                    i + 1,
                    pixels.len(),
                    a.cols,
                    a.rows
                )));
            }
            values.extend(pixels.iter().map(|&v| i64::from(v)));
        }
    } else {
        return None;
    }
    Some(Ok(Decoded::integers(
        (a.rows, a.cols, a.frames, a.samples),
        transfer_syntax,
        values,
    )))
}

/// JPEG-LS whose entropy-coded data is followed by zero bytes before EOI (NEMA WG04's
/// MR1_JLSL has one): CharLS 2.3 and later refuse it, older CharLS and libjpeg read it. Tried
/// only after the general decoder failed, with the zeros removed. 8- or 16-bit samples.
fn jpeg_ls_padded(
    obj: &DefaultDicomObject,
    transfer_syntax: &str,
) -> Option<Result<Decoded, String>> {
    if !matches!(
        transfer_syntax,
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81"
    ) {
        return None;
    }
    let a = PixelAttrs::read(obj)?;
    if !matches!(a.allocated, 8 | 16) || !a.grey_or_rgb() {
        return None;
    }
    let by_plane = a.samples == 3 && jpeg_ls_by_plane(obj, transfer_syntax);
    let streams = frame_streams(obj, a.frames, &[0xFF, 0xD8])?;
    let per_frame = a.rows.checked_mul(a.cols)?.checked_mul(a.samples)?;
    let mut values = Vec::with_capacity(per_frame.checked_mul(a.frames)?);
    for stream in &streams {
        // The stream ends FF D9, perhaps with DICOM's padding to an even length after it.
        let mut end = stream.len();
        while end > 0 && stream[end - 1] == 0 {
            end -= 1;
        }
        if end < 4 || stream[end - 2..end] != [0xFF, 0xD9] || stream[end - 3] != 0 {
            return None;
        }
        let mut zeros = end - 2;
        while zeros > 2 && stream[zeros - 1] == 0 {
            zeros -= 1;
        }
        let mut trimmed = stream[..zeros].to_vec();
        trimmed.extend_from_slice(&[0xFF, 0xD9]);
        let bytes = match charls::CharLS::default().decode(&trimmed) {
            Ok(b) => b,
            Err(e) => return Some(Err(e.to_string())),
        };
        let width = usize::from(a.allocated == 16) + 1;
        if bytes.len() != per_frame * width {
            return Some(Err(format!(
                "{} bytes for a {}x{}x{} frame",
                bytes.len(),
                a.cols,
                a.rows,
                a.samples
            )));
        }
        values.extend(bytes.chunks_exact(width).map(|c| {
            let raw = if width == 2 {
                u32::from(u16::from_le_bytes([c[0], c[1]]))
            } else {
                u32::from(c[0])
            };
            a.value(raw)
        }));
    }
    if by_plane {
        values = interleave(values, a.rows * a.cols);
    }
    Some(Ok(Decoded::integers(
        (a.rows, a.cols, a.frames, a.samples),
        transfer_syntax,
        values,
    )))
}

/// The JPEG marker segments before the first scan: (marker, segment body).
fn jpeg_segments(stream: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 2;
    std::iter::from_fn(move || {
        let marker = match stream.get(pos..pos + 2)? {
            [0xFF, m] if *m != 0xDA && *m != 0xD9 => *m,
            _ => return None,
        };
        let len = usize::from(u16::from_be_bytes([
            *stream.get(pos + 2)?,
            *stream.get(pos + 3)?,
        ]));
        let body = stream.get(pos + 4..pos + 2 + len.max(2))?;
        pos += 2 + len;
        Some((marker, body))
    })
}

/// The sample precision in a JPEG stream's frame header.
fn sof_precision(stream: &[u8]) -> Option<u8> {
    jpeg_segments(stream)
        .find(|(m, _)| matches!(m, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF))
        .and_then(|(_, body)| body.first().copied())
}

/// Whether a JPEG stream carries a complete Adobe APP14 marker with a colour transform.
fn adobe_transformed(stream: &[u8]) -> bool {
    jpeg_segments(stream).any(|(m, body)| {
        m == 0xEE && body.len() >= 12 && body.starts_with(b"Adobe") && body[11] != 0
    })
}

/// JPEG 2000 (and HTJ2K) where dicom-rs refuses the layout: Bits Allocated other than 8 or
/// 16 (1-bit segmentations, 32-bit images). Decoded through openjp2 (the jpeg2k crate), each
/// component's values taken as coded. `None` for everything dicom-rs decodes.
fn jpeg2000(obj: &DefaultDicomObject, transfer_syntax: &str) -> Option<Result<Decoded, String>> {
    if !matches!(
        transfer_syntax,
        "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203"
    ) {
        return None;
    }
    let a = PixelAttrs::read(obj)?;
    if matches!(a.allocated, 8 | 16) {
        return None;
    }
    // A J2K codestream starts with SOC (FF4F); a JP2 file with its signature box.
    let streams = frame_streams(obj, a.frames, &[0xFF, 0x4F])?;
    let plane = a.rows.checked_mul(a.cols)?;
    let mut values = Vec::with_capacity(plane.checked_mul(a.samples)?.checked_mul(a.frames)?);
    for (i, stream) in streams.iter().enumerate() {
        let image = match jpeg2k::Image::from_bytes(stream) {
            Ok(image) => image,
            Err(e) => return Some(Err(format!("frame {}: {e}", i + 1))),
        };
        let components = image.components();
        if components.len() != a.samples
            || components
                .iter()
                .any(|c| (c.height() as usize, c.width() as usize) != (a.rows, a.cols))
        {
            return Some(Err(format!(
                "frame {}: the codestream's components do not match {}x{}x{}",
                i + 1,
                a.cols,
                a.rows,
                a.samples
            )));
        }
        for p in 0..plane {
            for c in components {
                values.push(a.value(c.data()[p] as u32));
            }
        }
    }
    Some(Ok(Decoded::integers(
        (a.rows, a.cols, a.frames, a.samples),
        transfer_syntax,
        values,
    )))
}

/// Float (OF, 32-bit) or Double Float (OD, 64-bit) Pixel Data, greyscale: the samples kept
/// exactly in [`Decoded::real`], and counted in a power-of-two step in [`Decoded::values`].
/// `None` when there is neither, a sample is not finite, or the count is not the frames'.
fn float(obj: &DefaultDicomObject, transfer_syntax: &str) -> Option<Decoded> {
    use dicom_dictionary_std::tags;
    let int = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u32>().ok());
    let (rows, cols) = (int(tags::ROWS)? as usize, int(tags::COLUMNS)? as usize);
    let frames = obj
        .element(tags::NUMBER_OF_FRAMES)
        .ok()
        .and_then(|e| e.to_str().ok()?.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    if int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) != 1 {
        return None;
    }
    let real: Vec<f64> = if let Ok(e) = obj.element(tags::FLOAT_PIXEL_DATA) {
        e.to_multi_float32()
            .ok()?
            .into_iter()
            .map(f64::from)
            .collect()
    } else {
        obj.element(tags::DOUBLE_FLOAT_PIXEL_DATA)
            .ok()?
            .to_multi_float64()
            .ok()?
    };
    if real.len() != rows.checked_mul(cols)?.checked_mul(frames)?
        || real.iter().any(|v| !v.is_finite())
    {
        return None;
    }
    let largest = real.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let step = if largest > 0.0 {
        2f64.powi(largest.log2().ceil() as i32 - 14)
    } else {
        1.0
    };
    let values = real.iter().map(|v| (v / step).round() as i64).collect();
    Some(Decoded {
        rows,
        cols,
        frames,
        samples: 1,
        transfer_syntax: transfer_syntax.to_owned(),
        values,
        real: Some(RealSamples { values: real, step }),
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
                let ok = std::fs::read(&p).is_ok_and(|b| crate::dicom::guard::check(&b).is_ok());
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
