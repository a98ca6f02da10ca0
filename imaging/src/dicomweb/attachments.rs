//! Non-DICOM images attached to a study (ultrasound captures, endoscopy, pathology photos):
//! JPEG, PNG or TIFF, checked by decoding, kept under `DATA_DIR/attachments/<study>/` with a
//! small JSON description beside each, and shown like everything else here: rendered on the
//! server for the client's canvas, with zoom and pan, never sent as the original file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use render::Frame;
use render::stack::ColourStack;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The largest attachment accepted.
pub const MAX_BYTES: usize = 64 << 20;
/// The largest side accepted, pixels.
pub const MAX_SIDE: u32 = 16_384;

/// What is kept about an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its id (from its content's hash).
    pub id: String,
    /// "image/jpeg", "image/png" or "image/tiff".
    pub mime: String,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// What it shows.
    pub title: String,
}

/// Decodes an image to 8-bit RGB: (width, height, pixels).
pub fn decode(mime: &str, bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    if bytes.len() > MAX_BYTES {
        return Err(format!("larger than {} MiB", MAX_BYTES >> 20));
    }
    let (w, h, rgb) = match mime {
        "image/png" => {
            let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            decoder.set_transformations(png::Transformations::normalize_to_color8());
            let mut reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
            let (w, h) = (reader.info().width, reader.info().height);
            check_size(w, h)?;
            let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG: too large")?];
            let info = reader
                .next_frame(&mut buf)
                .map_err(|e| format!("PNG: {e}"))?;
            buf.truncate(info.buffer_size());
            let rgb = match info.color_type {
                png::ColorType::Rgb => buf,
                png::ColorType::Rgba => buf
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
                png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
                png::ColorType::GrayscaleAlpha => buf
                    .chunks_exact(2)
                    .flat_map(|p| [p[0], p[0], p[0]])
                    .collect(),
                other => return Err(format!("PNG: colour type {other:?}")),
            };
            (w, h, rgb)
        }
        "image/jpeg" => {
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            let pixels = decoder.decode().map_err(|e| format!("JPEG: {e}"))?;
            let info = decoder.info().ok_or("JPEG: no frame")?;
            let (w, h) = (u32::from(info.width), u32::from(info.height));
            check_size(w, h)?;
            let rgb = match info.pixel_format {
                jpeg_decoder::PixelFormat::RGB24 => pixels,
                jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&g| [g, g, g]).collect(),
                other => return Err(format!("JPEG: pixel format {other:?}")),
            };
            (w, h, rgb)
        }
        "image/tiff" => {
            use tiff::decoder::{Decoder, DecodingResult};
            let mut decoder =
                Decoder::new(std::io::Cursor::new(bytes)).map_err(|e| format!("TIFF: {e}"))?;
            let (w, h) = decoder.dimensions().map_err(|e| format!("TIFF: {e}"))?;
            check_size(w, h)?;
            let colour = decoder.colortype().map_err(|e| format!("TIFF: {e}"))?;
            let DecodingResult::U8(buf) = decoder.read_image().map_err(|e| format!("TIFF: {e}"))?
            else {
                return Err("TIFF: 8-bit samples only".into());
            };
            let rgb = match colour {
                tiff::ColorType::RGB(8) => buf,
                tiff::ColorType::RGBA(8) => buf
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
                tiff::ColorType::Gray(8) => buf.iter().flat_map(|&g| [g, g, g]).collect(),
                other => return Err(format!("TIFF: colour type {other:?}")),
            };
            (w, h, rgb)
        }
        other => return Err(format!("{other:?}: JPEG, PNG or TIFF only")),
    };
    if rgb.len() != w as usize * h as usize * 3 {
        return Err("the image's data does not match its size".into());
    }
    Ok((w, h, rgb))
}

fn check_size(w: u32, h: u32) -> Result<(), String> {
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("{w}x{h}: each side must be 1-{MAX_SIDE}"));
    }
    Ok(())
}

#[derive(Debug)]
struct Attachments {
    root: PathBuf,
}

/// The routes, keeping files under `data_dir/attachments`.
pub fn routes(data_dir: &Path) -> Router {
    let a = Arc::new(Attachments {
        root: data_dir.join("attachments"),
    });
    Router::new()
        .route(
            "/dicomweb/studies/{study}/attachments",
            get(list).post(upload),
        )
        .route(
            "/dicomweb/studies/{study}/attachments/{id}/rendered",
            get(rendered),
        )
        .with_state(a)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn valid_study(uid: &str) -> bool {
    crate::uid::is_valid(uid)
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    title: String,
}

async fn upload(
    State(a): State<Arc<Attachments>>,
    UrlPath(study): UrlPath<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    if !valid_study(&study) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("{study:?} is not a Study Instance UID"),
        );
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    if !matches!(mime.as_str(), "image/png" | "image/jpeg" | "image/tiff") {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{mime:?}: JPEG, PNG or TIFF only"),
        );
    }
    let body = bytes.clone();
    let checked = {
        let mime = mime.clone();
        tokio::task::spawn_blocking(move || decode(&mime, &body)).await
    };
    let (width, height) = match checked {
        Ok(Ok((w, h, _))) => (w, h),
        Ok(Err(why)) => return problem(StatusCode::UNPROCESSABLE_ENTITY, why),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    use std::hash::{Hash, Hasher};
    // The id names the content (the same image uploaded twice is kept once).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    mime.hash(&mut h);
    let id = format!("{:016x}{:08x}", h.finish(), bytes.len());
    let title: String = q.title.trim().chars().take(200).collect();
    let dir = a.root.join(&study);
    let description = Attachment {
        id: id.clone(),
        mime,
        width,
        height,
        title,
    };
    let write = {
        let dir = dir.clone();
        let id = id.clone();
        let json = serde_json::to_vec(&description).unwrap_or_default();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            for (name, data) in [
                (format!("{id}.img"), &bytes[..]),
                (format!("{id}.json"), &json[..]),
            ] {
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, data)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, dir.join(name))?;
            }
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
    };
    match write {
        Ok(Ok(())) => (StatusCode::CREATED, Json(description)).into_response(),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list(State(a): State<Arc<Attachments>>, UrlPath(study): UrlPath<String>) -> Response {
    if !valid_study(&study) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("{study:?} is not a Study Instance UID"),
        );
    }
    let dir = a.root.join(&study);
    let mut items: Vec<Attachment> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    items.sort_by(|x, y| x.id.cmp(&y.id));
    Json(json!({ "items": items })).into_response()
}

#[derive(Deserialize)]
struct RenderQuery {
    /// "W,H" of the canvas.
    viewport: Option<String>,
    /// Magnification (1 fits the canvas).
    zoom: Option<f64>,
    /// "X,Y": displacement in canvas pixels at zoom 1.
    pan: Option<String>,
    /// JPEG quality 1-100.
    quality: Option<u8>,
}

fn pair<T: std::str::FromStr>(s: &str) -> Option<(T, T)> {
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

async fn rendered(
    State(a): State<Arc<Attachments>>,
    UrlPath((study, id)): UrlPath<(String, String)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Response {
    if !valid_study(&study) || id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return problem(StatusCode::NOT_FOUND, "no such attachment");
    }
    let dir = a.root.join(&study);
    let Ok(description) = std::fs::read(dir.join(format!("{id}.json")))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<Attachment>(&b).map_err(|e| e.to_string()))
    else {
        return problem(StatusCode::NOT_FOUND, "no such attachment");
    };
    let (w, h) = match q.viewport.as_deref().map(pair::<u32>) {
        None => (description.width.min(2048), description.height.min(2048)),
        Some(Some((w, h))) if (1..=4096).contains(&w) && (1..=4096).contains(&h) => (w, h),
        Some(_) => return problem(StatusCode::BAD_REQUEST, "viewport: W,H, each 1-4096"),
    };
    let zoom = q.zoom.unwrap_or(1.0);
    if !(zoom.is_finite() && (0.05..=64.0).contains(&zoom)) {
        return problem(StatusCode::BAD_REQUEST, "zoom: 0.05-64");
    }
    let pan = match q.pan.as_deref().map(pair::<f64>) {
        None => (0.0, 0.0),
        Some(Some((x, y))) if x.is_finite() && y.is_finite() => (x, y),
        Some(_) => return problem(StatusCode::BAD_REQUEST, "pan: X,Y in canvas pixels"),
    };
    let quality = q.quality.unwrap_or(90);
    if !(1..=100).contains(&quality) {
        return problem(StatusCode::BAD_REQUEST, "quality: 1-100");
    }
    let png = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("image/png") && !v.contains("image/jpeg"));
    let path = dir.join(format!("{id}.img"));
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        let (iw, ih, rgb) = decode(&description.mime, &bytes)?;
        let stack = ColourStack::new(iw as usize, ih as usize, [1.0, 1.0], vec![rgb.into()])
            .map_err(|e| e.to_string())?;
        let mut vp = stack.fit(w, h);
        vp.zoom = zoom;
        // Canvas pixels at zoom 1 to mm (one image pixel is 1 mm here).
        vp.pan = [pan.0 * vp.spacing[0], pan.1 * vp.spacing[1]];
        let frame: Frame = stack.render(0, &vp, [0, 0, 0]).map_err(|e| e.to_string())?;
        if png {
            render::encode::encode_png(&frame).map_err(|e| e.to_string())
        } else {
            render::encode::encode_jpeg_preferred(&frame, quality).map_err(|e| e.to_string())
        }
    })
    .await;
    match out {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                if png { "image/png" } else { "image/jpeg" },
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => problem(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
