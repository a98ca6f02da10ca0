//! The viewer page in headless Chromium, driven from Rust over the DevTools protocol: it opens
//! the 140-slice CT (the first series its token allows); dragging on the canvas changes the
//! window (the W/L readout and the canvas pixels change); a length drawn with the keyboard's
//! tool shortcut measures what the geometry says and a second page in the same session shows
//! the same window and the same measurement; a rectangle gets its region statistics; MPR shows
//! crosshairs and locating a point moves the other planes; an attachment shows with zoom;
//! control passes from one page to the other on request and grant; a desktop and a phone-size
//! (390x844) screenshot are kept as test artifacts.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::chromium::{Browser, Page};
use e2e::{Daemon, Ports, bin, temp_dir};
use imaging::viewer::token::{Claims, public_key_base64, sign};
use serde_json::json;

const CHECKSUM: &str = "(() => { const c = document.getElementById('view'); \
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
    let s = 0; for (let i = 0; i < d.length; i += 61) s = (s * 31 + d[i]) >>> 0; \
    return [s, +(c.dataset.frames || 0)]; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_page_in_chromium() {
    let dir = temp_dir();
    let series = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140");
    let import = Command::new(bin("imaging"))
        .current_dir(dir.path())
        .arg("import")
        .arg(&series)
        .output()
        .expect("imaging import");
    assert!(String::from_utf8_lossy(&import.stdout).starts_with("stored 140"));
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(["--set", "imaging.gpu=off"])
        .args([
            "--set",
            &format!("imaging.viewer_token_key={}", public_key_base64(&signer)),
        ]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    let port = ports.imaging_http;
    let s = e2e::as_service::get(port, "/dicomweb/series")
        .unwrap()
        .json();
    let study = s[0]["0020000D"]["Value"][0].as_str().unwrap().to_owned();
    let series_uid = s[0]["0020000E"]["Value"][0].as_str().unwrap().to_owned();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600;
    let token = sign(
        &Claims {
            sub: "wang".into(),
            studies: vec![study.clone()],
            exp,
        },
        &signer,
    );
    // An endoscopy picture attached to the study.
    let mut picture = Vec::new();
    jpeg_encoder::Encoder::new(&mut picture, 90)
        .encode(
            &[150u8; 120 * 80 * 3],
            120,
            80,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("jpeg");
    let uploaded = e2e::as_service::request(
        port,
        "POST",
        &format!("/dicomweb/studies/{study}/attachments?title=endoscopy"),
        &[("Content-Type", "image/jpeg")],
        &picture,
    )
    .expect("upload");
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    let attachment = uploaded.json()["id"].as_str().expect("id").to_owned();
    // The appliance's link names no series: the page opens the first its token allows.
    let url = format!("http://127.0.0.1:{port}/view?token={token}&session=page");
    let url_with_series = format!("{url}&series={series_uid}");

    let browser = Browser::launch(&dir.path().join("chromium"), &[]);
    let debug_port = browser.port;

    let mut first = Page::open(debug_port, &url).await;
    // Chinese labels first.
    let label = first
        .wait_for(
            "document.querySelector('[data-op=invert]')?.textContent",
            |v| v.as_str().is_some_and(|s| !s.is_empty()),
        )
        .await;
    assert_eq!(label, "反相");
    // The series opens and a frame is drawn.
    let before = first
        .wait_for(CHECKSUM, |v| v[1].as_u64().unwrap_or(0) > 0)
        .await;
    let wl_before = first
        .eval("document.getElementById('wl').textContent")
        .await;
    // Drag on the canvas: the window changes.
    first.drag((400.0, 300.0), (520.0, 360.0)).await;
    first
        .wait_for("document.getElementById('wl').textContent", |v| {
            v != &wl_before && v.as_str().is_some_and(|s| s.contains("窗宽"))
        })
        .await;
    first.wait_for(CHECKSUM, |v| v[0] != before[0]).await;
    // The window the drag ended on (operations sent while dragging may still be arriving).
    let mut wl_after = first
        .eval("document.getElementById('wl').textContent")
        .await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = first
            .eval("document.getElementById('wl').textContent")
            .await;
        if now == wl_after {
            break;
        }
        wl_after = now;
    }

    // "l" picks the length tool; a 200-pixel line measures 200 pixels of the frame's geometry.
    first.key("l").await;
    first.drag((300.0, 350.0), (500.0, 350.0)).await;
    let note = first
        .wait_for("document.querySelector('#notes .note')?.textContent", |v| {
            v.as_str()
                .is_some_and(|s| s.contains("长度") && s.contains("mm"))
        })
        .await;
    let note = note.as_str().unwrap_or_default().to_owned();
    let measured: f64 = note
        .split(": ")
        .nth(1)
        .and_then(|v| v.trim_end_matches(" mm").parse().ok())
        .expect("a length in mm");
    // The scale of the settled, full-size frame (frames drawn while the view changes may be
    // smaller, each with its own geometry).
    let pixel_mm = first
        .wait_for(
            "geometry[0].width === canvas.width ? geometry[0].pixel_mm : null",
            |v| v.is_f64(),
        )
        .await
        .as_f64()
        .unwrap();
    assert!(
        (measured - 200.0 * pixel_mm).abs() < 0.5,
        "{note} vs 200 px of {pixel_mm} mm"
    );
    assert!(
        first
            .eval("+document.getElementById('view').dataset.scalebar")
            .await
            .as_f64()
            > Some(0.0),
        "a scale bar"
    );
    // A second page in the same session shows the same window and the same measurement; at
    // phone size.
    let mut second = Page::open(debug_port, &url_with_series).await;
    second
        .call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
        )
        .await;
    second
        .wait_for("document.getElementById('wl').textContent", |v| {
            v == &wl_after
        })
        .await;
    second
        .wait_for("document.querySelector('#notes .note')?.textContent", |v| {
            v.as_str() == Some(note.as_str())
        })
        .await;
    second
        .wait_for(CHECKSUM, |v| v[1].as_u64().unwrap_or(0) > 0)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.screenshot("viewer-phone-390x844.png").await;

    // "b": a rectangle gets its region statistics.
    first.call("Page.bringToFront", json!({})).await;
    first.key("b").await;
    first.drag((350.0, 300.0), (450.0, 380.0)).await;
    first
        .wait_for(
            "[...document.querySelectorAll('#notes .note')].map(n => n.textContent).join('|')",
            |v| {
                v.as_str()
                    .is_some_and(|s| s.contains("矩形") && s.contains("均值") && s.contains("mm²"))
            },
        )
        .await;

    // MPR: crosshairs in each viewport; "c" and a click off-centre in the axial view move the
    // coronal and sagittal planes there.
    first
        .eval("document.querySelector('[data-op=mpr]').click()")
        .await;
    first
        .wait_for(
            "geometry.length === 3 && geometry.every(g => g && g.crosshairs.length === 2)",
            |v| v == &json!(true),
        )
        .await;
    first.key("c").await;
    let cell = first
        .eval("(() => { const r = document.getElementById('view').getBoundingClientRect(); return [r.left, r.top, r.width / 3, r.height]; })()")
        .await;
    let [left, top, w, h] = [0, 1, 2, 3].map(|i| cell[i].as_f64().unwrap());
    first
        .mouse("mousePressed", left + w * 0.3, top + h * 0.4)
        .await;
    first
        .mouse("mouseReleased", left + w * 0.3, top + h * 0.4)
        .await;
    first
        .wait_for(
            "state.viewports[1].slice !== 0 && state.viewports[2].slice !== 0",
            |v| v == &json!(true),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Orientation markers (top, right, bottom, left) as a radiologist reads them: axial A/L/P/R,
    // coronal H/L/F/R, sagittal H/P/F/A.
    let markers = first
        .wait_for(
            "JSON.parse(document.getElementById('view').dataset.markers || '[]')",
            |v| v.as_array().is_some_and(|a| a.len() == 3),
        )
        .await;
    assert_eq!(
        markers,
        json!([
            ["A", "L", "P", "R"],
            ["H", "L", "F", "R"],
            ["H", "P", "F", "A"]
        ])
    );
    first.screenshot("viewer-mpr-1280x800.png").await;

    // The attachment: rendered by the server for the page, zoomed with the wheel.
    first
        .eval(&format!(
            "(() => {{ const s = document.getElementById('attachments'); s.value = '{attachment}'; \
             s.dispatchEvent(new Event('change')); }})()"
        ))
        .await;
    first
        .wait_for("(() => { const a = document.getElementById('att'); return a.complete && a.naturalWidth; })()", |v| {
            v.as_u64().unwrap_or(0) > 0
        })
        .await;
    first
        .call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseWheel", "x": 400, "y": 400, "deltaX": 0, "deltaY": -100}),
        )
        .await;
    first
        .wait_for("document.getElementById('att').src", |v| {
            v.as_str().is_some_and(|s| s.contains("zoom=1.200"))
        })
        .await;

    // Control handed over from page to page: the phone asks, the desktop hands over, and the
    // phone's preset reaches the desktop.
    second.call("Page.bringToFront", json!({})).await;
    second
        .eval("document.querySelector('[data-op=request]').click()")
        .await;
    first.call("Page.bringToFront", json!({})).await;
    first
        .wait_for(
            "document.querySelector('[data-op=grant]').style.display",
            |v| v == "",
        )
        .await;
    let wl_before_handover = first
        .eval("document.getElementById('wl').textContent")
        .await;
    first
        .eval("document.querySelector('[data-op=grant]').click()")
        .await;
    second.call("Page.bringToFront", json!({})).await;
    second
        .wait_for("controller === me", |v| v == &json!(true))
        .await;
    second
        .eval("(() => { const s = document.getElementById('preset'); s.value = 'bone'; s.dispatchEvent(new Event('change')); })()")
        .await;
    first
        .wait_for("document.getElementById('wl').textContent", |v| {
            v != &wl_before_handover
        })
        .await;

    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
