//! Images that do not form a volume, as a stack the viewer shows frame by frame in the plane
//! they were acquired in: 2D films (CR, DX/DR, MG, RF, single XA), multi-frame cine (US, XA,
//! NM) and series of captures. The stack is a [`BuiltVolume`] whose third axis is the frame
//! (`render::stack::grey_stack`), so window/level, zoom, pan, measurements, annotations,
//! co-viewing and cine work as on volumes. Colour frames are kept as RGB beside their luma.
//! What cannot be shown is refused with the file and the reason, never a black canvas.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use render::Rescale;

use crate::dicom::decode::decode_object;
use crate::dicom::series::{BuiltVolume, Calibration, SeriesError, StackInfo};

/// One frame of a 2D image: grey stored values, or RGB bytes.
#[derive(Debug, Clone)]
struct Frame {
    path: PathBuf,
    /// The VOI LUT when the image has one and no window, and Presentation LUT Shape INVERSE.
    voi_lut: Option<render::VoiLut>,
    inverse: bool,
    window: Option<(f64, f64)>,
    mask: Option<usize>,
    rows: usize,
    cols: usize,
    /// Along a row, down a column (mm), and what they mean.
    spacing: ([f64; 2], Calibration),
    rescale: Rescale,
    monochrome1: bool,
    frame_ms: Option<f64>,
    pixels: Pixels,
}

#[derive(Debug, Clone)]
enum Pixels {
    Grey(Vec<i64>),
    Rgb(Vec<u8>),
}

fn read_err(path: &Path, reason: impl ToString) -> SeriesError {
    SeriesError::Read {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// A numeric attribute's values; one some writer sent as UN (bytes) is read as its text.
fn floats(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<Vec<f64>> {
    use dicom_core::PrimitiveValue;
    use dicom_core::value::Value;
    let e = obj.element(tag).ok()?;
    let v = match e.value() {
        Value::Primitive(PrimitiveValue::U8(b)) => String::from_utf8_lossy(b)
            .split('\\')
            .map(|s| s.trim_matches([' ', '\0']).parse::<f64>().ok())
            .collect::<Option<Vec<f64>>>()?,
        _ => e.to_multi_float64().ok()?,
    };
    Some(v).filter(|v| v.iter().all(|x| x.is_finite()))
}

/// The first table of a LUT sequence (Modality or VOI, PS3.3 C.11): (first value mapped, bits
/// per entry, the entries), the descriptor giving how many (0 for 65536).
fn lut_item(obj: &DefaultDicomObject, sequence: dicom_object::Tag) -> Option<(i64, i64, Vec<i64>)> {
    let item = obj.element(sequence).ok()?.items()?.first()?;
    let ints = |tag| item.element(tag).ok()?.to_multi_int::<i64>().ok();
    let d = ints(tags::LUT_DESCRIPTOR).filter(|d| d.len() == 3)?;
    let mut data = ints(tags::LUT_DATA)?;
    let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
    if entries == 0 || data.len() < entries {
        return None;
    }
    data.truncate(entries);
    Some((d[1], d[2], data))
}

/// The Modality LUT Sequence's table, when the image has one instead of a rescale: (first
/// value mapped, entries).
fn modality_lut(obj: &DefaultDicomObject) -> Option<(i64, Vec<i64>)> {
    lut_item(obj, tags::MODALITY_LUT_SEQUENCE).map(|(first, _, table)| (first, table))
}

/// Pixel Spacing, else Imager Pixel Spacing, as (along a row, down a column).
fn spacing(obj: &DefaultDicomObject) -> ([f64; 2], Calibration) {
    let pair = |tag| {
        floats(obj, tag)
            .filter(|v| v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0)
            .map(|v| [v[1], v[0]])
    };
    if let Some(s) = pair(tags::PIXEL_SPACING) {
        (s, Calibration::Patient)
    } else if let Some(s) = pair(tags::IMAGER_PIXEL_SPACING) {
        (s, Calibration::Detector)
    } else {
        ([1.0, 1.0], Calibration::Uncalibrated)
    }
}

/// Stored palette indices as RGB bytes through the file's Palette Color Lookup Table
/// (PS3.3 C.7.6.3.1.5: descriptor = entries (0 for 65536), first value mapped, bits).
fn palette_rgb(
    obj: &DefaultDicomObject,
    path: &Path,
    stored: &[i64],
) -> Result<Vec<u8>, SeriesError> {
    let not_shown = |why: &str| SeriesError::NotShown(format!("{}: {why}", path.display()));
    if obj
        .element(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)
        .is_ok()
    {
        return Err(not_shown(
            "segmented palette colour tables are not shown yet",
        ));
    }
    let ints = |tag| -> Option<Vec<i64>> { obj.element(tag).ok()?.to_multi_int::<i64>().ok() };
    let mut tables = Vec::with_capacity(3);
    for (descriptor, data) in [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
    ] {
        let d = ints(descriptor)
            .filter(|d| d.len() == 3)
            .ok_or_else(|| not_shown("no palette colour lookup table descriptor"))?;
        let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
        let table = ints(data).ok_or_else(|| not_shown("no palette colour lookup table data"))?;
        // 8-bit entries may come two to a 16-bit word.
        let table: Vec<i64> = if d[2] == 8 && table.len() * 2 == entries {
            table
                .iter()
                .flat_map(|w| [w & 0xFF, (w >> 8) & 0xFF])
                .collect()
        } else {
            table
        };
        if table.len() < entries || !(d[2] == 8 || d[2] == 16) {
            return Err(not_shown(
                "a palette colour lookup table shorter than its descriptor",
            ));
        }
        tables.push((d[1], if d[2] == 16 { 8 } else { 0 }, table));
    }
    let mut out = Vec::with_capacity(stored.len() * 3);
    for v in stored {
        for (first, shift, t) in &tables {
            let i = (v - first).clamp(0, t.len() as i64 - 1) as usize;
            out.push(((t[i] >> shift) & 0xFF) as u8);
        }
    }
    Ok(out)
}

/// The VOI LUT Sequence's first table (PS3.3 C.11.2), when the image has no window to show
/// it with instead.
fn voi_lut(obj: &DefaultDicomObject) -> Option<render::VoiLut> {
    if obj.element(tags::WINDOW_WIDTH).is_ok() {
        return None;
    }
    let (first, bits, table) = lut_item(obj, tags::VOILUT_SEQUENCE)?;
    // The first value mapped is signed when the image is (a US descriptor holds its bits).
    let signed = obj
        .element(tags::PIXEL_REPRESENTATION)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok())
        == Some(1);
    let first = if signed && first >= 32768 {
        first - 65536
    } else {
        first
    };
    let lut = render::VoiLut {
        first_mapped: i32::try_from(first).ok()?,
        bits: u8::try_from(bits).ok()?,
        entries: table.iter().map(|v| *v as u16).collect(),
    };
    lut.validate().ok().map(|()| lut)
}

/// Colour samples as bytes, those wider than 8 bits scaled to 8 by their Bits Stored.
pub(crate) fn rgb_bytes(values: &[i64], bits: u32) -> Vec<u8> {
    let max = ((1u64 << bits.clamp(1, 32)) - 1) as f64;
    values
        .iter()
        .map(|&v| {
            if bits == 8 {
                v.clamp(0, 255) as u8
            } else {
                (v.max(0) as f64 / max * 255.0).round().clamp(0.0, 255.0) as u8
            }
        })
        .collect()
}

/// The frames of one file (a single-frame image has one).
fn read_frames(path: &Path) -> Result<Vec<Frame>, SeriesError> {
    let obj = crate::dicom::guard::open_file(path).map_err(|e| read_err(path, e))?;
    let photometric = obj
        .element(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_owned()))
        .unwrap_or_default();
    let decoded = decode_object(&obj, path)?;
    let grey = photometric == "MONOCHROME1" || photometric == "MONOCHROME2";
    let palette = photometric == "PALETTE COLOR";
    if !(decoded.samples == 3 || (decoded.samples == 1 && (grey || palette))) {
        return Err(SeriesError::NotShown(format!(
            "{}: {} samples per pixel under photometric {:?} cannot be shown",
            path.display(),
            decoded.samples,
            photometric
        )));
    }
    let first = |tag| floats(&obj, tag).and_then(|v| v.first().copied());
    let slope = first(tags::RESCALE_SLOPE)
        .filter(|s| *s != 0.0)
        .unwrap_or(1.0)
        * decoded.real.as_ref().map_or(1.0, |r| r.step);
    let rescale = Rescale {
        slope,
        intercept: first(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
    };
    // A Modality LUT instead of a rescale: its outputs are the values, taken as they are.
    let lut = if grey { modality_lut(&obj) } else { None };
    let voi = if grey { voi_lut(&obj) } else { None };
    let inverse = photometric == "MONOCHROME2"
        && obj
            .element(tags::PRESENTATION_LUT_SHAPE)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim() == "INVERSE"))
            .unwrap_or(false);
    let rescale = if lut.is_some() {
        Rescale::default()
    } else {
        rescale
    };
    let frame_ms = first(tags::FRAME_TIME)
        .or_else(|| {
            // The vector's first entry is 0 (the first frame's offset).
            let v = floats(&obj, tags::FRAME_TIME_VECTOR)?;
            let rest: Vec<f64> = v.iter().skip(1).copied().collect();
            (!rest.is_empty()).then(|| rest.iter().sum::<f64>() / rest.len() as f64)
        })
        .filter(|t| *t > 0.0 && decoded.frames > 1);
    let per = decoded.rows * decoded.cols * decoded.samples;
    let bits = obj
        .element(tags::BITS_STORED)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(8);
    let spacing = spacing(&obj);
    let window = first(tags::WINDOW_CENTER)
        .zip(first(tags::WINDOW_WIDTH))
        .filter(|(_, w)| *w >= 1.0);
    // The Mask Subtraction Sequence's first Mask Frame Numbers (1-based).
    let mask = obj
        .element(tags::MASK_SUBTRACTION_SEQUENCE)
        .ok()
        .and_then(|e| {
            e.items()?
                .first()?
                .element(tags::MASK_FRAME_NUMBERS)
                .ok()?
                .to_int::<u32>()
                .ok()
        })
        .and_then(|n| usize::try_from(n).ok()?.checked_sub(1))
        .filter(|m| *m < decoded.frames);
    decoded
        .values
        .chunks(per)
        .take(decoded.frames)
        .map(|values| {
            let pixels = if decoded.samples == 3 {
                Pixels::Rgb(rgb_bytes(values, bits))
            } else if palette {
                Pixels::Rgb(palette_rgb(&obj, path, values)?)
            } else if let Some((first, table)) = &lut {
                let last = table.len() as i64 - 1;
                Pixels::Grey(
                    values
                        .iter()
                        .map(|v| table[(v - first).clamp(0, last) as usize])
                        .collect(),
                )
            } else {
                Pixels::Grey(values.to_vec())
            };
            Ok(Frame {
                path: path.to_owned(),
                voi_lut: voi.clone(),
                inverse,
                window,
                mask,
                rows: decoded.rows,
                cols: decoded.cols,
                spacing,
                rescale,
                monochrome1: photometric == "MONOCHROME1",
                frame_ms,
                pixels,
            })
        })
        .collect()
}

/// A grey frame's stored values (none for a colour one).
fn grey(f: &Frame) -> &[i64] {
    match &f.pixels {
        Pixels::Grey(v) => v,
        Pixels::Rgb(_) => &[],
    }
}

/// The stack of the images in `files` (each frame of a multi-frame image in turn). Frames of
/// different sizes are centred on the largest. Grey values are kept as the modality values the
/// first frame's rescale gives, offset into 16 bits (in coarser steps when they span more); colour frames (RGB, YBR decoded to RGB,
/// palette colour through its table) are kept as RGB, with their luma as the grey volume that
/// measurements read.
pub fn build_stack(files: &[PathBuf]) -> Result<BuiltVolume, SeriesError> {
    use rayon::prelude::*;
    let frames: Vec<Frame> = files
        .par_iter()
        .map(|f| read_frames(f))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let first = frames
        .first()
        .ok_or_else(|| SeriesError::NotShown("no images".into()))?;
    let rows = frames.iter().map(|f| f.rows).max().unwrap_or(1);
    let cols = frames.iter().map(|f| f.cols).max().unwrap_or(1);
    let calibration = if frames.iter().all(|f| f.spacing == first.spacing) {
        first.spacing.1
    } else {
        Calibration::Uncalibrated
    };
    let spacing = match calibration {
        Calibration::Uncalibrated => [1.0, 1.0],
        _ => first.spacing.0,
    };
    let colour = frames
        .iter()
        .filter(|f| matches!(f.pixels, Pixels::Rgb(_)))
        .count();
    if colour != 0 && colour != frames.len() {
        return Err(SeriesError::NotShown(format!(
            "{}: the series mixes colour and grey images",
            first.path.display()
        )));
    }
    let plane = rows * cols;
    // Where frame `f`'s row `r` starts in the padded frame.
    let at = |f: &Frame, r: usize| ((rows - f.rows) / 2 + r) * cols + (cols - f.cols) / 2;
    let info = |colour| StackInfo {
        frames: frames.len(),
        calibration,
        frame_ms: first.frame_ms,
        colour,
        voi_lut: first.voi_lut.clone(),
        inverse: first.inverse,
        window: first.window,
        mask: first.mask,
    };
    if colour > 0 {
        let rgb: Vec<std::sync::Arc<[u8]>> = frames
            .par_iter()
            .map(|f| {
                let mut out = vec![0u8; plane * 3];
                if let Pixels::Rgb(p) = &f.pixels {
                    for (r, line) in p.chunks(f.cols * 3).enumerate() {
                        let a = at(f, r) * 3;
                        out[a..a + line.len()].copy_from_slice(line);
                    }
                }
                out.into()
            })
            .collect();
        // Luma (BT.601), for probes and region statistics.
        let luma: Vec<i16> = rgb
            .iter()
            .flat_map(|f| {
                f.chunks_exact(3).map(|p| {
                    ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2])) / 1000)
                        as i16
                })
            })
            .collect();
        let stack = render::stack::ColourStack::new(cols, rows, spacing, rgb)
            .map_err(|e| SeriesError::NotShown(e.to_string()))?;
        let volume =
            render::stack::grey_stack(cols, rows, spacing, frames.len(), luma, Rescale::default())
                .map_err(|e| SeriesError::NotShown(e.to_string()))?;
        return Ok(BuiltVolume {
            volume,
            monochrome1: false,
            tilt_degrees: 0.0,
            resampled_from: None,
            stack: Some(info(Some(std::sync::Arc::new(stack)))),
        });
    }
    // One rescale: the first frame's, every frame's values brought to it.
    let common = first.rescale;
    let modality = |f: &Frame, v: i64| f.rescale.apply(v as f64);
    let to_common = |m: f64| (m - common.intercept) / common.slope;
    let (lo, hi) = frames
        .iter()
        .flat_map(|f| grey(f).iter().map(move |v| to_common(modality(f, *v))))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    // Values spanning more than 16 bits (32-bit dose grids) are counted in coarser steps: the
    // display needs no more.
    let step = if hi - lo > 65535.0 {
        ((hi - lo) / 65535.0).ceil()
    } else {
        1.0
    };
    let (lo, hi) = (lo / step, hi / step);
    let offset = if lo < f64::from(i16::MIN) || hi > f64::from(i16::MAX) {
        ((lo + hi) / 2.0).round()
    } else {
        0.0
    };
    let rescale = Rescale {
        slope: common.slope * step,
        intercept: common.intercept + offset * common.slope * step,
    };
    let to_voxel = |v: f64| {
        (v / step - offset)
            .round()
            .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
    };
    // Outside a smaller frame: the value shown black.
    let background = to_voxel(if first.monochrome1 { hi } else { lo } * step);
    let mut voxels = vec![background; plane * frames.len()];
    voxels
        .par_chunks_mut(plane)
        .zip(frames.par_iter())
        .for_each(|(out, f)| {
            for (r, line) in grey(f).chunks(f.cols).enumerate() {
                let a = at(f, r);
                for (o, v) in out[a..a + line.len()].iter_mut().zip(line) {
                    *o = to_voxel(to_common(modality(f, *v)));
                }
            }
        });
    let volume = render::stack::grey_stack(cols, rows, spacing, frames.len(), voxels, rescale)
        .map_err(|e| SeriesError::NotShown(e.to_string()))?;
    Ok(BuiltVolume {
        volume,
        monochrome1: first.monochrome1,
        tilt_degrees: 0.0,
        resampled_from: None,
        stack: Some(info(None)),
    })
}
