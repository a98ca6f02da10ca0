//! Bench: time from starting `appliance run` to its first `/healthz` 200 (goal: within 5 s),
//! printed beside the machine's floor measured in the same run: starting and reaping a process
//! that does nothing (`/bin/true`). Build first: `cargo build --release --workspace --bins`,
//! then `target/release/startup [RUNS]`.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Daemon, Ports, bin, temp_dir};

const USAGE: &str = "
usage: startup [RUNS]

Time from starting `appliance run` to its first /healthz 200, beside starting and reaping
/bin/true in the same run. RUNS: how many starts (default 20). Build the workspace's
binaries first (cargo build --release --workspace --bins).
";

fn main() {
    let args = benches::Args::parse(USAGE, 1);
    let runs: usize = args.get(0, "RUNS", 20);
    if runs == 0 {
        args.fail("RUNS must be at least 1");
    }
    let appliance = bin("appliance");

    let mut floor = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let ok = Command::new("/bin/true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "/bin/true failed");
        floor.push(t.elapsed());
    }

    let mut startup = Vec::with_capacity(runs);
    let mut stop = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = temp_dir();
        let ports = Ports::free();
        let mut cmd = Command::new(&appliance);
        cmd.current_dir(dir.path())
            .args(ports.args())
            .env("RUST_LOG", "warn");
        let mut d = Daemon::spawn(cmd);
        let (_, at) = d.wait_ok(ports.http, "/healthz", Duration::from_secs(30));
        startup.push(at - d.started());
        let t = Instant::now();
        d.signal("TERM");
        let status = d.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "graceful exit");
        stop.push(t.elapsed());
    }

    println!(
        "appliance start-up and shutdown, {runs} runs each ({})",
        appliance.display()
    );
    println!(
        "  start -> first /healthz 200 (fresh data dir, SQLite created): {}",
        summary(&mut startup)
    );
    println!(
        "  SIGTERM -> exit 0:                                            {}",
        summary(&mut stop)
    );
    println!(
        "  reference, spawn + reap /bin/true:                            {}",
        summary(&mut floor)
    );
    let median = startup[startup.len() / 2];
    println!(
        "  goal: /healthz within 5 s -> {}",
        if median < Duration::from_secs(5) {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95 = v[(v.len() * 95 / 100).min(v.len() - 1)];
    format!(
        "median {:.2} ms, p95 {:.2} ms, min {:.2} ms",
        ms(v[v.len() / 2]),
        ms(p95),
        ms(v[0])
    )
}
