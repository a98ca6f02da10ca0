//! WADO-RS `rendered` (PS3.18 10.4.1.1.3): a stored instance or one of its frames as a JPEG or
//! PNG made on the server through the render crate, so a client needs no DICOM. Query
//! parameters: `window=center,width[,linear|linear-exact|sigmoid]` (default: the instance's
//! own window, else its full range), `viewport=width,height` (the image is fitted; default its
//! own size; at most 4096), `quality=1-100` (JPEG, default 90). `Accept: image/png` gives PNG.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use render::mpr::{MprRequest, Sampling};
use render::stack::frame_plane;
use render::{Frame, GreyPipeline, Viewport, Voi, VoiFunction, Window};

use crate::dicom::series::BuiltVolume;

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

/// Renders frame `frame` (0-based) of one instance's stack (`dicom::stack::build_stack` of its
/// file, as the viewer shows it: palette colour, modality and VOI LUTs, Presentation LUT
/// INVERSE) and encodes it. The window is the one asked for, else the image's VOI LUT, else
/// its own window, else one over the frame's value range.
pub fn render_built(
    built: &BuiltVolume,
    frame: usize,
    params: &Params,
    format: Format,
) -> Result<Vec<u8>, RenderedError> {
    let fail = |e: String| RenderedError::Instance(e);
    let Some(stack) = &built.stack else {
        return Err(fail("not an image stack".into()));
    };
    if frame >= stack.frames {
        return Err(bad(
            "frame",
            format!("frame {} is outside 1-{}", frame + 1, stack.frames),
        ));
    }
    let volume = &built.volume;
    let [cols, rows, _] = volume.geometry().dims();
    let (w, h) = params.viewport.unwrap_or((cols as u32, rows as u32));
    let (w, h) = (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE));
    let image: Frame = if let Some(colour) = &stack.colour {
        colour
            .render(frame, &colour.fit(w, h), [0, 0, 0])
            .map_err(|e| fail(e.to_string()))?
    } else {
        let rescale = volume.rescale();
        let voi = match (params.window, &stack.voi_lut, stack.window) {
            (Some(w), _, _) => Voi::Window(w),
            (None, Some(lut), _) => Voi::Lut(lut.clone()),
            (None, None, Some((c, ww))) => Voi::Window(Window::linear(c, ww)),
            (None, None, None) => {
                let per = cols * rows;
                let (a, b) = crate::dicom::series::modality_range(
                    rescale,
                    &volume.voxels()[frame * per..(frame + 1) * per],
                );
                Voi::Window(if b - a < 1.0 && b > a {
                    // Real-valued maps may span less than one unit: the exact linear
                    // function, whose width may be below 1.
                    Window {
                        center: (a + b) / 2.0,
                        width: b - a,
                        function: VoiFunction::LinearExact,
                    }
                } else {
                    Window::linear((a + b) / 2.0, (b - a).max(1.0))
                })
            }
        };
        let table = GreyPipeline {
            rescale,
            voi,
            monochrome1: built.monochrome1,
            invert: stack.inverse,
        }
        .table()
        .map_err(|e| bad("window", e.to_string()))?;
        let plane = frame_plane(volume.geometry(), frame);
        // At its own size the image maps pixel for pixel; another size is fitted.
        let vp = match params.viewport {
            None => {
                let s = volume.geometry().spacing();
                Viewport::native(plane, w, h, [s[0], s[1]])
            }
            Some(_) => {
                Viewport::fit(plane, volume.geometry(), w, h).map_err(|e| fail(e.to_string()))?
            }
        };
        render::mpr::render(
            volume,
            &table,
            &MprRequest {
                viewport: &vp,
                sampling: Sampling::Trilinear,
                slab: None,
                background: 0,
            },
        )
        .map_err(|e| fail(e.to_string()))?
    };
    match format {
        Format::Jpeg(q) => render::encode::encode_jpeg_preferred(&image, q),
        Format::Png => render::encode::encode_png(&image),
    }
    .map_err(|e| fail(e.to_string()))
}

/// Rendered answers already made, by instance file and request, within a byte cap: a
/// thumbnail strip or a report asking for the same images again gets them without a render.
#[derive(Debug)]
pub struct Answers {
    cap: u64,
    state: Mutex<AnswersState>,
}

#[derive(Debug, Default)]
struct AnswersState {
    map: HashMap<String, (Arc<[u8]>, u64)>,
    bytes: u64,
    clock: u64,
}

impl Answers {
    /// An empty store of answers holding at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            state: Mutex::new(AnswersState::default()),
        }
    }

    /// The answer kept under `key` (and marks it used).
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.clock += 1;
        let now = s.clock;
        s.map.get_mut(key).map(|(bytes, used)| {
            *used = now;
            Arc::clone(bytes)
        })
    }

    /// Keeps `bytes` under `key`, the least recently used answers making room.
    pub fn put(&self, key: String, bytes: Arc<[u8]>) {
        let len = bytes.len() as u64;
        if len > self.cap / 4 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.clock += 1;
        let now = s.clock;
        if let Some((old, _)) = s.map.insert(key, (bytes, now)) {
            s.bytes -= old.len() as u64;
        }
        s.bytes += len;
        while s.bytes > self.cap {
            let Some(oldest) = s
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = s.map.remove(&oldest) {
                s.bytes -= old.len() as u64;
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

/// What a stored file is known by in the caches: its path, size and modification time, so a
/// file stored again under the same instance UID is read again.
pub fn file_key(path: &Path) -> Result<String, RenderedError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| RenderedError::Instance(format!("{}: {e}", path.display())))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!(
        "instance:{}:{}:{modified}",
        path.display(),
        meta.len()
    ))
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

    #[test]
    fn answers_keep_the_recently_used_within_their_cap() {
        let a = Answers::new(400);
        for k in ["a", "b", "c"] {
            a.put(k.into(), vec![0u8; 100].into());
        }
        assert_eq!(a.bytes(), 300);
        // "a" is used, so "b" is the oldest when "d" and "e" need room.
        assert!(a.get("a").is_some());
        a.put("d".into(), vec![1u8; 100].into());
        a.put("e".into(), vec![2u8; 100].into());
        assert_eq!(a.bytes(), 400);
        assert!(a.get("b").is_none());
        assert!(a.get("a").is_some() && a.get("e").is_some());
        // The same key again replaces, not adds; an answer above a quarter of the cap is
        // not kept.
        a.put("e".into(), vec![3u8; 50].into());
        assert_eq!(a.bytes(), 350);
        a.put("big".into(), vec![0u8; 101].into());
        assert!(a.get("big").is_none());
    }

    #[test]
    fn a_file_written_again_has_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.dcm");
        std::fs::write(&path, b"one").unwrap();
        let first = file_key(&path).unwrap();
        assert_eq!(file_key(&path).unwrap(), first);
        std::fs::write(&path, b"other").unwrap();
        assert_ne!(file_key(&path).unwrap(), first);
        assert!(matches!(
            file_key(&dir.path().join("gone.dcm")),
            Err(RenderedError::Instance(_))
        ));
    }
}
