//! Bench: the clinical record (issue 22's goals): HL7 ORU^R01 with 20 OBX each over one MLLP
//! connection, >= 2,000 messages/s committed with ACK p99 <= 20 ms, beside the same messages
//! parsed only in this process (the reference); then FHIR Observation search by patient and
//! code over the 1,000,000 observations that fed (p95 <= 20 ms), and the lab trend API for one
//! analyte over 5 years of daily results (p95 <= 10 ms), each beside `GET /healthz` on the same
//! server.
//!
//! Runs the real `appliance` (release build) on an empty data folder. Build first:
//! `cargo build --release --locked -p appliance -p benches --bin appliance --bin record`; then
//! `$CARGO_TARGET_DIR/release/record [MESSAGES] [WINDOW] [QUERIES]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::{Ports, temp_dir};

const USAGE: &str = "
usage: record [MESSAGES] [WINDOW] [QUERIES]

Sends MESSAGES ORU^R01 (20 OBX each; default 50000, i.e. 1,000,000 observations; 1,826 of them
are one patient's daily results over 5 years) over one MLLP connection with at most WINDOW
unacknowledged (default 8), beside the same messages parsed only; then QUERIES (default 500)
FHIR Observation searches by patient and code and lab trend reads, beside GET /healthz. Needs
the release appliance (cargo build --release -p appliance --bin appliance).
";

const PATIENTS: usize = 1000;
const TREND_DAYS: usize = 1826;
const DAY_MS: i64 = 86_400_000;
/// 2021-01-01 00:00 UTC+8.
const START_MS: i64 = 1_609_430_400_000;

fn dtm(ms: i64) -> String {
    hl7v2::time::format_dtm(ms, 480)
}

/// Message `i`: the trend patient's day `i` for the first TREND_DAYS, then patients 0..PATIENTS
/// in turn, a day apart per round.
fn message(i: usize, id: &str) -> String {
    let (record, day) = if i < TREND_DAYS {
        ("TREND".to_owned(), i)
    } else {
        let k = i - TREND_DAYS;
        (format!("ZY{:05}", k % PATIENTS), k / PATIENTS)
    };
    let at = dtm(START_MS + day as i64 * DAY_MS + 7 * 3_600_000);
    let mut m = format!(
        "MSH|^~\\&|LIS|BENCH|||{at}||ORU^R01|{id}{i}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||{record}^^^BENCH^MR||测试^{record}||19600101|M\r\
ORC|RE|P{i}|F{i}\r\
OBR|1|P{i}|F{i}|PANEL^生化全项^L|||{at}||||||||||||||||||F\r"
    );
    for k in 1..=20 {
        let value = 3.0 + ((i * 7 + k * 13) % 50) as f64 / 10.0;
        m.push_str(&format!(
            "OBX|{k}|NM|A{k:02}^项目{k}^L||{value:.1}|mmol/L|3.9-6.1||||F|||{at}\r"
        ));
    }
    m.push_str("SPM|1|||SER^血清");
    m
}

fn framed(m: &str) -> Vec<u8> {
    hl7v2::mllp::frame(m.as_bytes())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        percentile(&v, 0.99),
    )
}

/// Sends every message over one connection, at most `window` unacknowledged; returns the
/// elapsed time, each ACK's latency in ms, and how many were not AA.
fn feed(port: u16, messages: &[Vec<u8>], window: usize) -> Result<(Duration, Vec<f64>, usize)> {
    let mut writer = TcpStream::connect(("127.0.0.1", port))?;
    writer.set_nodelay(true)?;
    let mut reader = writer.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (tx, rx) = mpsc::channel::<(usize, bool, Instant)>();
    let total = messages.len();
    let acks = std::thread::spawn(move || -> Result<()> {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut n = 0;
        while n < total {
            let k = reader.read(&mut chunk)?;
            if k == 0 {
                bail!("the appliance closed the connection after {n} ACKs");
            }
            buf.extend_from_slice(&chunk[..k]);
            while let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let frame: Vec<u8> = buf.drain(..end + 2).collect();
                let ok = frame.windows(7).any(|w| w == b"MSA|AA|");
                tx.send((n, ok, Instant::now()))?;
                n += 1;
            }
        }
        Ok(())
    });
    let started = Instant::now();
    let mut sent_at: Vec<Instant> = Vec::with_capacity(total);
    let mut latencies: Vec<f64> = Vec::with_capacity(total);
    let mut refused = 0;
    let mut acked = 0;
    for m in messages {
        while sent_at.len() - acked >= window {
            let (i, ok, at) = rx.recv().context("ACK reader")?;
            latencies.push((at - sent_at[i]).as_secs_f64() * 1000.0);
            refused += usize::from(!ok);
            acked += 1;
        }
        sent_at.push(Instant::now());
        writer.write_all(m)?;
    }
    while acked < total {
        let (i, ok, at) = rx.recv().context("ACK reader")?;
        latencies.push((at - sent_at[i]).as_secs_f64() * 1000.0);
        refused += usize::from(!ok);
        acked += 1;
    }
    let elapsed = started.elapsed();
    acks.join()
        .map_err(|_| anyhow::anyhow!("ACK reader panicked"))??;
    Ok((elapsed, latencies, refused))
}

fn timed_get(port: u16, path: &str, token: &str) -> Result<f64> {
    let auth = format!("Bearer {token}");
    let t = Instant::now();
    let r = e2e::request(port, "GET", path, &[("Authorization", auth.as_str())], b"")?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if r.status != 200 {
        bail!("{path}: {} {}", r.status, r.body);
    }
    Ok(ms)
}

fn main() -> Result<()> {
    let args = benches::Args::parse(USAGE, 3);
    let count: usize = args.get(0, "MESSAGES", 50_000);
    let window: usize = args.get(1, "WINDOW", 8);
    let queries: usize = args.get(2, "QUERIES", 500);
    if count <= TREND_DAYS || window == 0 || queries == 0 {
        args.fail(&format!(
            "MESSAGES must exceed {TREND_DAYS}; WINDOW and QUERIES at least 1"
        ));
    }
    let texts: Vec<String> = (0..count).map(|i| message(i, "M")).collect();

    // Reference: the same messages parsed only, in this process, one thread.
    let t = Instant::now();
    let mut observations = 0;
    for m in &texts {
        let parsed =
            hl7v2::Message::parse(m.as_bytes()).and_then(|m| hl7v2::parse_content(&m, 480))?;
        if let hl7v2::Content::Results(g) = parsed.content {
            observations += g.iter().map(|g| g.results.len()).sum::<usize>();
        }
    }
    let parse_rate = count as f64 / t.elapsed().as_secs_f64();

    let dir = temp_dir();
    e2e::api::admin(dir.path(), &["institution", "add", "--name", "基准医院"]);
    let login = e2e::api::new_user(dir.path(), "bench.centre", "coordinator", "1", "");
    let ports = Ports::free();
    let _daemon = e2e::api::start(
        dir.path(),
        &ports,
        &[
            "--set",
            "integration.hl7_sources=[\"LIS^BENCH@127.0.0.1=基准医院\"]",
        ],
    );
    let frames: Vec<Vec<u8>> = texts.iter().map(|m| framed(m)).collect();
    drop(texts);
    let (elapsed, latencies, refused) = feed(ports.hl7, &frames, window)?;
    if refused > 0 {
        bail!("{refused} messages were not accepted");
    }
    let rate = count as f64 / elapsed.as_secs_f64();
    let (p50, p95, p99) = summary(latencies);
    println!("HL7 ORU^R01, 20 OBX each, one MLLP connection, window {window}:");
    println!("  reference, parse only (1 thread, no IO): {parse_rate:>9.0} messages/s");
    println!(
        "  committed and acknowledged:               {rate:>9.0} messages/s ({count} messages, {observations} observations, {:.1} s)",
        elapsed.as_secs_f64()
    );
    println!("  ACK latency: p50 {p50:.2} ms, p95 {p95:.2} ms, p99 {p99:.2} ms");

    // A second connection, one message at a time (what most HIS do): corrections of results
    // already stored, a short run.
    let serial: Vec<Vec<u8>> = (0..500)
        .map(|i| framed(&message(TREND_DAYS + i, "S")))
        .collect();
    let (e1, l1, r1) = feed(ports.hl7, &serial, 1)?;
    let (s50, _, s99) = summary(l1);
    println!(
        "  window 1 (500 messages): {:>6.0} messages/s, ACK p50 {s50:.2} ms, p99 {s99:.2} ms, {r1} refused",
        500.0 / e1.as_secs_f64()
    );

    let token = e2e::api::activate(ports.http, &login);
    let trend_id = {
        let r = e2e::api::call(
            ports.http,
            "GET",
            "/api/v1/patients?q=TREND",
            &token,
            &[],
            None,
        )
        .json();
        r["items"][0]["id"].as_i64().context("the trend patient")?
    };
    let others = {
        let r = e2e::api::call(
            ports.http,
            "GET",
            "/api/v1/patients?q=ZY0",
            &token,
            &[],
            None,
        )
        .json();
        r["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["id"].as_i64())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    if others.is_empty() {
        bail!("no patients found");
    }
    let mut health = Vec::new();
    let mut fhir = Vec::new();
    let mut trend = Vec::new();
    let mut points = 0;
    for q in 0..queries {
        health.push(timed_get(ports.http, "/healthz", &token)?);
        let p = others[q % others.len()];
        fhir.push(timed_get(
            ports.http,
            &format!(
                "/fhir/Observation?patient={p}&code=A{:02}&_count=100",
                q % 20 + 1
            ),
            &token,
        )?);
        let path = format!(
            "/api/v1/patients/{trend_id}/labs/trend?code=A{:02}",
            q % 20 + 1
        );
        trend.push(timed_get(ports.http, &path, &token)?);
        if q == 0 {
            let r = e2e::api::call(ports.http, "GET", &path, &token, &[], None).json();
            points = r["points"].as_array().map(Vec::len).unwrap_or(0);
        }
    }
    let (h50, h95, _) = summary(health);
    let (f50, f95, f99) = summary(fhir);
    let (t50, t95, t99) = summary(trend);
    println!("HTTP, one request at a time, {queries} each (new connection per request):");
    println!(
        "  reference, GET /healthz:                               p50 {h50:.2} ms, p95 {h95:.2} ms"
    );
    println!(
        "  FHIR Observation?patient&code over {observations} observations: p50 {f50:.2} ms, p95 {f95:.2} ms, p99 {f99:.2} ms"
    );
    println!(
        "  lab trend, {points} daily points (5 years):                p50 {t50:.2} ms, p95 {t95:.2} ms, p99 {t99:.2} ms"
    );
    Ok(())
}
