//! Series to volume: reads the slices of a series (dicom-rs; native, RLE, deflate, JPEG and
//! JPEG 2000 decoders), checks they can form one volume (same series, orientation, size and
//! pixel spacing), sorts them along the slice normal, derives the grid (a sheared one for gantry
//! tilt), resamples uneven slice spacing onto a regular grid (and says so), and hands render a
//! `Volume` of stored values with the rescale. What cannot form a volume is refused with the
//! reason, so the caller can show it as a stack.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use render::{Geometry, Rescale, V3, Volume};

use crate::dicom::decode::{DecodeError, decode_object};

/// Why slices could not be read or could not form a volume.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeriesError {
    /// The file is not readable DICOM.
    #[error("{}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The pixel data cannot be decoded.
    #[error("{}: cannot decode pixel data ({transfer_syntax}): {reason}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// Its transfer syntax UID.
        transfer_syntax: String,
        /// Why.
        reason: String,
    },
    /// The slices do not form one volume (they stay viewable as a stack).
    #[error("not a volume: {0}")]
    NotAVolume(String),
    /// The images cannot be shown (the reason names the file).
    #[error("{0}")]
    NotShown(String),
}

/// One slice: where it is and its stored values.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Source file.
    pub path: PathBuf,
    /// Series Instance UID.
    pub series_uid: String,
    /// Image Position (Patient) of the first pixel.
    pub position: V3,
    /// Image Orientation (Patient): row and column direction cosines.
    pub orientation: [V3; 2],
    /// Pixel Spacing: between rows, between columns (mm).
    pub pixel_spacing: [f64; 2],
    /// Rows, columns.
    pub size: [usize; 2],
    /// Modality rescale.
    pub rescale: Rescale,
    /// MONOCHROME1.
    pub monochrome1: bool,
    /// Stored values, row by row (i32 so unsigned 16-bit values fit).
    pub stored: Vec<i32>,
}

/// A volume and what was done to build it.
#[derive(Debug, Clone)]
pub struct BuiltVolume {
    /// The volume for render.
    pub volume: Volume,
    /// Photometric Interpretation MONOCHROME1 (shown inverted).
    pub monochrome1: bool,
    /// Gantry tilt: the angle between the slice step and the slice normal, degrees.
    pub tilt_degrees: f64,
    /// When the slices were unevenly spaced: their spacings (mm along the step) before
    /// resampling to the regular spacing of the volume.
    pub resampled_from: Option<Vec<f64>>,
    /// Not a volume but a stack of 2D frames (`dicom::stack`): shown frame by frame in the
    /// plane they were acquired in.
    pub stack: Option<StackInfo>,
}

/// The modality values `voxels` span under `rescale`: (lowest, highest).
pub fn modality_range(rescale: Rescale, voxels: &[i16]) -> (f64, f64) {
    let (lo, hi) = voxels
        .iter()
        .fold((i16::MAX, i16::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (a, b) = (rescale.apply(f64::from(lo)), rescale.apply(f64::from(hi)));
    (a.min(b), a.max(b))
}

impl BuiltVolume {
    /// A window (centre, width) over every modality value the volume holds, at least 1 wide:
    /// what it is shown with when its images name none.
    pub fn range_window(&self) -> (f64, f64) {
        let (a, b) = modality_range(self.volume.rescale(), self.volume.voxels());
        ((a + b) / 2.0, (b - a).max(1.0))
    }
}

/// Where a stack's pixel spacing comes from, which decides what a measurement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calibration {
    /// Pixel Spacing (0028,0030): millimetres in the patient.
    Patient,
    /// Imager Pixel Spacing (0018,1164) only: millimetres at the detector (a projection
    /// image's magnification is not taken out).
    Detector,
    /// Neither, or frames with different spacings: distances are in pixels.
    Uncalibrated,
}

impl Calibration {
    /// The name clients are sent (`patient`, `detector`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Detector => "detector",
            Self::Uncalibrated => "none",
        }
    }
}

/// What a stack is made of.
#[derive(Debug, Clone)]
pub struct StackInfo {
    /// Frames, in the order shown.
    pub frames: usize,
    /// What the pixel spacing means.
    pub calibration: Calibration,
    /// The acquired time between frames (Frame Time, or the mean of the Frame Time Vector),
    /// when the images are a cine loop: the server plays it at this rate.
    pub frame_ms: Option<f64>,
    /// Colour frames, shown as they are (no window); the volume then holds their luma.
    pub colour: Option<std::sync::Arc<render::stack::ColourStack>>,
    /// The first image's VOI LUT Sequence, shown until the user sets a window (the file's
    /// Window Center and Width come first when it has both).
    pub voi_lut: Option<render::VoiLut>,
    /// Presentation LUT Shape INVERSE on a MONOCHROME2 image: shown inverted.
    pub inverse: bool,
    /// The first image's Window Center and Width (modality units), when it has both.
    pub window: Option<(f64, f64)>,
    /// The mask frame (0-based) its Mask Subtraction Sequence names, for DSA.
    pub mask: Option<usize>,
}

impl From<DecodeError> for SeriesError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Pixels {
                path,
                transfer_syntax,
                reason,
            } => Self::Decode {
                path,
                transfer_syntax,
                reason,
            },
            DecodeError::Read { path, reason } => Self::Read { path, reason },
        }
    }
}

fn read_err(path: &Path, reason: impl ToString) -> SeriesError {
    SeriesError::Read {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn floats(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: dicom_object::Tag,
    name: &str,
    n: usize,
) -> Result<Vec<f64>, SeriesError> {
    let v = obj
        .element(tag)
        .map_err(|_| read_err(path, format!("no {name}")))?
        .to_multi_float64()
        .map_err(|e| read_err(path, format!("{name}: {e}")))?;
    if v.len() < n || v.iter().any(|x| !x.is_finite()) {
        return Err(read_err(
            path,
            format!("{name} has {} values, needs {n} finite ones", v.len()),
        ));
    }
    Ok(v)
}

/// Stored values as i32 (a volume's values must fit 32 bits before they are fitted to 16).
fn to_i32(values: Vec<i64>, path: &Path) -> Result<Vec<i32>, SeriesError> {
    values
        .into_iter()
        .map(i32::try_from)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            SeriesError::NotAVolume(format!(
                "{}: stored values beyond 32-bit signed",
                path.display()
            ))
        })
}

/// Reads one slice.
pub fn read_slice(path: &Path) -> Result<Slice, SeriesError> {
    let obj = crate::dicom::guard::open_file(path).map_err(|e| read_err(path, e))?;
    let ipp = floats(
        &obj,
        path,
        tags::IMAGE_POSITION_PATIENT,
        "Image Position (Patient)",
        3,
    )?;
    let iop = floats(
        &obj,
        path,
        tags::IMAGE_ORIENTATION_PATIENT,
        "Image Orientation (Patient)",
        6,
    )?;
    let ps = floats(&obj, path, tags::PIXEL_SPACING, "Pixel Spacing", 2)?;
    let text = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_owned())
    };
    let number = |tag, default: f64| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_float64().ok())
            .unwrap_or(default)
    };
    let series_uid =
        text(tags::SERIES_INSTANCE_UID).ok_or_else(|| read_err(path, "no Series Instance UID"))?;
    let photometric = text(tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    if photometric != "MONOCHROME1" && photometric != "MONOCHROME2" {
        return Err(SeriesError::NotAVolume(format!(
            "{}: photometric {photometric} is not greyscale",
            path.display()
        )));
    }
    let decoded = decode_object(&obj, path)?;
    if decoded.frames != 1 || decoded.samples != 1 {
        return Err(SeriesError::NotAVolume(format!(
            "{}: not a single-frame greyscale image",
            path.display()
        )));
    }
    let size = [decoded.rows, decoded.cols];
    let real_step = decoded.real.as_ref().map_or(1.0, |r| r.step);
    let stored = to_i32(decoded.values, path)?;
    let row = V3::new(iop[0], iop[1], iop[2]);
    let col = V3::new(iop[3], iop[4], iop[5]);
    Ok(Slice {
        path: path.to_owned(),
        series_uid,
        position: V3::new(ipp[0], ipp[1], ipp[2]),
        orientation: [row, col],
        pixel_spacing: [ps[0], ps[1]],
        size,
        rescale: Rescale {
            slope: number(tags::RESCALE_SLOPE, 1.0) * real_step,
            intercept: number(tags::RESCALE_INTERCEPT, 0.0),
        },
        monochrome1: photometric == "MONOCHROME1",
        stored,
    })
}

/// The frames of an enhanced multi-frame image (Enhanced CT/MR: per-frame and shared functional
/// groups give each frame's position, orientation, pixel spacing and rescale) as slices, and
/// the volume they form. Frames at repeated positions (several echoes or time points) do not
/// form one volume: the error says so, and the image stays viewable frame by frame.
pub fn volume_from_multiframe(path: &Path) -> Result<BuiltVolume, SeriesError> {
    build_volume(multiframe_slices(path)?)
}

/// The frames of an enhanced multi-frame image as slices (see [`volume_from_multiframe`]).
pub fn multiframe_slices(path: &Path) -> Result<Vec<Slice>, SeriesError> {
    let obj = crate::dicom::guard::open_file(path).map_err(|e| read_err(path, e))?;
    let text = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_owned())
    };
    let series_uid =
        text(tags::SERIES_INSTANCE_UID).ok_or_else(|| read_err(path, "no Series Instance UID"))?;
    let photometric = text(tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    if photometric != "MONOCHROME1" && photometric != "MONOCHROME2" {
        return Err(SeriesError::NotAVolume(format!(
            "{}: photometric {photometric} is not greyscale",
            path.display()
        )));
    }
    let shared = obj
        .element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .and_then(|e| e.items())
        .and_then(|items| items.first());
    let per_frame = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .and_then(|e| e.items())
        .ok_or_else(|| {
            SeriesError::NotAVolume(format!(
                "{}: no per-frame functional groups (not an enhanced multi-frame image)",
                path.display()
            ))
        })?;
    let decoded = decode_object(&obj, path)?;
    if decoded.samples != 1 || per_frame.len() != decoded.frames {
        return Err(SeriesError::NotAVolume(format!(
            "{}: {} functional group items for {} frames of {} samples",
            path.display(),
            per_frame.len(),
            decoded.frames,
            decoded.samples
        )));
    }
    // A functional group macro attribute: the frame's own item first, else the shared one.
    let group_values = |frame: &dicom_object::InMemDicomObject,
                        sequence: dicom_object::Tag,
                        tag: dicom_object::Tag|
     -> Option<Vec<f64>> {
        [Some(frame), shared].into_iter().flatten().find_map(|g| {
            g.element(sequence)
                .ok()?
                .items()?
                .first()?
                .element(tag)
                .ok()?
                .to_multi_float64()
                .ok()
        })
    };
    let plane = decoded.rows * decoded.cols;
    let mut slices = Vec::with_capacity(decoded.frames);
    for (k, frame) in per_frame.iter().enumerate() {
        let need = |v: Option<Vec<f64>>, n: usize, name: &str| {
            v.filter(|v| v.len() >= n && v.iter().all(|x| x.is_finite()))
                .ok_or_else(|| read_err(path, format!("frame {}: no {name}", k + 1)))
        };
        let ipp = need(
            group_values(
                frame,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            ),
            3,
            "Image Position (Patient)",
        )?;
        let iop = need(
            group_values(
                frame,
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
            ),
            6,
            "Image Orientation (Patient)",
        )?;
        let ps = need(
            group_values(frame, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING),
            2,
            "Pixel Spacing",
        )?;
        let first = |v: Option<Vec<f64>>, default: f64| {
            v.and_then(|v| v.first().copied()).unwrap_or(default)
        };
        let rescale = Rescale {
            slope: first(
                group_values(
                    frame,
                    tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                    tags::RESCALE_SLOPE,
                ),
                1.0,
            ),
            intercept: first(
                group_values(
                    frame,
                    tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                    tags::RESCALE_INTERCEPT,
                ),
                0.0,
            ),
        };
        slices.push(Slice {
            path: path.to_owned(),
            series_uid: series_uid.clone(),
            position: V3::new(ipp[0], ipp[1], ipp[2]),
            orientation: [
                V3::new(iop[0], iop[1], iop[2]),
                V3::new(iop[3], iop[4], iop[5]),
            ],
            pixel_spacing: [ps[0], ps[1]],
            size: [decoded.rows, decoded.cols],
            rescale,
            monochrome1: photometric == "MONOCHROME1",
            stored: to_i32(decoded.values[k * plane..(k + 1) * plane].to_vec(), path)?,
        });
    }
    Ok(slices)
}

/// Reads every DICOM image file under `dir` (files that are not DICOM images, such as Philips'
/// DIRFILE, are skipped) and builds the volume.
pub fn volume_from_dir(dir: &Path) -> Result<BuiltVolume, SeriesError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files.sort();
    // Slices decode independently: one per core.
    let slices: Vec<Slice> = {
        use rayon::prelude::*;
        files
            .par_iter()
            .filter_map(|f| read_slice(f).ok())
            .collect()
    };
    build_volume(slices)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Builds one volume from the slices of a series.
pub fn build_volume(mut slices: Vec<Slice>) -> Result<BuiltVolume, SeriesError> {
    let first = slices
        .first()
        .ok_or_else(|| SeriesError::NotAVolume("no slices".into()))?
        .clone();
    if slices.len() < 2 {
        return Err(SeriesError::NotAVolume("a single image".into()));
    }
    let [row, col] = first.orientation;
    let normal = row
        .cross(col)
        .normalized()
        .ok_or_else(|| SeriesError::NotAVolume("degenerate orientation".into()))?;
    for s in &slices {
        let why = if s.series_uid != first.series_uid {
            Some("slices from more than one series")
        } else if (s.orientation[0] - row).norm() > 1e-4 || (s.orientation[1] - col).norm() > 1e-4 {
            Some("mixed orientations")
        } else if s.size != first.size {
            Some("mixed image sizes")
        } else if (s.pixel_spacing[0] - first.pixel_spacing[0]).abs() > 1e-6
            || (s.pixel_spacing[1] - first.pixel_spacing[1]).abs() > 1e-6
        {
            Some("mixed pixel spacing")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SeriesError::NotAVolume(format!(
                "{why} ({})",
                s.path.display()
            )));
        }
    }
    slices.sort_by(|a, b| normal.dot(a.position).total_cmp(&normal.dot(b.position)));
    let depth: Vec<f64> = slices.iter().map(|s| normal.dot(s.position)).collect();
    if depth.windows(2).any(|w| w[1] - w[0] < 1e-3) {
        return Err(SeriesError::NotAVolume(
            "two slices at the same position".into(),
        ));
    }
    // Every step must go the same way (straight, possibly tilted); only its length may vary.
    let steps: Vec<V3> = slices
        .windows(2)
        .map(|w| w[1].position - w[0].position)
        .collect();
    let dir = steps[0]
        .normalized()
        .ok_or_else(|| SeriesError::NotAVolume("zero slice step".into()))?;
    if steps
        .iter()
        .any(|s| (s.normalized().unwrap_or_default() - dir).norm() > 1e-3)
    {
        return Err(SeriesError::NotAVolume(
            "slice positions do not lie on one line".into(),
        ));
    }
    let lengths: Vec<f64> = steps.iter().map(|s| s.norm()).collect();
    let tilt_degrees = dir.dot(normal).clamp(-1.0, 1.0).acos().to_degrees();

    let regular = lengths.iter().all(|l| (l - lengths[0]).abs() < 0.01);
    let (rows, cols) = (first.size[0], first.size[1]);
    let [dr, dc] = first.pixel_spacing;
    let common = first.rescale;

    // The common case: evenly spaced slices that share one rescale and whose stored values fit
    // i16 become the volume as they are (what the general path below computes, without its
    // per-voxel floating point).
    let same_rescale = slices
        .iter()
        .all(|s| s.rescale.slope == common.slope && s.rescale.intercept == common.intercept);
    if regular && same_rescale {
        use rayon::prelude::*;
        let (lo, hi) = slices
            .par_iter()
            .map(|s| {
                s.stored
                    .iter()
                    .fold((i32::MAX, i32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
            })
            .reduce(|| (i32::MAX, i32::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
        if lo >= i32::from(i16::MIN) && hi <= i32::from(i16::MAX) {
            let mut voxels = vec![0i16; rows * cols * slices.len()];
            voxels
                .par_chunks_mut(rows * cols)
                .zip(slices.par_iter())
                .for_each(|(out, s)| {
                    for (o, &v) in out.iter_mut().zip(&s.stored) {
                        *o = v as i16;
                    }
                });
            let mean = lengths.iter().sum::<f64>() / lengths.len() as f64;
            let geometry = Geometry::new(
                [cols, rows, slices.len()],
                slices[0].position,
                [row * dc, col * dr, dir * mean],
            )
            .map_err(|e| SeriesError::NotAVolume(e.to_string()))?;
            let volume = Volume::new(geometry, voxels, common)
                .map_err(|e| SeriesError::NotAVolume(e.to_string()))?;
            return Ok(BuiltVolume {
                volume,
                monochrome1: first.monochrome1,
                tilt_degrees,
                resampled_from: None,
                stack: None,
            });
        }
    }

    // One rescale for the whole volume; values that do not fit i16 are offset into it.
    let mut modality: Vec<Vec<f64>> = Vec::with_capacity(slices.len());
    for s in &slices {
        modality.push(
            s.stored
                .iter()
                .map(|v| s.rescale.apply(f64::from(*v)))
                .collect(),
        );
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for m in &modality {
        for v in m {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    let to_stored = |v: f64, r: Rescale| (v - r.intercept) / r.slope;
    let (slo, shi) = (
        to_stored(lo, common).min(to_stored(hi, common)),
        to_stored(lo, common).max(to_stored(hi, common)),
    );
    let offset = if slo < f64::from(i16::MIN) || shi > f64::from(i16::MAX) {
        ((slo + shi) / 2.0).round()
    } else {
        0.0
    };
    if shi - slo > 65535.0 {
        return Err(SeriesError::NotAVolume(
            "values span more than 16 bits".into(),
        ));
    }
    let rescale = Rescale {
        slope: common.slope,
        intercept: common.intercept + offset * common.slope,
    };

    let plane = rows * cols;
    let (voxels, count, step_len, resampled_from): (Vec<i16>, usize, f64, Option<Vec<f64>>) =
        if regular {
            let mut v = Vec::with_capacity(plane * slices.len());
            for m in &modality {
                v.extend(m.iter().map(|x| (to_stored(*x, rescale)).round() as i16));
            }
            let mean = lengths.iter().sum::<f64>() / lengths.len() as f64;
            (v, slices.len(), mean, None)
        } else {
            // Resample along the step line at the finest spacing, interpolating linearly between
            // the two slices around each new position (their grids are shifted along the same
            // line, so corresponding voxels lie on lines parallel to it).
            let finest = lengths.iter().copied().fold(f64::INFINITY, f64::min);
            let mut t = vec![0.0];
            for l in &lengths {
                t.push(t.last().copied().unwrap_or(0.0) + l);
            }
            let total = t.last().copied().unwrap_or(0.0);
            let n = (total / finest + 1e-6).floor() as usize + 1;
            let mut v = Vec::with_capacity(plane * n);
            let mut seg = 0;
            for m in 0..n {
                let tm = m as f64 * finest;
                while seg + 1 < t.len() - 1 && t[seg + 1] < tm {
                    seg += 1;
                }
                let w = ((tm - t[seg]) / (t[seg + 1] - t[seg])).clamp(0.0, 1.0);
                let (a, b) = (&modality[seg], &modality[seg + 1]);
                v.extend(
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| to_stored(x + (y - x) * w, rescale).round() as i16),
                );
            }
            (v, n, finest, Some(lengths.clone()))
        };
    // The origin is the first slice along the normal (not the first file read).
    let geometry = Geometry::new(
        [cols, rows, count],
        slices[0].position,
        [row * dc, col * dr, dir * step_len],
    )
    .map_err(|e| SeriesError::NotAVolume(e.to_string()))?;
    let volume = Volume::new(geometry, voxels, rescale)
        .map_err(|e| SeriesError::NotAVolume(e.to_string()))?;
    Ok(BuiltVolume {
        volume,
        monochrome1: first.monochrome1,
        tilt_degrees,
        resampled_from,
        stack: None,
    })
}
