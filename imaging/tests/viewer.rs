//! The viewer WebSocket with a Rust client (tokio-tungstenite) against the real imaging binary
//! holding the 140-slice CT: a signed token opens a session and frames come back for the
//! client's canvas; 1000 operations sent at once give far fewer frames and the last one shows
//! the last state; malformed operations get an error and the session goes on; a second client
//! in the same session sees the first one's window and the annotation it draws; a bad, foreign
//! or expired token is refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::{Daemon, Ports, bin, temp_dir};
use futures_util::{SinkExt, StreamExt};
use imaging::viewer::token::{Claims, public_key_base64, sign};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn connect(port: u16, token: &str, session: &str) -> Result<Socket, String> {
    let url = format!("ws://127.0.0.1:{port}/view/ws?token={token}&session={session}");
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// The next JSON message of `kind`, skipping frames and other messages.
async fn next_json(ws: &mut Socket, kind: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message within a minute")
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// The next state message at `version`.
async fn state_at(ws: &mut Socket, version: u64) -> Value {
    loop {
        let s = next_json(ws, "state").await;
        if s["state"]["version"] == version {
            return s;
        }
    }
}

/// (viewport, png, quality, version, width, height, image bytes) of a binary frame.
fn frame(b: &[u8]) -> (u8, bool, u8, u64, u16, u16, &[u8]) {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[4..12]);
    let version = u64::from_le_bytes(v);
    let w = u16::from_le_bytes([b[12], b[13]]);
    let h = u16::from_le_bytes([b[14], b[15]]);
    (b[0], b[1] == 1, b[2], version, w, h, &b[16..])
}

/// Frames until one at full quality of `version` arrives: (frames seen, that frame's bytes).
async fn frames_until_final(ws: &mut Socket, version: u64) -> (usize, Vec<u8>) {
    let mut seen = 0;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .expect("a frame within two minutes")
            .expect("socket open")
            .expect("message");
        if let Message::Binary(b) = m {
            seen += 1;
            let (_, _, quality, v, ..) = frame(&b);
            if v == version && quality == 95 {
                return (seen, b.to_vec());
            }
        }
    }
}

/// Imports the 140-slice CT into `dir` and starts imaging on it, with `signer`'s public key as
/// the viewer key and `extra` settings: the daemon and its HTTP port.
fn ct_viewer(dir: &Path, signer: &ed25519_dalek::SigningKey, extra: &[&str]) -> (Daemon, u16) {
    let series = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140");
    let import = Command::new(bin("imaging"))
        .current_dir(dir)
        .arg("import")
        .arg(&series)
        .output()
        .expect("imaging import");
    // (Exit status 3: the series folder's DIRFILE is not an instance.)
    assert!(
        String::from_utf8_lossy(&import.stdout).starts_with("stored 140"),
        "{}",
        String::from_utf8_lossy(&import.stdout)
    );
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir)
        .args(ports.args())
        .args(["--set", "imaging.gpu=off"])
        .args([
            "--set",
            &format!("imaging.viewer_token_key={}", public_key_base64(signer)),
        ])
        .args(extra);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    (d, ports.imaging_http)
}

/// The stored CT's study and series UIDs, from QIDO.
fn stored_ct(port: u16) -> (String, String) {
    let all = e2e::as_service::get(port, "/dicomweb/series")
        .expect("QIDO")
        .json();
    let uid = |tag: &str| all[0][tag]["Value"][0].as_str().expect("a UID").to_owned();
    (uid("0020000D"), uid("0020000E"))
}

/// A viewer token for `who` to see `study` for ten minutes.
fn token_for(signer: &ed25519_dalek::SigningKey, who: &str, study: &str) -> String {
    sign(
        &Claims {
            sub: who.into(),
            studies: vec![study.to_owned()],
            exp: now() + 600,
        },
        signer,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_frames_coalescing_coviewing_and_tokens() {
    let dir = temp_dir();
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let (mut d, port) = ct_viewer(dir.path(), &signer, &[]);
    let (study, series_uid) = stored_ct(port);

    let token = |studies: Vec<String>, exp: u64| {
        sign(
            &Claims {
                sub: "wang".into(),
                studies,
                exp,
            },
            &signer,
        )
    };
    let good = token(vec![study.clone()], now() + 600);

    // Refused: expired, signed by another key, not a token.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let foreign = sign(
        &Claims {
            sub: "x".into(),
            studies: vec![study.clone()],
            exp: now() + 600,
        },
        &stranger,
    );
    for bad in [
        token(vec![study.clone()], now() - 1),
        foreign,
        "nonsense".into(),
    ] {
        let e = connect(port, &bad, "s1").await.unwrap_err();
        assert!(e.contains("401"), "{e}");
    }

    let mut a = connect(port, &good, "s1").await.expect("connect");
    let hello = next_json(&mut a, "hello").await;
    assert_eq!(
        hello["controller"], hello["client"],
        "the first client controls"
    );
    a.send(Message::text(r#"{"op":"resize","width":256,"height":200}"#))
        .await
        .unwrap();
    a.send(Message::text(
        json!({"op": "open", "series": [series_uid]}).to_string(),
    ))
    .await
    .unwrap();
    let state = state_at(&mut a, 1).await;
    assert_eq!(state["state"]["series"][0], series_uid.as_str());
    // Cold: first the middle slice from its own file (marked preview), then the built
    // volume's middle axial slice, within a slice of it.
    let preview = next_json(&mut a, "geometry").await;
    assert_eq!(preview["preview"], true, "{preview}");
    let built = next_json(&mut a, "geometry").await;
    assert!(built.get("preview").is_none(), "{built}");
    let position = |g: &Value| {
        (0..3)
            .map(|k| g["origin"][k].as_f64().unwrap() * g["normal"][k].as_f64().unwrap())
            .sum::<f64>()
    };
    let step = built["step"].as_f64().unwrap();
    assert!(
        (position(&preview) - position(&built)).abs() <= step,
        "preview at {} mm, volume at {} mm",
        position(&preview),
        position(&built)
    );
    let (_, first) = frames_until_final(&mut a, 1).await;
    let (viewport, png, _, _, w, h, image) = frame(&first);
    assert_eq!((viewport, png, w, h), (0, false, 256, 200));
    assert_eq!(&image[..2], &[0xFF, 0xD8], "a JPEG");

    // 1000 operations at once: far fewer frames, the last shows the last state.
    for _ in 0..1000 {
        a.feed(Message::text(r#"{"op":"scroll","viewport":0,"delta":1}"#))
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    let (frames, last) = frames_until_final(&mut a, 1001).await;
    assert!(frames < 200, "{frames} frames for 1000 operations");
    assert_eq!(frame(&last).3, 1001);

    // Malformed operations: an error message, and the session goes on.
    for junk in [
        "{",
        r#"{"op":"zoom","viewport":0,"factor":-2}"#,
        r#"{"op":"open","series":["1.2.3"]}"#,
    ] {
        a.send(Message::text(junk)).await.unwrap();
        let e = next_json(&mut a, "error").await;
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{junk}"
        );
    }

    // A second client in the same session: the same state; the first one's window and the
    // second one's annotation reach both.
    let mut b = connect(port, &good, "s1").await.expect("second client");
    let b_id = next_json(&mut b, "hello").await["client"].clone();
    let joined = next_json(&mut b, "state").await;
    assert_eq!(
        joined["state"]["version"], 1001,
        "a late joiner gets the state"
    );
    a.send(Message::text(
        r#"{"op":"window","viewport":0,"center":-600,"width":1500}"#,
    ))
    .await
    .unwrap();
    let seen = state_at(&mut b, 1002).await;
    assert_eq!(
        seen["state"]["viewports"][0]["window"],
        json!([-600.0, 1500.0])
    );
    b.send(Message::text(
        r#"{"op":"annotate","kind":"length","points":[[0,0,0],[30,40,0]]}"#,
    ))
    .await
    .unwrap();
    let annotated = state_at(&mut a, 1003).await;
    assert_eq!(annotated["state"]["annotations"]["1"]["kind"], "length");
    assert_eq!(
        annotated["state"]["annotations"]["1"]["value"], 50.0,
        "the same measurement value for both"
    );
    // Both clients have the same canvas: each frame of the shared state was rendered once and
    // sent twice (the first client's frames before the second joined were its own).
    b.send(Message::text(r#"{"op":"resize","width":256,"height":200}"#))
        .await
        .unwrap();
    a.send(Message::text(r#"{"op":"invert","viewport":0}"#))
        .await
        .unwrap();
    frames_until_final(&mut a, 1004).await;
    frames_until_final(&mut b, 1004).await;
    let metrics = e2e::get(port, "/metrics").unwrap().body;
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (rendered, sent) = (
        counter("viewer_renders_total"),
        counter("viewer_frames_total"),
    );
    assert!(rendered < sent, "{rendered} renders for {sent} frames sent");

    // Cine, paced by the server: new states and frames keep coming without operations.
    a.send(Message::text(r#"{"op":"cine","viewport":0,"fps":20}"#))
        .await
        .unwrap();
    let mut versions = std::collections::BTreeSet::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        if let Ok(Some(Ok(Message::Binary(b)))) = tokio::time::timeout_at(until, a.next()).await {
            versions.insert(frame(&b).3);
        }
    }
    assert!(versions.len() >= 10, "cine frames: {versions:?}");
    a.send(Message::text(r#"{"op":"cine","viewport":0,"fps":0}"#))
        .await
        .unwrap();

    // Only the controller changes the view.
    b.send(Message::text(r#"{"op":"scroll","viewport":0,"delta":1}"#))
        .await
        .unwrap();
    let refused = next_json(&mut b, "error").await;
    assert!(refused["message"].as_str().unwrap().contains("control"));

    // The controller's connection drops; it comes back within the grace period as the same
    // participant, still in control, with the state as it was.
    let a_id = hello["client"].as_u64().expect("client id");
    let version_before = annotated["state"]["version"].as_u64().unwrap_or(0);
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("ws://127.0.0.1:{port}/view/ws?token={good}&session=s1&resume={a_id}");
    let (mut a, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("reconnect");
    let back = next_json(&mut a, "hello").await;
    assert_eq!(back["resumed"], true, "{back}");
    assert_eq!(back["client"], a_id);
    assert_eq!(back["controller"], a_id, "control kept across the drop");
    let state = next_json(&mut a, "state").await;
    assert!(state["state"]["version"].as_u64().unwrap_or(0) >= version_before);
    a.send(Message::text(r#"{"op":"zoom","viewport":0,"factor":1.5}"#))
        .await
        .unwrap();
    let zoomed = loop {
        let s = next_json(&mut a, "state").await;
        if s["state"]["viewports"][0]["zoom"] == 1.5 {
            break s;
        }
    };
    assert!(zoomed["state"]["version"].as_u64().unwrap_or(0) > version_before);
    // Resuming someone else's id, or an id that never was, starts a new participant.
    let url = format!("ws://127.0.0.1:{port}/view/ws?token={good}&session=s1&resume=999");
    let (mut stranger, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let fresh = next_json(&mut stranger, "hello").await;
    assert_eq!(fresh["resumed"], false);
    assert_ne!(fresh["client"], 999);
    drop(stranger);

    // Control is handed over on request and grant, and everyone hears of it.
    a.send(Message::text(r#"{"op":"grant_control"}"#))
        .await
        .unwrap();
    let nobody = next_json(&mut a, "error").await;
    assert!(
        nobody["message"].as_str().unwrap().contains("nobody asked"),
        "{nobody}"
    );
    b.send(Message::text(r#"{"op":"request_control"}"#))
        .await
        .unwrap();
    let asked = next_json(&mut a, "control").await;
    assert_eq!(
        (&asked["controller"], &asked["requested_by"]),
        (&json!(a_id), &b_id)
    );
    b.send(Message::text(r#"{"op":"grant_control"}"#))
        .await
        .unwrap();
    let not_yours = next_json(&mut b, "error").await;
    assert!(
        not_yours["message"].as_str().unwrap().contains("control"),
        "{not_yours}"
    );
    a.send(Message::text(r#"{"op":"grant_control"}"#))
        .await
        .unwrap();
    loop {
        let c = next_json(&mut b, "control").await;
        if c["controller"] == b_id {
            assert_eq!(c["requested_by"], Value::Null);
            break;
        }
    }
    let handed = next_json(&mut a, "control").await;
    assert_eq!(handed["controller"], b_id);
    b.send(Message::text(r#"{"op":"zoom","viewport":0,"factor":2}"#))
        .await
        .unwrap();
    loop {
        let s = next_json(&mut b, "state").await;
        if s["state"]["viewports"][0]["zoom"] == 3.0 {
            break;
        }
    }
    a.send(Message::text(r#"{"op":"zoom","viewport":0,"factor":2}"#))
        .await
        .unwrap();
    let refused = next_json(&mut a, "error").await;
    assert!(
        refused["message"].as_str().unwrap().contains("control"),
        "{refused}"
    );

    // A token for another study cannot open this series.
    let mut c = connect(port, &token(vec!["1.2.3".into()], now() + 600), "s2")
        .await
        .expect("third client");
    c.send(Message::text(
        json!({"op": "open", "series": [series_uid]}).to_string(),
    ))
    .await
    .unwrap();
    let denied = next_json(&mut c, "error").await;
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("not in this token")
    );

    drop((a, b, c));
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

/// The imaging process's resident memory, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The `viewer_sessions` gauge from `/metrics`.
fn sessions_gauge(port: u16) -> f64 {
    let m = e2e::get(port, "/metrics").expect("metrics");
    m.body
        .lines()
        .find_map(|l| l.strip_prefix("viewer_sessions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A client that sends thousands of operations and reads nothing does not make the server
/// queue frames for it (memory stays flat; it gets the latest frame when it reads again); and
/// a session everybody left is forgotten once the grace period (here 1 s) has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_no_memory_and_empty_sessions_are_forgotten() {
    let dir = temp_dir();
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let (mut d, port) = ct_viewer(
        dir.path(),
        &signer,
        &["--set", "imaging.viewer_grace_secs=1"],
    );
    let (study, series_uid) = stored_ct(port);
    let token = token_for(&signer, "li", &study);
    let mut a = connect(port, &token, "quiet").await.expect("connect");
    next_json(&mut a, "hello").await;
    a.send(Message::text(r#"{"op":"resize","width":512,"height":512}"#))
        .await
        .unwrap();
    a.send(Message::text(
        json!({"op": "open", "series": [series_uid]}).to_string(),
    ))
    .await
    .unwrap();
    state_at(&mut a, 1).await;
    frames_until_final(&mut a, 1).await;
    assert_eq!(sessions_gauge(port), 1.0);
    let before = rss(d.pid());
    // 3000 operations, each a new state and so a new frame; nothing is read for 3 s.
    for i in 0..3000 {
        let op = if i % 2 == 0 {
            r#"{"op":"scroll","viewport":0,"delta":1}"#
        } else {
            r#"{"op":"window","viewport":0,"center":40,"width":400}"#
        };
        a.feed(Message::text(op)).await.unwrap();
    }
    a.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss(d.pid());
    let grown = after.saturating_sub(before);
    println!(
        "imaging RSS {} MB before, {} MB after 3000 unread states",
        before >> 20,
        after >> 20
    );
    // 3000 frames of a 512x512 JPEG would be about 90 MB if they queued.
    assert!(grown < 24 << 20, "memory grew by {} MB", grown >> 20);
    // Reading again: the session is alive and ends at the last state.
    let last = state_at(&mut a, 3001).await;
    assert_eq!(last["state"]["version"], 3001);
    drop(a);
    // Everybody left: after the grace period the session is forgotten.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sessions_gauge(port) != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session was not forgotten"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// The full-quality frames of `version`, by viewport, once `count` viewports have one.
async fn final_frames(ws: &mut Socket, version: u64, count: usize) -> Vec<Vec<u8>> {
    let mut got: Vec<Option<Vec<u8>>> = vec![None; count];
    while got.iter().any(Option::is_none) {
        let m = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .expect("a frame within two minutes")
            .expect("socket open")
            .expect("message");
        if let Message::Binary(b) = m {
            let (viewport, _, quality, v, _, _, image) = frame(&b);
            if v == version && quality == 95 && usize::from(viewport) < count {
                got[usize::from(viewport)] = Some(image.to_vec());
            }
        }
    }
    got.into_iter().flatten().collect()
}

/// Series compare: the second viewport follows the first one's patient position (here the
/// same CT opened twice, as for comparing two windows: it shows exactly the first one's slice),
/// and stops following when synchronisation is turned off. The mapping between series of
/// different spacing is `view::synced_slice`, tested on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_compare_scrolls_together_by_patient_position() {
    let dir = temp_dir();
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    // (Only the controller annotates here: checked at the end.)
    let (mut d, port) = ct_viewer(
        dir.path(),
        &signer,
        &["--set", "imaging.viewer_open_annotations=false"],
    );
    let (study, series) = stored_ct(port);
    let token = token_for(&signer, "zhao", &study);
    let mut a = connect(port, &token, "compare").await.expect("connect");
    next_json(&mut a, "hello").await;
    a.send(Message::text(r#"{"op":"resize","width":128,"height":128}"#))
        .await
        .unwrap();
    a.send(Message::text(
        json!({"op": "open", "series": [series, series]}).to_string(),
    ))
    .await
    .unwrap();
    let opened = state_at(&mut a, 1).await;
    assert_eq!(opened["state"]["sync"], true);
    let v1 = final_frames(&mut a, 1, 2).await;
    assert_eq!(v1[0], v1[1]);
    // Scrolling the second viewport moves the first; the second follows.
    a.send(Message::text(r#"{"op":"scroll","viewport":1,"delta":30}"#))
        .await
        .unwrap();
    let v2 = final_frames(&mut a, 2, 2).await;
    assert_ne!(v1[0], v2[0], "the first viewport scrolled");
    assert_eq!(v2[0], v2[1], "the second follows the first's position");
    a.send(Message::text(r#"{"op":"sync","on":false}"#))
        .await
        .unwrap();
    let v3 = final_frames(&mut a, 3, 2).await;
    a.send(Message::text(r#"{"op":"scroll","viewport":0,"delta":30}"#))
        .await
        .unwrap();
    let v4 = final_frames(&mut a, 4, 2).await;
    assert_ne!(v3[0], v4[0]);
    assert_eq!(v3[1], v4[1], "not synchronised: the second stays");
    // With open annotations off, a co-viewer who is not in control cannot draw.
    let mut b = connect(port, &token, "compare").await.expect("connect");
    next_json(&mut b, "hello").await;
    b.send(Message::text(
        r#"{"op":"annotate","kind":"length","points":[[0,0,0],[10,0,0]]}"#,
    ))
    .await
    .unwrap();
    let refused = next_json(&mut b, "error").await;
    assert!(
        refused["message"].as_str().unwrap().contains("control"),
        "{refused}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// pydicom's reading of the CT slice at `z` (mm): its position's x and y, the pixel spacing
/// (row, column), and over rows `r0..=r1` and columns `c0..=c1` the HU count, mean, SD, min and
/// max, and the HU at (`r0`, `c0`).
fn pydicom_region(z: f64, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) -> Vec<f64> {
    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"import sys, os, pydicom
z, r0, r1, c0, c1 = float(sys.argv[2]), *map(int, sys.argv[3:7])
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        d = pydicom.dcmread(os.path.join(root, f), force=True)
        if 'ImagePositionPatient' not in d or abs(float(d.ImagePositionPatient[2]) - z) > 0.01:
            continue
        hu = d.pixel_array.astype('float64') * float(d.RescaleSlope) + float(d.RescaleIntercept)
        r = hu[r0:r1 + 1, c0:c1 + 1]
        print(float(d.ImagePositionPatient[0]), float(d.ImagePositionPatient[1]),
              float(d.PixelSpacing[0]), float(d.PixelSpacing[1]),
              r.size, r.mean(), r.std(), r.min(), r.max(), hu[r0, c0])
"#;
    let series = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140");
    let out = Command::new(python)
        .args(["-c", script])
        .arg(series)
        .args([z.to_string(), r0.to_string(), r1.to_string()])
        .args([c0.to_string(), c1.to_string()])
        .output()
        .expect("python3 (scripts/test installs pydicom)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), 10, "one slice at z {z}");
    v
}

/// The next `geometry` message for `viewport` at `version`.
async fn geometry_at(ws: &mut Socket, viewport: u64, version: u64) -> Value {
    loop {
        let g = next_json(ws, "geometry").await;
        if g["viewport"] == viewport && g["version"] == version {
            return g;
        }
    }
}

fn v3(v: &Value) -> [f64; 3] {
    [0, 1, 2].map(|i| v[i].as_f64().unwrap_or(f64::NAN))
}

/// Each frame comes with its geometry (canvas <-> patient), which lands where the DICOM tags
/// say; regions, probes and edits are measured from the voxels and agree with pydicom's pixels;
/// the MPR layout's viewports carry crosshairs where the other planes cut them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geometry_region_statistics_and_crosshairs() {
    let dir = temp_dir();
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let (mut d, port) = ct_viewer(dir.path(), &signer, &[]);
    let (study, series) = stored_ct(port);
    let token = token_for(&signer, "li", &study);
    let mut a = connect(port, &token, "measure").await.expect("connect");
    next_json(&mut a, "hello").await;
    a.send(Message::text(r#"{"op":"resize","width":512,"height":400}"#))
        .await
        .unwrap();
    a.send(Message::text(
        json!({"op": "open", "series": [series]}).to_string(),
    ))
    .await
    .unwrap();
    let g = geometry_at(&mut a, 0, 1).await;
    assert_eq!(
        (g["width"].as_u64(), g["height"].as_u64()),
        (Some(512), Some(400))
    );
    let (o, dx, dy) = (v3(&g["origin"]), v3(&g["dx"]), v3(&g["dy"]));
    assert_eq!(v3(&g["normal"]).map(|c| c.abs()), [0.0, 0.0, 1.0], "axial");
    // The canvas centre shows the volume's centre as the tags give it: 512 columns and rows of
    // 0.451171875 mm from (-115.5, -1.85), slices from z 694.21 to 833.21.
    let centre = [0, 1, 2].map(|k| o[k] + 255.5 * dx[k] + 199.5 * dy[k]);
    let expected = [
        -115.5 + 255.5 * 0.451171875,
        -1.85 + 255.5 * 0.451171875,
        (694.21 + 833.21) / 2.0,
    ];
    let px = g["pixel_mm"].as_f64().unwrap();
    for k in 0..3 {
        assert!(
            (centre[k] - expected[k]).abs() < px,
            "{centre:?} vs {expected:?}"
        );
    }
    assert!((px - (dx[0].powi(2) + dx[1].powi(2)).sqrt()).abs() < 1e-9);
    assert!((g["step"].as_f64().unwrap() - 1.0).abs() < 1e-6);

    // A rectangle between voxel centres of the slice at z 764.21: the voxels it spans.
    let z = 764.21;
    let (rows, cols) = ((200, 260), (180, 300));
    let py = pydicom_region(z, rows, cols);
    let at = |r: usize, c: usize| [py[0] + c as f64 * py[3], py[1] + r as f64 * py[2], z];
    a.send(Message::text(
        json!({"op": "annotate", "kind": "rectangle", "viewport": 0,
               "points": [at(rows.0, cols.0), at(rows.1, cols.1)]})
        .to_string(),
    ))
    .await
    .unwrap();
    let s = state_at(&mut a, 2).await;
    let stats = &s["state"]["annotations"]["1"]["stats"];
    assert_eq!(stats["samples"].as_f64(), Some(py[4]), "{stats}");
    for (k, i) in [("mean", 5), ("sd", 6), ("min", 7), ("max", 8)] {
        assert!(
            (stats[k].as_f64().unwrap() - py[i]).abs() < 1e-6,
            "{k}: {stats} vs pydicom {py:?}"
        );
    }
    let area = 120.0 * py[3] * 60.0 * py[2];
    assert!((stats["area_mm2"].as_f64().unwrap() - area).abs() < 1e-6);
    let axes = &s["state"]["annotations"]["1"]["axes"];
    assert_eq!(v3(&axes[0]), [1.0, 0.0, 0.0], "{axes}");

    // Moving it is measured again.
    let (rows2, cols2) = ((100, 130), (240, 250));
    let py2 = pydicom_region(z, rows2, cols2);
    a.send(Message::text(
        json!({"op": "edit_annotation", "id": 1,
               "points": [at(rows2.0, cols2.0), at(rows2.1, cols2.1)]})
        .to_string(),
    ))
    .await
    .unwrap();
    let s = state_at(&mut a, 3).await;
    let stats = &s["state"]["annotations"]["1"]["stats"];
    assert_eq!(stats["samples"].as_f64(), Some(py2[4]), "{stats}");
    assert!((stats["mean"].as_f64().unwrap() - py2[5]).abs() < 1e-6);

    // A probe reads the voxel's HU; an ellipse's area is pi a b.
    a.send(Message::text(
        json!({"op": "annotate", "kind": "probe", "viewport": 0, "points": [at(rows.0, cols.0)]})
            .to_string(),
    ))
    .await
    .unwrap();
    let s = state_at(&mut a, 4).await;
    assert_eq!(
        s["state"]["annotations"]["2"]["value"].as_f64(),
        Some(py[9])
    );
    a.send(Message::text(
        json!({"op": "annotate", "kind": "ellipse", "viewport": 0,
               "points": [at(rows.0, cols.0), at(rows.1, cols.1)]})
        .to_string(),
    ))
    .await
    .unwrap();
    let s = state_at(&mut a, 5).await;
    let e = s["state"]["annotations"]["3"]["stats"]["area_mm2"]
        .as_f64()
        .unwrap();
    let pi_ab = std::f64::consts::PI * (60.0 * py[3]) * (30.0 * py[2]);
    assert!((e - pi_ab).abs() < 1e-6, "{e} vs {pi_ab}");

    // A region outside the volume is refused with the reason; nothing changes.
    a.send(Message::text(
        json!({"op": "annotate", "kind": "rectangle", "viewport": 0,
               "points": [[5000.0, 5000.0, z], [5100.0, 5100.0, z]]})
        .to_string(),
    ))
    .await
    .unwrap();
    let err = next_json(&mut a, "error").await;
    assert!(err["message"].as_str().unwrap().contains("points"), "{err}");

    // MPR: each viewport shows where the other two planes cut it, through the centre.
    a.send(Message::text(r#"{"op":"layout","layout":"mpr"}"#))
        .await
        .unwrap();
    let g = geometry_at(&mut a, 0, 6).await;
    let lines = g["crosshairs"].as_array().unwrap();
    let mut cut: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["viewport"].as_u64())
        .collect();
    cut.sort_unstable();
    assert_eq!(cut, [1, 2], "{g}");
    let (w, h) = (g["width"].as_f64().unwrap(), g["height"].as_f64().unwrap());
    for l in lines {
        let p = [0, 1, 2, 3].map(|i| l["line"][i].as_f64().unwrap());
        // Either a vertical or a horizontal line through the centre.
        let through = ((p[0] - w / 2.0).abs() < 2.0 && (p[2] - w / 2.0).abs() < 2.0)
            || ((p[1] - h / 2.0).abs() < 2.0 && (p[3] - h / 2.0).abs() < 2.0);
        assert!(through, "{l} on {w}x{h}");
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
