//! The viewer's reading tools for 2D modalities, against the real imaging binary and images
//! written by pydicom (the test data holds no mammograms and no multi-frame XA): the
//! mammography hanging (R/L CC above, R/L MLO below, mirrored from Patient Orientation so the
//! chest walls meet), DSA mask subtraction with a mask shift, a colour map for grey images,
//! and the icon toolbar with Chinese tooltips, on a desktop and a phone in Chromium.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::temp_dir;
use futures_util::{SinkExt, StreamExt};
use imaging::viewer::token::{Claims, sign};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const STUDY: &str = "1.2.826.0.1.3680043.8.498.91";

/// pydicom writes the study: four 64x48 mammograms (bright tissue in the left 16 columns,
/// where Patient Orientation puts the nipple or chest wall) and a 4-frame XA run whose frames
/// 1-3 add a dark vessel on row 20 to frame 0 (its Mask Subtraction Sequence names frame 1).
const WRITE: &str = r#"import sys, numpy as np, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
out, study = sys.argv[1], sys.argv[2]
def image(name, series, number, modality, frames, extra):
    d = Dataset()
    d.file_meta = FileMetaDataset()
    d.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    cls = "1.2.840.10008.5.1.4.1.1.1.2" if modality == "MG" else "1.2.840.10008.5.1.4.1.1.12.1"
    d.file_meta.MediaStorageSOPClassUID = cls
    uid = f"{study}.{series}.{number}"
    d.file_meta.MediaStorageSOPInstanceUID = uid
    d.SOPClassUID, d.SOPInstanceUID = cls, uid
    d.StudyInstanceUID, d.SeriesInstanceUID = study, f"{study}.{series}"
    d.Modality, d.PatientName, d.PatientID = modality, "Test^Hanging", "HANG1"
    d.SeriesNumber, d.InstanceNumber = series, number
    d.SamplesPerPixel, d.PhotometricInterpretation = 1, "MONOCHROME2"
    d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 16, 12, 11, 0
    for k, v in extra.items():
        setattr(d, k, v)
    a = np.asarray(frames, dtype=np.uint16)
    d.Rows, d.Columns = a.shape[-2], a.shape[-1]
    if a.ndim == 3:
        d.NumberOfFrames = a.shape[0]
    d.PixelData = a.tobytes()
    d.save_as(f"{out}/{name}.dcm", enforce_file_format=True)
mg = np.full((48, 64), 100, dtype=np.uint16)
mg[:, :16] = 3000
views = [("rcc", 1, "R", "CC", ["A", "L"]), ("lcc", 1, "L", "CC", ["A", "R"]),
         ("rmlo", 2, "R", "MLO", ["P", "FL"]), ("lmlo", 2, "L", "MLO", ["P", "FR"])]
for n, (name, series, side, view, orientation) in enumerate(views):
    image(name, series, n + 1, "MG", mg, {"ImageLaterality": side, "ViewPosition": view,
          "PatientOrientation": orientation, "WindowCenter": 1500, "WindowWidth": 3000})
xa = np.full((4, 32, 32), 1000, dtype=np.uint16) + np.arange(32, dtype=np.uint16)[None, None, :] * 10
xa[1:, 20, :] -= 400
mask = Dataset()
mask.MaskOperation, mask.MaskFrameNumbers = "AVG_SUB", [1]
image("xa", 3, 1, "XA", xa, {"MaskSubtractionSequence": [mask], "FrameTime": 100.0,
      "WindowCenter": 1100, "WindowWidth": 800})
"#;

/// How many frames the viewer page has drawn.
const FRAMES: &str = "+(document.getElementById('view').dataset.frames || 0)";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_study(to: &Path) {
    e2e::imaging::python(WRITE, [to.as_os_str(), STUDY.as_ref()]);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Socket) -> Result<Value, Vec<u8>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .expect("a message within two minutes")
            .expect("socket open")
            .expect("message");
        match m {
            Message::Text(t) => return Ok(serde_json::from_str(t.as_str()).expect("JSON")),
            Message::Binary(b) => return Err(b.to_vec()),
            _ => {}
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// PNG frames until each of `viewports` has one of state version `version` or later:
/// (viewport, state, pixels as RGB or grey, channels).
async fn frames(ws: &mut Socket, viewports: usize) -> Vec<(Value, Vec<u8>, usize)> {
    let mut out: Vec<Option<(Value, Vec<u8>, usize)>> = vec![None; viewports];
    let mut geometry: Vec<Value> = vec![Value::Null; viewports];
    while out.iter().any(Option::is_none) {
        match next(ws).await {
            Ok(v) if v["type"] == "geometry" => {
                let i = v["viewport"].as_u64().unwrap_or(0) as usize;
                if i < viewports {
                    geometry[i] = v;
                }
            }
            Ok(v) if v["type"] == "error" => panic!("viewer error: {v}"),
            Ok(_) => {}
            Err(b) if b[1] == 1 => {
                let i = usize::from(b[0]);
                if i < viewports && !geometry[i].is_null() {
                    let decoder = png::Decoder::new(std::io::Cursor::new(&b[16..]));
                    let mut reader = decoder.read_info().expect("PNG");
                    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
                    let info = reader.next_frame(&mut buf).expect("PNG data");
                    buf.truncate(info.buffer_size());
                    let channels = info.color_type.samples();
                    out[i] = Some((geometry[i].clone(), buf, channels));
                }
            }
            Err(_) => {}
        }
    }
    out.into_iter().flatten().collect()
}

/// The mean grey of columns `cols` of a frame `width` wide.
fn column_mean(pixels: &[u8], width: usize, channels: usize, cols: std::ops::Range<usize>) -> f64 {
    let rows = pixels.len() / width / channels;
    let mut sum = 0u64;
    for r in 0..rows {
        for c in cols.clone() {
            sum += u64::from(pixels[(r * width + c) * channels]);
        }
    }
    sum as f64 / (rows * cols.len()) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mammography_hangs_dsa_subtracts_and_grey_takes_a_colour_map() {
    let dir = temp_dir();
    let files = dir.path().join("written");
    std::fs::create_dir_all(&files).expect("folder");
    write_study(&files);
    let (mut d, port) = e2e::imaging::serve_viewer(dir.path(), [&files], 5);
    let key = e2e::test_signer();
    let token = sign(
        &Claims {
            sub: "wang".into(),
            studies: vec![STUDY.to_owned()],
            exp: now() + 600,
        },
        &key,
    );
    let url = format!("ws://127.0.0.1:{port}/view/ws?token={token}&session=hang");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("viewer socket");
    // A 128x48 canvas: each of the 2x2 viewports is 64x24, the mammograms fitted at half size.
    send(&mut ws, json!({"op": "resize", "width": 128, "height": 48})).await;
    send(&mut ws, json!({"op": "png", "on": true})).await;
    send(
        &mut ws,
        json!({"op": "open", "series": [format!("{STUDY}.1")]}),
    )
    .await;
    frames(&mut ws, 1).await;

    // The hanging: R CC, L CC, R MLO, L MLO. The tissue was stored on the left; the right
    // breast's chest wall belongs on its right edge, so a right image stored with rows running
    // anterior (R CC "A") is mirrored, and a left one stored running posterior (L MLO "P").
    send(&mut ws, json!({"op": "layout", "layout": "mammo"})).await;
    let hung = frames(&mut ws, 4).await;
    let mut bright_right = Vec::new();
    for (geometry, pixels, channels) in &hung {
        let w = geometry["width"].as_u64().unwrap_or(0) as usize;
        // The image is fitted in the middle half of its viewport's width.
        let left = column_mean(pixels, w, *channels, w / 4..w / 2);
        let right = column_mean(pixels, w, *channels, w / 2..3 * w / 4);
        assert!(
            (left - right).abs() > 60.0,
            "tissue at one side: {left} {right}"
        );
        bright_right.push(right > left);
    }
    assert_eq!(
        bright_right,
        [true, false, false, true],
        "RCC LCC RMLO LMLO"
    );

    // DSA: the run's own mask is frame 1 (0-based 0); frame 3 less the mask leaves only the
    // vessel (row 20) dark on mid grey. Shifted one pixel right, the first column has no mask
    // under it and stays "no change"; a mask frame that does not exist is named.
    let (mut xa, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/view/ws?token={token}&session=dsa"
    ))
    .await
    .expect("viewer socket");
    send(&mut xa, json!({"op": "resize", "width": 32, "height": 32})).await;
    send(&mut xa, json!({"op": "png", "on": true})).await;
    send(
        &mut xa,
        json!({"op": "open", "series": [format!("{STUDY}.3")]}),
    )
    .await;
    let first = frames(&mut xa, 1).await;
    assert_eq!(first[0].0["stack"]["mask"], 0, "{}", first[0].0);
    assert_eq!(first[0].0["stack"]["frames"], 4);
    send(&mut xa, json!({"op": "scroll", "viewport": 0, "delta": 3})).await;
    frames(&mut xa, 1).await;
    send(&mut xa, json!({"op": "subtract", "viewport": 0, "mask": 0})).await;
    let sub = frames(&mut xa, 1).await;
    let (g, pixels, channels) = &sub[0];
    assert_eq!(g["stack"]["frame"], 3, "{g}");
    let at = |r: usize, c: usize| pixels[(r * 32 + c) * channels];
    for (r, c) in [(5, 5), (10, 30), (28, 1)] {
        assert!(
            at(r, c).abs_diff(128) <= 2,
            "no change is mid grey: {}",
            at(r, c)
        );
    }
    assert!(at(20, 10) < 60, "the vessel is dark: {}", at(20, 10));
    send(
        &mut xa,
        json!({"op": "subtract", "viewport": 0, "mask": 0, "shift": [1, 0]}),
    )
    .await;
    let shifted = frames(&mut xa, 1).await;
    let (_, pixels, channels) = &shifted[0];
    let at = |r: usize, c: usize| pixels[(r * 32 + c) * channels];
    // The gradient (10 per column) now leaves 10 per pixel where the mask moved.
    assert!(at(5, 0).abs_diff(128) <= 2, "{}", at(5, 0));
    assert!(at(5, 10) > at(5, 0), "{} {}", at(5, 10), at(5, 0));
    send(&mut xa, json!({"op": "subtract", "viewport": 0, "mask": 9})).await;
    let error = loop {
        if let Ok(v) = next(&mut xa).await
            && v["type"] == "error"
        {
            break v;
        }
    };
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("mask:") && m.contains("1-4")),
        "{error}"
    );
    // A colour map: grey becomes RGB, brighter values redder then yellower.
    send(
        &mut xa,
        json!({"op": "subtract", "viewport": 0, "mask": null}),
    )
    .await;
    send(
        &mut xa,
        json!({"op": "colormap", "viewport": 0, "map": "hot"}),
    )
    .await;
    let hot = loop {
        let f = frames(&mut xa, 1).await;
        if f[0].2 == 3 {
            break f;
        }
    };
    let (_, rgb, _) = &hot[0];
    assert!(
        rgb.chunks(3).all(|p| p[0] >= p[1] && p[1] >= p[2]),
        "hot iron: red before green before blue"
    );

    // The page in Chromium: icons with Chinese tooltips; the hanging on a desktop and a phone;
    // the DSA button on the XA run.
    let browser = e2e::chromium::Browser::launch(&dir.path().join("chromium"), &[]);
    let url =
        format!("http://127.0.0.1:{port}/view?token={token}&session=page-mg&series={STUDY}.1");
    let mut page = e2e::chromium::Page::open(browser.port, &url).await;
    page.wait_for(FRAMES, |v| v.as_u64().unwrap_or(0) > 0).await;
    let tip = page
        .eval("[document.querySelector('[data-op=invert]').title, !!document.querySelector('[data-op=invert] svg')]")
        .await;
    assert_eq!(tip, json!(["反相 (I)", true]));
    page.eval("document.querySelector('[data-op=mammo]').click()")
        .await;
    page.wait_for(
        "state && state.layout === 'mammo' && geometry.filter(Boolean).length === 4 && document.querySelector('[data-op=mammo]').classList.contains('on')",
        |v| v == &json!(true),
    )
    .await;
    let flips = page.eval("state.viewports.map(v => v.flip_h)").await;
    assert_eq!(flips, json!([true, false, false, true]));
    page.screenshot("viewer-mammo-hanging-desktop.png").await;
    page.resize_and_wait(Some((390, 844)), FRAMES, 4).await;
    page.screenshot("viewer-mammo-hanging-phone-390x844.png")
        .await;

    let url =
        format!("http://127.0.0.1:{port}/view?token={token}&session=page-xa&series={STUDY}.3");
    let mut page = e2e::chromium::Page::open(browser.port, &url).await;
    page.wait_for("document.getElementById('slice').textContent", |v| {
        v.as_str().is_some_and(|s| s.contains("第 1/4 帧"))
    })
    .await;
    page.wait_for("document.querySelector('[data-op=dsa]').disabled", |v| {
        v == &json!(false)
    })
    .await;
    page.eval("document.querySelector('[data-op=dsa]').click()")
        .await;
    page.wait_for("document.getElementById('slice').textContent", |v| {
        v.as_str()
            .is_some_and(|s| s.contains("减影（蒙片第 1 帧）"))
    })
    .await;
    page.screenshot("viewer-xa-dsa-desktop.png").await;
    // The run through the hot-iron map (as NM/ECT is read), on a phone.
    page.eval("(() => { const m = document.getElementById('colormap'); m.value = 'hot'; m.dispatchEvent(new Event('change')); })()")
        .await;
    page.wait_for("state.viewports[0].colormap", |v| v == &json!("hot"))
        .await;
    page.resize_and_wait(Some((390, 844)), FRAMES, 1).await;
    page.screenshot("viewer-xa-dsa-hot-phone-390x844.png").await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
