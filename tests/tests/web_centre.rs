//! The consultation centre in the browser, against the real stack with `appliance demo-data`:
//! the appliance serves the built app (`/` opens it; the page is never cached; hashed assets
//! are cached for a year and sent precompressed), and the login journey
//! (`appliance/web/e2e/login.mjs`, playwright-core driving Debian's Chromium: forced password
//! change, worklist, English, a session ended on the server, an administrator's TOTP
//! enrolment and code, lockout) and the quality-control journey (`e2e/qc.mjs`) pass, leaving
//! their screenshots in target/tmp/web-<journey>/. scripts/test builds the app first (npm ci, vite
//! build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::sms::SmsStub;
use e2e::{Ports, get, request, temp_dir};

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliance/web")
}

/// The whole stack on `appliance demo-data` in a fresh folder, on free ports.
struct Stack {
    _dir: tempfile::TempDir,
    printed: String,
    port: u16,
    daemon: e2e::Daemon,
}

impl Stack {
    /// Makes the demo data, then starts the stack with `extra` arguments.
    fn start(extra: &[&str]) -> Self {
        let dir = temp_dir();
        let printed = e2e::api::demo_data(dir.path());
        let ports = Ports::free();
        let daemon = e2e::api::start(dir.path(), &ports, extra);
        Self {
            _dir: dir,
            printed,
            port: ports.http,
            daemon,
        }
    }

    /// The one-time password the demo printed for `login`.
    fn password(&self, login: &str) -> String {
        e2e::api::demo_password(&self.printed, login)
    }

    /// Stops the stack; it must exit 0.
    fn stop(mut self) {
        self.daemon.signal("TERM");
        assert_eq!(
            self.daemon.wait_exit(Duration::from_secs(20)).code(),
            Some(0)
        );
    }
}

#[test]
fn the_consultation_centre_logs_in_and_shows_the_worklist() {
    let dist = web().join("dist");
    assert!(
        dist.join("centre.html").is_file(),
        "{} is not built: run `npm ci && npm run build` in appliance/web (scripts/test does)",
        dist.display()
    );
    let stack = Stack::start(&[]);
    let port = stack.port;

    // `/` opens the centre; its page is never cached and names hashed assets.
    let root = get(port, "/").expect("root");
    assert_eq!(root.status, 307, "{}", root.body);
    assert_eq!(root.header("location"), Some("/centre/"));
    let page = get(port, "/centre/worklist").expect("an app route");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let script = page
        .body
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page names its script")
        .to_owned();
    assert!(script.starts_with("/assets/centre-"), "{script}");
    let plain = get(port, &script).expect("the script");
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(plain.header("content-encoding"), None);
    let br = request(
        port,
        "GET",
        &script,
        &[("Accept-Encoding", "gzip, br")],
        b"",
    )
    .expect("br");
    assert_eq!(br.header("content-encoding"), Some("br"));
    let gz = request(port, "GET", &script, &[("Accept-Encoding", "gzip")], b"").expect("gzip");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    // The site's icon, for the pages and for what browsers ask for themselves.
    for icon in ["/favicon.svg", "/favicon.ico"] {
        let r = get(port, icon).expect("icon");
        assert_eq!(r.status, 200, "{icon}");
        assert_eq!(r.header("content-type"), Some("image/svg+xml"), "{icon}");
        assert!(r.body.starts_with("<svg"), "{icon}");
    }
    for bad in [
        "/assets/..%2Fcentre.html",
        "/assets/.hidden",
        "/assets/nope.js",
    ] {
        assert_eq!(get(port, bad).expect("asset").status, 404, "{bad}");
    }

    // The journey in Chromium.
    journey(
        "login",
        port,
        &[
            ("LOGIN", "doctor.zhao".into()),
            ("PASSWORD", stack.password("doctor.zhao")),
            ("ADMIN_LOGIN", "sys.admin".into()),
            ("ADMIN_PASSWORD", stack.password("sys.admin")),
            ("LOCK_LOGIN", "doctor.sun".into()),
        ],
        &[
            "01-login",
            "02-password",
            "03-worklist",
            "04-worklist-en",
            "05-session-ended",
            "06-totp",
            "07-login-totp",
            "08-locked",
        ],
    );
    stack.stop();
}

/// The clinic doctor submits, quality control returns with reasons, the doctor resubmits, and
/// a stale page meets the conflict (`appliance/web/e2e/qc.mjs`).
#[test]
fn an_application_goes_through_quality_control() {
    let stack = Stack::start(&[]);
    journey(
        "qc",
        stack.port,
        &[
            ("DOCTOR", "doctor.zhao".into()),
            ("DOCTOR_PASSWORD", stack.password("doctor.zhao")),
            ("QC", "qc.wu".into()),
            ("QC_PASSWORD", stack.password("qc.wu")),
        ],
        &[
            "11-case-draft",
            "12-qc-worklist",
            "13-qc-reject",
            "14-case-rejected",
            "15-case-conflict",
        ],
    );
    stack.stop();
}

/// The clinic doctor finds and registers patients and writes a request with a slot, a
/// diagnosis and a study picked by its thumbnail (`appliance/web/e2e/apply.mjs`).
#[test]
fn a_clinic_doctor_applies_for_a_consultation() {
    let stack = Stack::start(&[]);
    journey(
        "apply",
        stack.port,
        &[
            ("DOCTOR", "doctor.zhao".into()),
            ("DOCTOR_PASSWORD", stack.password("doctor.zhao")),
            // The demo's 王建国 (appliance::demo::WANG_ID_NUMBER).
            ("ID_NUMBER", "330102195603140019".into()),
        ],
        &[
            "21-patients",
            "22-patient-form",
            "23-apply",
            "24-case-submitted",
            "25-case-en",
        ],
    );
    stack.stop();
}

/// The centre schedules with a dry run (notices as sent, conflicts), the board shows the
/// day and week, and the expert checks in (`appliance/web/e2e/schedule.mjs`); the SMS the
/// preview showed is exactly what the gateway receives.
#[test]
fn the_centre_schedules_and_the_expert_checks_in() {
    let sms = SmsStub::start();
    sms.down.store(false, Ordering::SeqCst);
    let url = format!("notifications.sms_url=http://127.0.0.1:{}/sms", sms.port);
    let stack = Stack::start(&[
        "--set",
        "notifications.sms_gateway=http-json",
        "--set",
        &url,
    ]);
    let out = journey(
        "schedule",
        stack.port,
        &[
            ("ZHAO_PASSWORD", stack.password("doctor.zhao")),
            ("QIAN_PASSWORD", stack.password("doctor.qian")),
            ("QC_PASSWORD", stack.password("qc.wu")),
            ("CENTRE_PASSWORD", stack.password("centre.zhou")),
            ("EXPERT_PASSWORD", stack.password("expert.wang")),
        ],
        &[
            "31-board-to-schedule",
            "32-schedule-preview",
            "33-schedule-conflict",
            "34-board-week",
            "35-expert-today",
            "36-checked-in",
        ],
    );
    let previewed = std::fs::read_to_string(out.join("sms-preview.txt")).expect("the preview");
    assert!(
        previewed.contains("已安排：") && previewed.contains("会诊室2"),
        "{previewed}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sms.received.lock().expect("stub").clone();
        if got
            .iter()
            .any(|m| m["message"] == previewed.as_str() && m["phone"] == "13800000002")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never received {previewed:?}; it got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stack.stop();
}

/// The expert writes, signs, verifies, prints and amends the report; the applicant reads and
/// prints it (`appliance/web/e2e/report.mjs`).
#[test]
fn the_expert_writes_signs_and_amends_the_report() {
    let stack = Stack::start(&[]);
    journey(
        "report",
        stack.port,
        &[
            ("ZHAO_PASSWORD", stack.password("doctor.zhao")),
            ("QC_PASSWORD", stack.password("qc.wu")),
            ("CENTRE_PASSWORD", stack.password("centre.zhou")),
            ("EXPERT_PASSWORD", stack.password("expert.wang")),
        ],
        &[
            "41-report-draft",
            "42-report-signed",
            "43-report-versions",
            "44-report-applicant",
        ],
    );
    stack.stop();
}

/// The bell counts notifications pushed as they happen and opens their case
/// (`appliance/web/e2e/notify.mjs`).
#[test]
fn the_bell_rings_and_opens_the_case() {
    let stack = Stack::start(&[]);
    journey(
        "notify",
        stack.port,
        &[
            ("ZHAO_PASSWORD", stack.password("doctor.zhao")),
            ("QC_PASSWORD", stack.password("qc.wu")),
        ],
        &["51-bell", "52-bell-opened"],
    );
    stack.stop();
}

/// Statistics as a chart and a table, exported as CSV and XLSX (`appliance/web/e2e/stats.mjs`).
#[test]
fn the_centre_counts_and_exports_statistics() {
    let stack = Stack::start(&[]);
    journey(
        "stats",
        stack.port,
        &[
            ("ZHAO_PASSWORD", stack.password("doctor.zhao")),
            ("CENTRE_PASSWORD", stack.password("centre.zhou")),
        ],
        &["61-statistics", "62-statistics-en"],
    );
    stack.stop();
}

/// A referral up: proposed, reviewed, assigned, accepted with its admission slip, arrived
/// (`appliance/web/e2e/referral.mjs`).
#[test]
fn a_patient_is_referred_up_and_received() {
    let stack = Stack::start(&[]);
    journey(
        "referral",
        stack.port,
        &[
            ("ZHAO_PASSWORD", stack.password("doctor.zhao")),
            ("REFERRAL_PASSWORD", stack.password("referral.zheng")),
            ("SUN_PASSWORD", stack.password("doctor.sun")),
        ],
        &[
            "71-referral-submitted",
            "72-referral-assigned",
            "73-referral-accepted",
            "74-referrals-list",
        ],
    );
    stack.stop();
}

/// The consultation room: video, images and records framed together; a follower sees what
/// the expert opens and comes back in place after a drop; one, two and three screens
/// (`appliance/web/e2e/room.mjs`).
#[test]
fn the_consultation_room_on_one_two_and_three_screens() {
    let stack = Stack::start(&[]);
    journey(
        "room",
        stack.port,
        &[
            ("ZHAO_PASSWORD", stack.password("doctor.zhao")),
            ("QC_PASSWORD", stack.password("qc.wu")),
            ("CENTRE_PASSWORD", stack.password("centre.zhou")),
            ("EXPERT_PASSWORD", stack.password("expert.wang")),
        ],
        &[
            "81-room-single",
            "82-room-follower",
            "83-room-dual",
            "84-room-images-window",
            "85-room-record-follower",
        ],
    );
    stack.stop();
}

/// The clinical record the demo's HL7 feed filled: the timeline, abnormal values coloured,
/// the glucose trend against its range, a report PDF and a document in the page
/// (`appliance/web/e2e/record.mjs`).
#[test]
fn a_doctor_reads_the_clinical_record_and_a_lab_trend() {
    let stack = Stack::start(&[]);
    journey(
        "record",
        stack.port,
        &[("ZHAO_PASSWORD", stack.password("doctor.zhao"))],
        &[
            "91-record-timeline",
            "92-record-trend",
            "93-record-labs",
            "94-record-document",
            "95-record-en",
        ],
    );
    stack.stop();
}

/// Runs `appliance/web/e2e/<name>.mjs` against the appliance on `port` with `vars` (and BASE,
/// OUT, NEW_PASSWORD); it must pass and leave each of `shots` in target/tmp/web-<name>/.
fn journey(name: &str, port: u16, vars: &[(&str, String)], shots: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("web-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("artifacts folder");
    let mut cmd = Command::new("node");
    cmd.arg(web().join(format!("e2e/{name}.mjs")))
        .current_dir(web())
        .env("BASE", format!("http://127.0.0.1:{port}"))
        .env("NEW_PASSWORD", "Qh7#vLm2$Tz9")
        .env("OUT", &out);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let run = cmd
        .output()
        .expect("node (scripts/test installs the web app's packages)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{log}");
    assert!(run.status.success(), "the {name} journey failed:\n{log}");
    for shot in shots {
        assert!(out.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }
    out
}
