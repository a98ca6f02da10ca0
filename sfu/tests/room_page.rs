//! The room page in headless Chromium with fake camera and microphone: two pages join one room
//! by their links; each page's remote video plays (frames decoded, from getStats, and the
//! tile's video element playing); the labels are Chinese first; a phone-size screenshot is kept
//! as a test artifact.

use std::time::Duration;

use e2e::chromium::{Browser, Page};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_see_each_other() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);
    let (mut d, ports) = e2e::webrtc::start_sfu(&key, &[]);
    let link = |who: &str, name: &str| {
        let token = e2e::webrtc::room_token(&key, "consult-7", who, name);
        format!(
            "http://127.0.0.1:{}/room?token={token}",
            ports.sfu_signalling
        )
    };
    let dir = e2e::temp_dir();
    let browser = Browser::launch(
        &dir.path().join("chromium"),
        &[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
        ],
    );
    let mut pages = Vec::new();
    for (who, name) in [("doctor.wang", "王医生"), ("expert.li", "李主任")] {
        let mut p = Page::open(browser.port, &link(who, name)).await;
        let label = p
            .wait_for("document.getElementById('join')?.textContent", |v| {
                v.as_str().is_some_and(|s| !s.is_empty())
            })
            .await;
        assert_eq!(label, "加入会诊");
        // The preview shows the (fake) camera before joining.
        p.wait_for(
            "document.getElementById('preview').srcObject?.getVideoTracks().length",
            |v| v.as_u64() == Some(1),
        )
        .await;
        p.eval("document.getElementById('join').click()").await;
        pages.push(p);
    }
    for (p, other) in pages.iter_mut().zip(["李主任", "王医生"]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let stats = loop {
            let v: Value = p.eval("roomStats()").await;
            if v["framesDecoded"].as_u64().unwrap_or(0) > 10 && v["playing"].as_u64() == Some(1) {
                break v;
            }
            if std::time::Instant::now() > deadline {
                let metrics = e2e::get(ports.sfu_signalling, "/metrics")
                    .map(|r| r.body)
                    .unwrap_or_default();
                let sfu_lines: Vec<&str> =
                    metrics.lines().filter(|l| l.starts_with("sfu_")).collect();
                let debug = p.eval("(async () => { const s = await pc.getStats(); const out = []; s.forEach(r => { if (r.type === 'inbound-rtp' || r.type === 'codec') out.push(JSON.stringify(r)); }); return out.join('\\n') + '\\n' + pc.getTransceivers().map(t => t.mid + ':' + t.direction + ':' + t.currentDirection + ':' + t.receiver.track.kind).join(',') + '\\n' + pc.remoteDescription.sdp; })()").await;
                panic!(
                    "no remote video playing: {v}\n{}\n{}",
                    sfu_lines.join("\n"),
                    debug.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(stats["connection"], "connected", "{stats}");
        // The camera goes out as simulcast: the SFU's answer took the layers, and at least two
        // of them (Chromium sends as many as the fake camera's 640x480 allows) are flowing;
        // the other page decodes whichever one the SFU picked for it.
        let layers: Vec<&str> = stats["layers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(layers.len() >= 2, "simulcast layers sent: {stats}");
        let names = p
            .eval("[...document.querySelectorAll('.tile .name')].map(n => n.textContent).join('|')")
            .await;
        assert!(names.as_str().is_some_and(|n| n.contains(other)), "{names}");
    }
    // The SFU names an active speaker from the audio levels Chromium puts in its packets
    // (the fake microphone beeps): the other page marks that one tile.
    let speaker = pages[1]
        .wait_for("document.body.dataset.speaker || ''", |v| {
            v.as_str().is_some_and(|s| !s.is_empty())
        })
        .await;
    let active = pages[1]
        .eval("[...document.querySelectorAll('.tile.active')].map(t => t.dataset.id).join('|')")
        .await;
    assert_eq!(active, speaker, "the active tile is the speaker's");
    // Muting is shown to the other page.
    pages[0]
        .eval("document.getElementById('mic').click()")
        .await;
    pages[1]
        .wait_for(
            "[...document.querySelectorAll('.tile .state')].map(n => n.textContent).join('|')",
            |v| v.as_str().is_some_and(|s| s.contains("已静音")),
        )
        .await;
    pages[1]
        .call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    pages[1].screenshot("room-phone-390x844.png").await;
    // Leaving: the other page's tile goes.
    pages[0]
        .eval("document.getElementById('leave').click()")
        .await;
    pages[1]
        .wait_for("document.querySelectorAll('.tile').length", |v| {
            v.as_u64() == Some(1)
        })
        .await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
