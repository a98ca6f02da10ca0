//! Bench for the DICOM data centre (issue 3), each figure beside Orthanc 1.10 (Debian's
//! `orthanc` and `orthanc-dicomweb`) fed the same way on the same machine in the same run:
//! - C-STORE ingest of the 140-slice CT with dcmtk's storescu over 1 and 4 associations:
//!   instances/s and MB/s (goal: at least 5x Orthanc);
//! - WADO-RS series metadata for the 140 instances, p50 (goal: <= 20 ms);
//! - WADO-RS rendered JPEGs of those instances, requests/s from 8 clients (goal: at least 5x
//!   Orthanc on repeated instances), and with a new window each request;
//! - building the volume (decode and assemble) from the 140 files, beside a plain read of them.
//!
//! Build first: `cargo build --release --workspace --bins`, then `target/release/ingest [RUNS]`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Daemon, Ports, bin, temp_dir};

fn series_dir() -> PathBuf {
    benches::repo_root().join("../shared/testdata/series/ct-philips-headphantom-140")
}

/// A store under test: a DICOM port, its AE title, and its DICOMweb root.
struct Target {
    _daemon: Daemon,
    _dir: tempfile::TempDir,
    dicom: u16,
    ae: &'static str,
    http: u16,
    web_root: &'static str,
}

fn imaging() -> Target {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(e2e::imaging_key_args())
        .args(["--set", "imaging.gpu=off"])
        .env("RUST_LOG", "warn");
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    Target {
        _daemon: d,
        _dir: dir,
        dicom: ports.dicom,
        ae: "APPLIANCE",
        http: ports.imaging_http,
        web_root: "/dicomweb",
    }
}

fn orthanc() -> Target {
    let o = e2e::orthanc::start();
    Target {
        _daemon: o.daemon,
        _dir: o.dir,
        dicom: o.dicom,
        ae: "ORTHANC",
        http: o.http,
        web_root: "/dicom-web",
    }
}

/// Sends `files` with `associations` storescu processes at once; returns the wall time.
fn ingest(t: &Target, files: &[PathBuf], associations: usize) -> Duration {
    let per = files.len().div_ceil(associations);
    let start = Instant::now();
    let children: Vec<_> = files
        .chunks(per)
        .map(|chunk| {
            Command::new("storescu")
                .args([
                    "-aet",
                    "BENCH",
                    "-aec",
                    t.ae,
                    "127.0.0.1",
                    &t.dicom.to_string(),
                ])
                .args(chunk)
                .spawn()
                .expect("run storescu (scripts/test installs dcmtk)")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("storescu").success(), "storescu failed");
    }
    start.elapsed()
}

fn count_instances(t: &Target) -> usize {
    let r = e2e::as_service::get(t.http, &format!("{}/instances?limit=1000", t.web_root))
        .expect("QIDO");
    r.json().as_array().map_or(0, Vec::len)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// 8 clients asking for the instances' rendered JPEGs in turn for 3 s (each request a
/// connection of its own, as the other figures): requests per second and the median latency.
fn rendered_load(port: u16, base: &str, instances: &[String], windowed: bool) -> (f64, Duration) {
    let auth = format!("Bearer {}", e2e::service_token(&e2e::test_signer(), false));
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let mut times: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut times = Vec::new();
                    while start.elapsed() < run {
                        let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let uid = &instances[k % instances.len()];
                        let query = if windowed {
                            format!("?window=40,{},linear", 400 + k)
                        } else {
                            String::new()
                        };
                        let path = format!("{base}/{uid}/rendered{query}");
                        let s = Instant::now();
                        let r = e2e::request(port, "GET", &path, &[("Authorization", &auth)], &[])
                            .expect("rendered");
                        times.push(s.elapsed());
                        assert_eq!(r.status, 200, "rendered {path}: {}", r.body);
                        assert_eq!(&r.bytes[..2], &[0xFF, 0xD8], "a JPEG");
                    }
                    times
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client"))
            .collect()
    });
    let rate = times.len() as f64 / start.elapsed().as_secs_f64();
    (rate, median(&mut times))
}

const USAGE: &str = "
usage: ingest [RUNS]

The DICOM data centre beside Orthanc in the same run: C-STORE ingest of the 140-slice CT
(storescu over 1 and 4 associations), WADO-RS series metadata and rendered JPEGs, and
building the volume.
RUNS: how many times each figure is measured (default 3). Build the workspace's binaries
first (cargo build --release --workspace --bins); needs dcmtk and orthanc.
";

fn main() {
    let args = benches::Args::parse(USAGE, 1);
    let runs: usize = args.get(0, "RUNS", 3);
    if runs == 0 {
        args.fail("RUNS must be at least 1");
    }
    let files = e2e::ct_series_files();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let n = files.len();
    println!(
        "DICOM data centre bench: {n} instances, {:.1} MB, {runs} runs each",
        bytes as f64 / 1e6
    );

    for associations in [1, 4] {
        for (name, make) in [
            ("imaging", imaging as fn() -> Target),
            ("Orthanc 1.10", orthanc),
        ] {
            let mut times = Vec::new();
            for _ in 0..runs {
                let t = make();
                times.push(ingest(&t, &files, associations));
                assert_eq!(count_instances(&t), n, "{name} kept every instance");
            }
            let m = median(&mut times).as_secs_f64();
            println!(
                "  C-STORE ingest, {associations} association(s), {name:<12}: {:>7.1} instances/s, {:>6.1} MB/s (median {:.0} ms)",
                n as f64 / m,
                bytes as f64 / 1e6 / m,
                m * 1e3
            );
        }
    }

    // Series metadata, warm (one request first), p50 of 50.
    for (name, make) in [
        ("imaging", imaging as fn() -> Target),
        ("Orthanc 1.10", orthanc),
    ] {
        let t = make();
        ingest(&t, &files, 4);
        let studies = e2e::as_service::get(t.http, &format!("{}/studies", t.web_root))
            .expect("QIDO")
            .json();
        let study = studies[0]["0020000D"]["Value"][0]
            .as_str()
            .expect("study UID")
            .to_owned();
        let series =
            e2e::as_service::get(t.http, &format!("{}/studies/{study}/series", t.web_root))
                .expect("QIDO")
                .json();
        let se = series[0]["0020000E"]["Value"][0]
            .as_str()
            .expect("series UID")
            .to_owned();
        let path = format!("{}/studies/{study}/series/{se}/metadata", t.web_root);
        let first = e2e::as_service::get(t.http, &path).expect("metadata");
        assert_eq!(first.json().as_array().map_or(0, Vec::len), n, "{name}");
        let mut times = Vec::new();
        for _ in 0..50 {
            let s = Instant::now();
            let r = e2e::as_service::get(t.http, &path).expect("metadata");
            times.push(s.elapsed());
            assert_eq!(r.status, 200);
        }
        println!(
            "  WADO-RS series metadata ({n} instances), {name:<12}: p50 {:.2} ms",
            median(&mut times).as_secs_f64() * 1e3
        );

        // WADO-RS rendered: the series' instances over and over by 8 clients, each instance
        // asked once before (warm). Then each request with a window of its own, so nothing
        // answered before can be given again: the decoded image is all that is reused.
        let instances: Vec<String> = first
            .json()
            .as_array()
            .expect("metadata array")
            .iter()
            .filter_map(|m| m["00080018"]["Value"][0].as_str().map(str::to_owned))
            .collect();
        let base = format!("{}/studies/{study}/series/{se}/instances", t.web_root);
        for uid in &instances {
            let r =
                e2e::as_service::get(t.http, &format!("{base}/{uid}/rendered")).expect("rendered");
            assert_eq!(r.status, 200, "{name} rendered: {}", r.body);
        }
        for (what, windowed) in [("repeated", false), ("a new window each", true)] {
            let (rate, p50) = rendered_load(t.http, &base, &instances, windowed);
            println!(
                "  WADO-RS rendered, {what}, 8 clients, {name:<12}: {rate:>7.0} req/s, p50 {:.2} ms",
                p50.as_secs_f64() * 1e3
            );
        }
    }

    // Volume build from the files, beside reading them.
    let mut read = Vec::new();
    let mut build = Vec::new();
    for _ in 0..runs.max(5) {
        let s = Instant::now();
        let total: usize = files
            .iter()
            .map(|f| std::fs::read(f).map(|b| b.len()).unwrap_or(0))
            .sum();
        read.push(s.elapsed());
        assert!(total > 0);
        let s = Instant::now();
        let v = imaging::dicom::series::volume_from_dir(&series_dir()).expect("volume");
        build.push(s.elapsed());
        assert_eq!(v.volume.geometry().dims()[2], n);
    }
    println!(
        "  volume build (decode + assemble, {n} slices): median {:.1} ms; reference, plain read of the files: {:.1} ms",
        median(&mut build).as_secs_f64() * 1e3,
        median(&mut read).as_secs_f64() * 1e3
    );
}
