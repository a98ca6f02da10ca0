//! Images that do not form a volume, as a stack the viewer shows frame by frame in the plane
//! they were acquired in: 2D films (CR, DX/DR, MG, RF, single XA), multi-frame cine (US, XA,
//! NM) and series of captures. The stack is a [`BuiltVolume`] whose third axis is the frame
//! (`render::stack::grey_stack`), so window/level, zoom, pan, measurements, annotations,
//! co-viewing and cine work as on volumes. Colour images are refused with the reason (they are
//! not in the viewer yet), never shown as a black canvas.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use render::Rescale;

use crate::dicom::decode::decode_object;
use crate::dicom::series::{BuiltVolume, Calibration, SeriesError, StackInfo};

/// One grey frame of a 2D image.
#[derive(Debug, Clone)]
struct Frame {
    path: PathBuf,
    rows: usize,
    cols: usize,
    /// Along a row, down a column (mm), and what they mean.
    spacing: ([f64; 2], Calibration),
    rescale: Rescale,
    monochrome1: bool,
    frame_ms: Option<f64>,
    stored: Vec<i64>,
}

fn read_err(path: &Path, reason: impl ToString) -> SeriesError {
    SeriesError::Read {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn floats(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<Vec<f64>> {
    obj.element(tag)
        .ok()?
        .to_multi_float64()
        .ok()
        .filter(|v| v.iter().all(|x| x.is_finite()))
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

/// The frames of one file (a single-frame image has one).
fn read_frames(path: &Path) -> Result<Vec<Frame>, SeriesError> {
    let obj = crate::dicom::guard::open_file(path).map_err(|e| read_err(path, e))?;
    let photometric = crate::store::text(&obj, tags::PHOTOMETRIC_INTERPRETATION)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if photometric != "MONOCHROME1" && photometric != "MONOCHROME2" {
        return Err(SeriesError::NotShown(format!(
            "{}: {} images (colour) are not shown in the viewer yet",
            path.display(),
            if photometric.is_empty() {
                "unknown photometric"
            } else {
                &photometric
            }
        )));
    }
    let decoded = decode_object(&obj, path)?;
    if decoded.samples != 1 {
        return Err(SeriesError::NotShown(format!(
            "{}: {} samples per pixel under {photometric}",
            path.display(),
            decoded.samples
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
    let frame_ms = first(tags::FRAME_TIME)
        .or_else(|| {
            // The vector's first entry is 0 (the first frame's offset).
            let v = floats(&obj, tags::FRAME_TIME_VECTOR)?;
            let rest: Vec<f64> = v.iter().skip(1).copied().collect();
            (!rest.is_empty()).then(|| rest.iter().sum::<f64>() / rest.len() as f64)
        })
        .filter(|t| *t > 0.0 && decoded.frames > 1);
    let per = decoded.rows * decoded.cols;
    let spacing = spacing(&obj);
    Ok(decoded
        .values
        .chunks(per)
        .take(decoded.frames)
        .map(|values| Frame {
            path: path.to_owned(),
            rows: decoded.rows,
            cols: decoded.cols,
            spacing,
            rescale,
            monochrome1: photometric == "MONOCHROME1",
            frame_ms,
            stored: values.to_vec(),
        })
        .collect())
}

/// The stack of the images in `files` (each frame of a multi-frame image in turn). Frames of
/// different sizes are centred on the largest; values are kept as the modality values the
/// first frame's rescale gives, offset into 16 bits.
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
    // One rescale: the first frame's, every frame's values brought to it.
    let common = first.rescale;
    let modality = |f: &Frame, v: i64| f.rescale.apply(v as f64);
    let to_common = |m: f64| (m - common.intercept) / common.slope;
    let (lo, hi) = frames
        .iter()
        .flat_map(|f| f.stored.iter().map(move |v| to_common(modality(f, *v))))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi - lo > 65535.0 {
        return Err(SeriesError::NotShown(format!(
            "{}: values span more than 16 bits",
            first.path.display()
        )));
    }
    let offset = if lo < f64::from(i16::MIN) || hi > f64::from(i16::MAX) {
        ((lo + hi) / 2.0).round()
    } else {
        0.0
    };
    let rescale = Rescale {
        slope: common.slope,
        intercept: common.intercept + offset * common.slope,
    };
    // Outside a smaller frame: the value shown black.
    let background = if first.monochrome1 { hi } else { lo } - offset;
    let background = background
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
    let plane = rows * cols;
    let mut voxels = vec![background; plane * frames.len()];
    voxels
        .par_chunks_mut(plane)
        .zip(frames.par_iter())
        .for_each(|(out, f)| {
            let (r0, c0) = ((rows - f.rows) / 2, (cols - f.cols) / 2);
            for (r, line) in f.stored.chunks(f.cols).enumerate() {
                let at = (r0 + r) * cols + c0;
                for (o, v) in out[at..at + line.len()].iter_mut().zip(line) {
                    *o = (to_common(modality(f, *v)) - offset)
                        .round()
                        .clamp(f64::from(i16::MIN), f64::from(i16::MAX))
                        as i16;
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
        stack: Some(StackInfo {
            frames: frames.len(),
            calibration,
            frame_ms: first.frame_ms,
        }),
    })
}
