//! Bench for the viewer (issue 5) against the real imaging binary holding the 140-slice CT, each
//! figure beside a reference from the same run:
//! - interaction latency, operation sent to the frame showing it, at 60 operations/s, for 1, 10
//!   and 50 concurrent sessions (goal: p95 <= 16 ms for one session), beside one frame's render
//!   and encode alone;
//! - co-viewing fan-out: imaging's CPU for 10 viewers of one session vs 1 viewer (goal <= 1.2x);
//! - cine: frames/s per client and bytes/s with 4 co-viewers at 30 fps, and imaging's CPU
//!   (goal: >= 30 fps under 50% of 2 cores);
//! - time to first frame after opening the series (cold and warm), beside downloading the
//!   series' DICOM over the same loopback (what a client-side viewer must do first).
//!
//! Build first: `cargo build --release --workspace --bins`, then `target/release/viewer`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{Daemon, Ports, bin, temp_dir};
use futures_util::{SinkExt, StreamExt};
use imaging::viewer::token::{Claims, public_key_base64, sign};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn version_of(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[4..12]);
    u64::from_le_bytes(v)
}

/// imaging's resident memory now, MB (VmRSS from /proc).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// imaging's CPU seconds so far (utime + stime from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields after the command: state is not a number, so utime/stime are at 11 and 12 here.
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

struct Setup {
    daemon: Daemon,
    port: u16,
    token: String,
    series: String,
    study: String,
    /// A 2140x1760 CR film (nema-wg04 RG2, JPEG lossless).
    cr_series: String,
    _dir: tempfile::TempDir,
}

/// The CR film opened cold beside the CT.
const CR_FILM: &str = "../shared/testdata/dicom/nema-wg04/JPLL/RG2_JPLL";

fn setup() -> Setup {
    let dir = temp_dir();
    let series_dir =
        benches::repo_root().join("../shared/testdata/series/ct-philips-headphantom-140");
    let out = Command::new(bin("imaging"))
        .current_dir(dir.path())
        .arg("import")
        .arg(&series_dir)
        .output()
        .expect("imaging import");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stored 140"));
    let out = Command::new(bin("imaging"))
        .current_dir(dir.path())
        .arg("import")
        .arg(benches::repo_root().join(CR_FILM))
        .output()
        .expect("imaging import");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stored 1"));
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(["--set", "imaging.gpu=off"])
        .args([
            "--set",
            &format!("imaging.viewer_token_key={}", public_key_base64(&signer)),
        ])
        .env("RUST_LOG", "warn");
    let mut daemon = Daemon::spawn(cmd);
    daemon.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    let s = e2e::as_service::get(ports.imaging_http, "/dicomweb/series")
        .expect("QIDO")
        .json();
    let of = |modality: &str, tag: &str| {
        s.as_array()
            .expect("series")
            .iter()
            .find(|x| x["00080060"]["Value"][0] == modality)
            .and_then(|x| x[tag]["Value"][0].as_str())
            .expect("the series is stored")
            .to_owned()
    };
    let (study, series) = (of("CT", "0020000D"), of("CT", "0020000E"));
    let (cr_study, cr_series) = (of("CR", "0020000D"), of("CR", "0020000E"));
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let token = sign(
        &Claims {
            sub: "bench".into(),
            studies: vec![study.clone(), cr_study],
            exp,
        },
        &signer,
    );
    Setup {
        daemon,
        port: ports.imaging_http,
        token,
        series,
        study,
        cr_series,
        _dir: dir,
    }
}

async fn connect(s: &Setup, session: &str) -> Socket {
    let url = format!(
        "ws://127.0.0.1:{}/view/ws?token={}&session={session}",
        s.port, s.token
    );
    // Operations go out at once (a browser's WebSocket does not hold them either).
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("connect")
        .0
}

/// Opens the series at 512x512 and waits for its first frame: the time it took.
async fn open(ws: &mut Socket, series: &str) -> Duration {
    open_full(ws, series).await.0
}

/// Opens the series at 512x512: the time to its first frame (a preview of the slice from its
/// own file while the volume is built, when there is one) and to the first frame of the built
/// volume.
async fn open_full(ws: &mut Socket, series: &str) -> (Duration, Duration) {
    ws.send(Message::text(r#"{"op":"resize","width":512,"height":512}"#))
        .await
        .expect("send");
    let t = Instant::now();
    ws.send(Message::text(
        json!({"op": "open", "series": [series]}).to_string(),
    ))
    .await
    .expect("send");
    let mut first = None;
    let mut preview = false;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(m))) => {
                let v: serde_json::Value = serde_json::from_str(m.as_str()).unwrap_or_default();
                if v["type"] == "geometry" {
                    preview = v["preview"] == true;
                }
            }
            Some(Ok(Message::Binary(b))) if version_of(&b) >= 1 => {
                let at = t.elapsed();
                let first = *first.get_or_insert(at);
                if !preview {
                    return (first, at);
                }
            }
            Some(Ok(_)) => {}
            _ => panic!("the viewer socket closed"),
        }
    }
}

/// Sends window changes at `rate` per second for `secs`, measuring each operation's latency to
/// the first frame at or past its version.
async fn interact(ws: Socket, rate: f64, secs: f64) -> Vec<Duration> {
    let (mut sink, mut stream) = {
        let (a, b) = ws.split();
        (a, b)
    };
    let sent: std::sync::Arc<std::sync::Mutex<BTreeMap<u64, Instant>>> = Default::default();
    let sent2 = std::sync::Arc::clone(&sent);
    let n = (rate * secs) as u64;
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        for k in 0..n {
            tick.tick().await;
            // Version 1 is the open; operation k makes version k + 2.
            sent2
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(k + 2, Instant::now());
            let center = 40.0 + (k % 50) as f64;
            let op = json!({"op": "window", "viewport": 0, "center": center, "width": 400});
            if sink.send(Message::text(op.to_string())).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        sink
    });
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 2.0);
    while Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        else {
            continue;
        };
        if let Message::Binary(b) = m {
            let v = version_of(&b);
            let now = Instant::now();
            let mut map = sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done: Vec<u64> = map.range(..=v).map(|(k, _)| *k).collect();
            for k in done {
                if let Some(t) = map.remove(&k) {
                    latencies.push(now - t);
                }
            }
        }
    }
    if let Ok(sink) = writer.await {
        drop(sink.reunite(stream));
    }
    latencies
}

fn pct(v: &mut [Duration], p: usize) -> f64 {
    v.sort();
    if v.is_empty() {
        return f64::NAN;
    }
    v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e3
}

const USAGE: &str = "
usage: viewer

The viewer against the real imaging binary holding the 140-slice CT: interaction latency
for 1, 10 and 50 sessions, co-viewing fan-out, cine, and time to first frame beside
downloading the series' DICOM. Takes no arguments. Build the workspace's binaries first
(cargo build --release --workspace --bins).
";

fn main() {
    benches::Args::parse(USAGE, 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = setup();
    let pid = s.daemon.pid();
    runtime.block_on(async {
        println!("viewer bench: 140-slice CT, 512x512 frames, imaging on the CPU renderer");

        // Time to first frame, cold (volume not built) then warm, beside downloading the DICOM.
        let mut ws = connect(&s, "ttff-cold").await;
        let (cold, built) = open_full(&mut ws, &s.series).await;
        let mut ws2 = connect(&s, "ttff-warm").await;
        let warm = open(&mut ws2, &s.series).await;
        drop((ws, ws2));
        let t = Instant::now();
        let dl = e2e::as_service::get(
            s.port,
            &format!("/dicomweb/studies/{}/series/{}", s.study, s.series),
        )
        .expect("WADO-RS series");
        let download = t.elapsed();
        println!(
            "  time to first frame: cold {:.0} ms (the slice from its own file; the built volume's {:.0} ms), warm {:.1} ms; reference, WADO-RS download of the series' DICOM ({:.1} MB) over loopback: {:.0} ms",
            cold.as_secs_f64() * 1e3,
            built.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            dl.bytes.len() as f64 / 1e6,
            download.as_secs_f64() * 1e3
        );

        // A 2140x1760 CR film opened cold (decoded, stacked, rendered, encoded), beside its
        // DICOM file's download.
        let mut ws = connect(&s, "ttff-cr").await;
        let cr = open(&mut ws, &s.cr_series).await;
        drop(ws);
        let size = std::fs::metadata(benches::repo_root().join(CR_FILM)).map_or(0, |m| m.len());
        println!(
            "  time to first frame, 2140x1760 CR film (JPEG lossless, {:.1} MB), cold: {:.0} ms",
            size as f64 / 1e6,
            cr.as_secs_f64() * 1e3
        );

        // Reference: one frame's render + encode, in process.
        let volume = imaging::dicom::series::volume_from_dir(
            &benches::repo_root().join("../shared/testdata/series/ct-philips-headphantom-140"),
        )
        .expect("volume");
        let mut alone = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let g = volume.volume.geometry();
            let [nx, ny, nz] = g.dims();
            let c = g.voxel_to_patient(render::V3::new(
                nx as f64 / 2.0,
                ny as f64 / 2.0,
                nz as f64 / 2.0,
            ));
            let plane = render::Plane::standard(render::Orientation::Axial, c);
            let vp = render::Viewport::fit(plane, g, 512, 512).expect("viewport");
            let table = render::GreyPipeline {
                rescale: volume.volume.rescale(),
                voi: render::Voi::Window(render::Window::linear(40.0, 400.0)),
                monochrome1: false,
                invert: false,
            }
            .table()
            .expect("table");
            let f = render::mpr::render(
                &volume.volume,
                &table,
                &render::mpr::MprRequest {
                    viewport: &vp,
                    sampling: render::mpr::Sampling::Trilinear,
                    slab: None,
                    background: 0,
                },
            )
            .expect("render");
            let _ = render::encode::encode_jpeg(&f, 70).expect("encode");
            alone.push(t.elapsed());
        }
        let alone_p50 = pct(&mut alone, 50);

        for sessions in [1usize, 10, 50] {
            let mut clients = Vec::new();
            for k in 0..sessions {
                let mut ws = connect(&s, &format!("latency-{sessions}-{k}")).await;
                open(&mut ws, &s.series).await;
                clients.push(ws);
            }
            let cpu0 = cpu_seconds(pid);
            let rss0 = rss_mb(pid);
            let t0 = Instant::now();
            let runs: Vec<_> = clients
                .into_iter()
                .map(|ws| tokio::spawn(interact(ws, 60.0, 5.0)))
                .collect();
            let mut all = Vec::new();
            for r in runs {
                all.extend(r.await.unwrap_or_default());
            }
            let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
            println!(
                "  interaction latency, {sessions:>2} session(s) at 60 ops/s: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} ops, imaging CPU {:.0}% of one core, RSS {rss0:.0} -> {:.0} MB); reference, one frame's render + JPEG alone: {alone_p50:.1} ms",
                pct(&mut all, 50),
                pct(&mut all, 95),
                pct(&mut all, 99),
                all.len(),
                cpu * 100.0,
                rss_mb(pid)
            );
        }

        // Fan-out: 1 viewer vs 10 viewers of one session, the controller changing the window
        // at 30 ops/s.
        let mut cpu_for = Vec::new();
        for viewers in [1usize, 10] {
            let name = format!("fanout-{viewers}");
            let mut controller = connect(&s, &name).await;
            open(&mut controller, &s.series).await;
            let mut others = Vec::new();
            for _ in 1..viewers {
                let mut ws = connect(&s, &name).await;
                ws.send(Message::text(r#"{"op":"resize","width":512,"height":512}"#))
                    .await
                    .expect("send");
                others.push(ws);
            }
            let drains: Vec<_> = others
                .into_iter()
                .map(|mut ws| {
                    tokio::spawn(async move {
                        let until = Instant::now() + Duration::from_secs(7);
                        while Instant::now() < until {
                            let _ = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let cpu0 = cpu_seconds(pid);
            let t0 = Instant::now();
            interact(controller, 30.0, 5.0).await;
            cpu_for.push((cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64());
            for d in drains {
                let _ = d.await;
            }
        }
        println!(
            "  co-viewing fan-out at 30 ops/s: imaging CPU {:.0}% with 1 viewer, {:.0}% with 10 ({:.2}x)",
            cpu_for[0] * 100.0,
            cpu_for[1] * 100.0,
            cpu_for[1] / cpu_for[0].max(1e-9)
        );

        // Cine with 4 co-viewers at 30 fps.
        let mut controller = connect(&s, "cine").await;
        open(&mut controller, &s.series).await;
        let mut viewers = vec![controller];
        for _ in 0..3 {
            let mut ws = connect(&s, "cine").await;
            ws.send(Message::text(r#"{"op":"resize","width":512,"height":512}"#))
                .await
                .expect("send");
            viewers.push(ws);
        }
        viewers[0]
            .send(Message::text(r#"{"op":"cine","viewport":0,"fps":30}"#))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        let counts: Vec<_> = viewers
            .into_iter()
            .map(|mut ws| {
                tokio::spawn(async move {
                    let (mut frames, mut bytes) = (0u64, 0u64);
                    let until = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < until {
                        if let Ok(Some(Ok(Message::Binary(b)))) =
                            tokio::time::timeout(Duration::from_millis(200), ws.next()).await
                        {
                            frames += 1;
                            bytes += b.len() as u64;
                        }
                    }
                    (frames, bytes)
                })
            })
            .collect();
        let mut per = Vec::new();
        for c in counts {
            per.push(c.await.unwrap_or((0, 0)));
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (cpu_seconds(pid) - cpu0) / secs;
        let fps: Vec<String> = per.iter().map(|(f, _)| format!("{:.1}", *f as f64 / secs)).collect();
        let bytes: u64 = per.iter().map(|(_, b)| b).sum();
        println!(
            "  cine at 30 fps, 4 co-viewers: {} frames/s per client, {:.1} MB/s in all, imaging CPU {:.0}% of 2 cores",
            fps.join(" / "),
            bytes as f64 / 1e6 / secs,
            cpu * 100.0 / 2.0
        );
    });
}
