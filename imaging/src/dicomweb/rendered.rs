//! WADO-RS `rendered` (PS3.18 10.4.1.1.3): a stored instance or one of its frames as a JPEG or
//! PNG made on the server through the render crate, so a client needs no DICOM. Query
//! parameters: `window=center,width[,linear|linear-exact|sigmoid]` (default: the instance's
//! own window, else its full range), `viewport=width,height` (the image is fitted; default its
//! own size; at most 4096), `quality=1-100` (JPEG, default 90). `Accept: image/png` gives PNG.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use render::mpr::{MprRequest, Sampling};
use render::stack::{ColourStack, frame_plane, grey_stack};
use render::{Frame, GreyPipeline, Rescale, Viewport, Voi, VoiFunction, Window};

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG at a quality 1-100.
    Jpeg(u8),
    /// PNG (lossless).
    Png,
}

/// What to render, from the query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// A window, or the instance's own.
    pub window: Option<Window>,
    /// Output size, or the image's own.
    pub viewport: Option<(u32, u32)>,
    /// JPEG quality.
    pub quality: u8,
}

/// The largest output side.
pub const MAX_SIDE: u32 = 4096;

/// Why a rendered request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderedError {
    /// A query parameter is wrong.
    #[error("{param}: {reason}")]
    Param {
        /// The parameter.
        param: &'static str,
        /// Why.
        reason: String,
    },
    /// The instance cannot be shown.
    #[error("{0}")]
    Instance(String),
}

fn bad(param: &'static str, reason: impl Into<String>) -> RenderedError {
    RenderedError::Param {
        param,
        reason: reason.into(),
    }
}

/// Reads the query string.
pub fn parse_params(raw: Option<&str>) -> Result<Params, RenderedError> {
    let mut p = Params {
        window: None,
        viewport: None,
        quality: 90,
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "window" => {
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                let num = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
                let (Some(center), Some(width)) = (
                    parts.first().and_then(|s| num(s)),
                    parts.get(1).and_then(|s| num(s)),
                ) else {
                    return Err(bad(
                        "window",
                        format!("{v:?} is not center,width[,function]"),
                    ));
                };
                let function = match parts.get(2).map(|f| f.to_ascii_lowercase()).as_deref() {
                    None | Some("linear") => VoiFunction::Linear,
                    Some("linear-exact" | "linear_exact") => VoiFunction::LinearExact,
                    Some("sigmoid") => VoiFunction::Sigmoid,
                    Some(other) => {
                        return Err(bad(
                            "window",
                            format!("{other:?} is not linear, linear-exact or sigmoid"),
                        ));
                    }
                };
                let w = Window {
                    center,
                    width,
                    function,
                };
                w.validate().map_err(|e| bad("window", e.to_string()))?;
                p.window = Some(w);
            }
            "viewport" => {
                let parts: Vec<u32> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
                match parts.as_slice() {
                    [w, h, ..] if (1..=MAX_SIDE).contains(w) && (1..=MAX_SIDE).contains(h) => {
                        p.viewport = Some((*w, *h));
                    }
                    _ => {
                        return Err(bad(
                            "viewport",
                            format!("{v:?} is not width,height (1-{MAX_SIDE})"),
                        ));
                    }
                }
            }
            "quality" => {
                p.quality = v
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| bad("quality", format!("{v:?} is not 1-100")))?;
            }
            // Not supported here, and harmless to ignore.
            "annotation" | "charset" => {}
            _ => {
                return Err(bad(
                    "query",
                    format!("{k:?} is not window, viewport or quality"),
                ));
            }
        }
    }
    Ok(p)
}

fn first_float(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<f64> {
    obj.element(tag)
        .ok()?
        .to_multi_float64()
        .ok()?
        .first()
        .copied()
        .filter(|x| x.is_finite())
}

/// Renders frame `frame` (0-based) of the instance in `path` and encodes it.
pub fn render_instance(
    path: &Path,
    frame: usize,
    params: &Params,
    format: Format,
) -> Result<Vec<u8>, RenderedError> {
    let fail = |e: String| RenderedError::Instance(e);
    let obj = crate::dicom::guard::open_file(path).map_err(fail)?;
    let decoded =
        crate::dicom::decode::decode_object(&obj, path).map_err(|e| fail(e.to_string()))?;
    if frame >= decoded.frames {
        return Err(bad(
            "frame",
            format!("frame {} is outside 1-{}", frame + 1, decoded.frames),
        ));
    }
    let spacing = obj
        .element(tags::PIXEL_SPACING)
        .ok()
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| v.len() >= 2 && v.iter().all(|x| x.is_finite() && *x > 0.0))
        .map_or([1.0, 1.0], |v| [v[1], v[0]]);
    let (w, h) = params
        .viewport
        .unwrap_or((decoded.cols as u32, decoded.rows as u32));
    let (w, h) = (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE));
    let image: Frame = if decoded.samples == 3 {
        let per = decoded.rows * decoded.cols * 3;
        // Samples wider than 8 bits are scaled to 8 by their Bits Stored.
        let bits = obj
            .element(tags::BITS_STORED)
            .ok()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(8)
            .clamp(1, 32);
        let frames: Vec<std::sync::Arc<[u8]>> = decoded
            .values
            .chunks(per)
            .map(|f| crate::dicom::stack::rgb_bytes(f, bits).into())
            .collect();
        let stack = ColourStack::new(decoded.cols, decoded.rows, spacing, frames)
            .map_err(|e| fail(e.to_string()))?;
        stack
            .render(frame, &stack.fit(w, h), [0, 0, 0])
            .map_err(|e| fail(e.to_string()))?
    } else if decoded.samples == 1 {
        let per = decoded.rows * decoded.cols;
        let values = &decoded.values[frame * per..(frame + 1) * per];
        let (lo, hi) = values
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        // Stored values shifted into i16 when they do not fit (unsigned 16-bit images), the
        // rescale intercept taking the shift back; a range wider than 16 bits is clipped.
        let offset = if lo < i64::from(i16::MIN) || hi > i64::from(i16::MAX) {
            (lo + hi) / 2
        } else {
            0
        };
        let slope = first_float(&obj, tags::RESCALE_SLOPE).unwrap_or(1.0);
        let intercept = first_float(&obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0);
        // Float pixel data: the integer values count in steps of the real samples.
        let slope = slope * decoded.real.as_ref().map_or(1.0, |r| r.step);
        let rescale = Rescale {
            slope: if slope == 0.0 { 1.0 } else { slope },
            intercept: intercept + offset as f64 * slope,
        };
        let shifted: Vec<i16> = values
            .iter()
            .map(|&v| (v - offset).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16)
            .collect();
        let window = params.window.unwrap_or_else(|| {
            match (
                first_float(&obj, tags::WINDOW_CENTER),
                first_float(&obj, tags::WINDOW_WIDTH),
            ) {
                (Some(c), Some(ww)) if ww >= 1.0 => Window::linear(c, ww),
                _ => {
                    let (a, b) = (
                        rescale.apply((lo - offset) as f64),
                        rescale.apply((hi - offset) as f64),
                    );
                    let (a, b) = (a.min(b), a.max(b));
                    if decoded.real.is_some() && b > a {
                        // Real-valued maps may span less than one unit: the exact linear
                        // function, whose width may be below 1.
                        Window {
                            center: (a + b) / 2.0,
                            width: b - a,
                            function: VoiFunction::LinearExact,
                        }
                    } else {
                        Window::linear((a + b) / 2.0, (b - a).max(1.0))
                    }
                }
            }
        });
        let photometric = crate::store::text(&obj, tags::PHOTOMETRIC_INTERPRETATION);
        let pipeline = GreyPipeline {
            rescale,
            voi: Voi::Window(window),
            monochrome1: photometric.as_deref() == Some("MONOCHROME1"),
            invert: false,
        };
        let table = pipeline.table().map_err(|e| bad("window", e.to_string()))?;
        let volume = grey_stack(decoded.cols, decoded.rows, spacing, 1, shifted, rescale)
            .map_err(|e| fail(e.to_string()))?;
        let plane = frame_plane(volume.geometry(), 0);
        // At its own size the image maps pixel for pixel; another size is fitted.
        let vp = match params.viewport {
            None => Viewport::native(plane, w, h, spacing),
            Some(_) => {
                Viewport::fit(plane, volume.geometry(), w, h).map_err(|e| fail(e.to_string()))?
            }
        };
        render::mpr::render(
            &volume,
            &table,
            &MprRequest {
                viewport: &vp,
                sampling: Sampling::Trilinear,
                slab: None,
                background: 0,
            },
        )
        .map_err(|e| fail(e.to_string()))?
    } else {
        return Err(fail(format!(
            "{} samples per pixel cannot be shown",
            decoded.samples
        )));
    };
    match format {
        Format::Jpeg(q) => render::encode::encode_jpeg_preferred(&image, q),
        Format::Png => render::encode::encode_png(&image),
    }
    .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_or_named_when_wrong() {
        let p = parse_params(Some("window=40,400&viewport=256,128&quality=75")).unwrap();
        assert_eq!(p.window, Some(Window::linear(40.0, 400.0)));
        assert_eq!((p.viewport, p.quality), (Some((256, 128)), 75));
        let s = parse_params(Some("window=40,400,sigmoid")).unwrap();
        assert_eq!(s.window.map(|w| w.function), Some(VoiFunction::Sigmoid));
        for (q, param) in [
            ("window=40", "window"),
            ("window=40,0", "window"),
            ("window=a,b", "window"),
            ("window=40,400,cubic", "window"),
            ("viewport=0,10", "viewport"),
            ("viewport=5000,10", "viewport"),
            ("quality=0", "quality"),
            ("size=1", "query"),
        ] {
            match parse_params(Some(q)) {
                Err(RenderedError::Param { param: p, .. }) => assert_eq!(p, param, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}
