//! Bench: the consultation centre in the browser and its API under load (issue 19's goals:
//! cold load of the login page and of the worklist <= 1.0 s to interactive, initial JS <= 250
//! KB gzip, every API call the journeys make p95 <= 50 ms with 200 simulated users on 2 cores).
//! Runs the real stack (`appliance` on `appliance demo-data`, release build) and measures:
//! - cold loads in headless Chromium (`appliance/web/bench/coldload.mjs`, a fresh context each
//!   time), beside the reference: a cold navigation to `/healthz` on the same server;
//! - the initial JavaScript of centre.html, raw and gzip;
//! - the API mix of `benches/web/locustfile.py` under Locust (a load generator nobody here
//!   wrote; installed into `$CARGO_TARGET_DIR/bench-venv` on first use) with USERS users for
//!   SECONDS, each endpoint's p50/p95/p99 beside `GET /healthz` under the same load.
//!
//! Build first: `scripts/web` (the app), `cargo build --release --workspace --bins`; then
//! `$CARGO_TARGET_DIR/release/web [RUNS] [USERS] [SECONDS]`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use e2e::{Ports, bin, temp_dir};

const USAGE: &str = "
usage: web [RUNS] [USERS] [SECONDS]

Cold loads of the consultation centre in headless Chromium (RUNS each, default 10) beside a
cold /healthz, the initial JS size, and the API mix under Locust with USERS simulated users
(default 200) for SECONDS (default 60) beside /healthz under the same load. Needs the built web
app (scripts/web), the release binaries (cargo build --release --workspace --bins), node, and
python3 (Locust is installed into the target folder's bench-venv on first use).
";

/// The password every demo account gets for the bench.
const PASSWORD: &str = "Consult-2026";

fn main() -> Result<()> {
    let args = benches::Args::parse(USAGE, 3);
    let runs: usize = args.get(0, "RUNS", 10);
    let users: usize = args.get(1, "USERS", 200);
    let seconds: u64 = args.get(2, "SECONDS", 60);
    if runs == 0 || users == 0 || seconds == 0 {
        args.fail("RUNS, USERS and SECONDS must be at least 1");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = root.join("appliance/web/dist");
    if !dist.join("centre.html").is_file() {
        bail!("{} is not built: run scripts/web first", dist.display());
    }

    let dir = temp_dir();
    let demo = Command::new(bin("appliance"))
        .current_dir(dir.path())
        .arg("demo-data")
        .output()
        .context("appliance demo-data")?;
    let printed = String::from_utf8_lossy(&demo.stdout).into_owned();
    if !demo.status.success() {
        bail!("appliance demo-data failed: {printed}");
    }
    let ports = Ports::free();
    let daemon = e2e::api::start(dir.path(), &ports, &[]);
    let port = ports.http;
    let mut doctor_token = String::new();
    for login in [
        "doctor.zhao",
        "doctor.qian",
        "expert.wang",
        "centre.zhou",
        "qc.wu",
    ] {
        let one_time = printed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(login))
            .and_then(|l| l.split_whitespace().nth(1))
            .with_context(|| format!("{login} in the demo's output"))?;
        let token = e2e::api::activate(port, &(login.to_owned(), one_time.to_owned()));
        if login == "doctor.zhao" {
            doctor_token = token;
        }
    }
    let base = format!("http://127.0.0.1:{port}");

    // Cold loads in Chromium.
    let out = Command::new("node")
        .arg(root.join("appliance/web/bench/coldload.mjs"))
        .current_dir(root.join("appliance/web"))
        .env("BASE", &base)
        .env("TOKEN", &doctor_token)
        .env("DIST", &dist)
        .env("RUNS", runs.to_string())
        .output()
        .context("node")?;
    if !out.status.success() {
        bail!(
            "coldload.mjs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("cold loads, {runs} each, fresh browser context (empty cache), loopback:");
    println!("  {:<44} {:>9} {:>9}", "what", "median ms", "p95 ms");
    for (key, what) in [
        ("healthz", "reference: cold navigation to /healthz"),
        ("login", "login page, form interactive"),
        ("worklist", "worklist after login, rows drawn"),
    ] {
        let mut ms: Vec<f64> = report["series"][key]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        ms.sort_by(f64::total_cmp);
        println!(
            "  {what:<44} {:>9.0} {:>9.0}",
            percentile(&ms, 0.5),
            percentile(&ms, 0.95)
        );
    }
    println!(
        "initial JS of centre.html: {} KB raw, {} KB gzip ({} files)",
        report["initial_js"]["raw"].as_u64().unwrap_or(0) / 1024,
        report["initial_js"]["gzip"].as_u64().unwrap_or(0) / 1024,
        report["initial_js"]["files"].as_array().map_or(0, Vec::len)
    );

    // The API mix under Locust.
    let locust = locust()?;
    let csv = dir.path().join("locust");
    let status = Command::new(&locust)
        .args(["-f"])
        .arg(root.join("benches/web/locustfile.py"))
        .args(["--headless", "--only-summary", "-u"])
        .arg(users.to_string())
        // Users arrive at 10 a second (each logs in once: argon2, slow by design); the
        // figures are reset once all have arrived, so they are the steady state.
        .args(["-r", "10", "--reset-stats", "--loglevel", "WARNING", "-t"])
        .arg(format!("{seconds}s"))
        .args(["--host", &base, "--csv"])
        .arg(&csv)
        .env("BENCH_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .status()
        .context("locust")?;
    if !status.success() {
        bail!("locust failed");
    }
    let stats = std::fs::read_to_string(format!("{}_stats.csv", csv.display()))?;
    println!(
        "API mix, steady state (figures reset once all users have logged in): {users} users, 1-3 s between steps, {seconds} s, Locust on the same 2 cores:"
    );
    println!(
        "  {:<52} {:>7} {:>5} {:>7} {:>7} {:>7}",
        "endpoint", "calls", "fail", "p50 ms", "p95 ms", "p99 ms"
    );
    let mut lines = stats.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| h.trim_matches('"') == name);
    let (name, count, fail, p50, p95, p99) = (
        col("Name").context("Name column")?,
        col("Request Count").context("count column")?,
        col("Failure Count").context("failure column")?,
        col("50%").context("50% column")?,
        col("95%").context("95% column")?,
        col("99%").context("99% column")?,
    );
    for line in lines {
        let cells = split_csv(line);
        let cell = |i: usize| cells.get(i).map_or("", String::as_str);
        println!(
            "  {:<52} {:>7} {:>5} {:>7} {:>7} {:>7}",
            cell(name),
            cell(count),
            cell(fail),
            cell(p50),
            cell(p95),
            cell(p99)
        );
    }
    daemon.signal("TERM");
    Ok(())
}

/// The value at quantile `q` of sorted `v`.
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// One CSV line's cells (quotes honoured).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(String::new()),
            c => {
                if let Some(last) = cells.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    cells
}

/// Locust, installed into a virtual environment in the target folder on first use.
fn locust() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("bench-venv");
    let locust = venv.join("bin/locust");
    if locust.is_file() {
        return Ok(locust);
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?
        .success()
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "locust"])
            .status()?
            .success();
    if !ok || !locust.is_file() {
        bail!("could not install Locust into {}", venv.display());
    }
    Ok(locust)
}
