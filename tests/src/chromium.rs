//! Headless Chromium driven over the DevTools protocol, for the pages' end-to-end tests:
//! [`Browser::launch`] starts one (with extra flags, e.g. fake media devices) on a free
//! debugging port, [`Page::open`] opens a tab, and a page is evaluated, clicked, dragged,
//! typed into and photographed from Rust.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Chromium process, killed on drop.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    /// Its DevTools port.
    pub port: u16,
}

impl Browser {
    /// Starts headless Chromium (installed by scripts/test) with a fresh profile under
    /// `profile` and `extra` flags.
    pub fn launch(profile: &Path, extra: &[&str]) -> Self {
        let port = crate::Ports::free().http;
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,800",
                &format!("--remote-debugging-port={port}"),
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromium (scripts/test installs it)");
        Self { child, port }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page target over the DevTools protocol.
#[derive(Debug)]
pub struct Page {
    ws: Socket,
    next: u64,
}

impl Page {
    /// Opens `url` in a new tab of the browser on `debug_port`.
    pub async fn open(debug_port: u16, url: &str) -> Self {
        // A new tab for `url`; its DevTools socket.
        let deadline = Instant::now() + Duration::from_secs(30);
        let target = loop {
            if let Some(t) = new_tab(debug_port, url) {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium's DevTools did not answer"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let ws_url = target["webSocketDebuggerUrl"]
            .as_str()
            .expect("webSocketDebuggerUrl")
            .to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("DevTools socket");
        Self { ws, next: 1 }
    }

    /// Calls a DevTools method; its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.ws
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .await
            .expect("send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("DevTools answers")
                .expect("open")
                .expect("message");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `js` on the page; its value.
    pub async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Lays the page out as a phone `size` wide and high (or as the browser's own window again,
    /// `None`), tells it the window resized, and waits until the number `counter` (a
    /// JavaScript expression) has grown by at least `more`: what the page drew for its new
    /// size.
    pub async fn resize_and_wait(&mut self, size: Option<(u32, u32)>, counter: &str, more: u64) {
        match size {
            Some((width, height)) => {
                self.call(
                    "Emulation.setDeviceMetricsOverride",
                    json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}),
                )
                .await
            }
            None => {
                self.call("Emulation.clearDeviceMetricsOverride", json!({}))
                    .await
            }
        };
        let before = self.eval(counter).await.as_u64().unwrap_or(0);
        self.eval("window.dispatchEvent(new Event('resize'))").await;
        self.wait_for(counter, |v| v.as_u64().unwrap_or(0) >= before + more)
            .await;
    }

    /// Waits until `js` gives something for which `ok` holds.
    pub async fn wait_for(&mut self, js: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.eval(js).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {js}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A drag with the left button from `a` to `b` in ten steps.
    pub async fn drag(&mut self, a: (f64, f64), b: (f64, f64)) {
        self.mouse("mousePressed", a.0, a.1).await;
        for k in 1..=10 {
            let f = f64::from(k) / 10.0;
            self.mouse("mouseMoved", a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f)
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.mouse("mouseReleased", b.0, b.1).await;
    }

    /// A key typed on the page.
    pub async fn key(&mut self, key: &str) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "text": key}),
            )
            .await;
        }
    }

    /// Saves a PNG screenshot as artifact `name`.
    pub async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot"))
            .expect("base64");
        assert_eq!(&png[..4], b"\x89PNG");
        let path = artifacts().join(name);
        std::fs::write(&path, &png).expect("artifact");
        println!("screenshot: {}", path.display());
    }

    /// One mouse event with the left button.
    pub async fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}),
        )
        .await;
    }
}

/// `PUT /json/new?URL` on Chromium's DevTools HTTP endpoint (which keeps connections open, so
/// the body is read by its Content-Length).
fn new_tab(port: u16, url: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    write!(
        s,
        "PUT /json/new?{encoded} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return None;
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())?;
        if buf.len() >= end + 4 + length {
            return serde_json::from_slice(&buf[end + 4..end + 4 + length]).ok();
        }
    }
}

/// Where tests keep artifacts (screenshots): `tmp/artifacts` in the target folder (beside
/// `debug/deps`, where the test runs from), or in the system's temp folder.
pub fn artifacts() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()));
    let dir = target
        .map_or_else(std::env::temp_dir, |t| t.join("tmp"))
        .join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir
}
