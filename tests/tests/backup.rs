//! Backups taken while the stack runs and writes, against the real binaries: a doctor keeps
//! starting consultations through the API and dcmtk's storescu keeps sending a 140-slice CT
//! while `appliance backup` runs; the backup verifies, restores into a fresh data directory,
//! and the restored stack starts and serves exactly what the snapshot holds — its
//! consultations, every indexed instance with its file, and an intact audit chain.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use e2e::api::{activate, call};
use e2e::{Ports, bin, temp_dir};
use serde_json::json;

fn appliance(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("appliance"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run appliance")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_backup_under_write_load_restores_whole_and_serves() {
    let dir = temp_dir();
    let d = dir.path();
    let logins = e2e::api::demo_data(d);
    let zhao_password = e2e::api::demo_password(&logins, "doctor.zhao");
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let zhao = activate(port, &("doctor.zhao".to_owned(), zhao_password));
    let found = call(
        port,
        "GET",
        "/api/v1/patients?q=330102195603140019",
        &zhao,
        &[],
        None,
    );
    let patient = found.json()["items"][0]["id"].as_i64().expect(&found.body);

    // The load: consultations through the API, instances over DICOM.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, made, token) = (stop.clone(), made.clone(), zhao.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = call(
                    port,
                    "POST",
                    "/api/v1/consultations",
                    &token,
                    &[],
                    Some(
                        json!({ "patient": patient, "kind": "remote", "mode": "named",
                                 "reason": "备份压力测试" }),
                    ),
                );
                assert_eq!(r.status, 201, "{}", r.body);
                made.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let sender = {
        let (stop, dicom) = (stop.clone(), ports.dicom);
        std::thread::spawn(move || {
            for chunk in e2e::ct_series_files().chunks(10) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let out = Command::new("storescu")
                    .args(["-aec", "APPLIANCE", "127.0.0.1", &dicom.to_string()])
                    .args(chunk)
                    .output()
                    .expect("storescu (scripts/test installs dcmtk)");
                assert!(out.status.success(), "{}", text(&out));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let before = made.load(Ordering::Relaxed);
    let out_dir = d.join("backups");
    let taken = appliance(d, &["backup", "--to", out_dir.to_str().expect("path")]);
    assert!(taken.status.success(), "{}", text(&taken));
    let after = made.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    sender.join().expect("sender");
    assert!(after > before, "the load kept writing during the backup");

    let backups: Vec<_> = std::fs::read_dir(&out_dir)
        .expect("backups")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = &backups[0];
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    let counts = &manifest["counts"];
    let consultations = counts["consultations"].as_i64().expect("count");
    let instances = counts["instances"].as_i64().expect("count");
    // Two demo drafts, then what the load made up to the snapshot's moment.
    assert!(
        consultations >= 2 + before as i64 && consultations <= 2 + after as i64,
        "{consultations} not within {before}..{after} + 2"
    );
    assert!(instances >= 42, "{instances}");
    let verified = appliance(d, &["backup", "verify", backup.to_str().expect("path")]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("intact"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));

    // Each DICOM association that stored instances is in the audit trail under its AE title.
    let audited = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nprint(*c.execute(\"SELECT count(*), \
             min(target) FROM audit_log WHERE login='ae:STORESCU' AND action='image_store' \
             AND result='ok' AND source='127.0.0.1'\").fetchone())",
        )
        .arg(d.join("data/appliance.db"))
        .output()
        .expect("python3");
    let audited = String::from_utf8_lossy(&audited.stdout).into_owned();
    let count: u32 = audited
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count >= 1 && audited.contains("dicom:"), "{audited}");
    // A damaged copy is refused by name; restore never writes into a data directory in use.
    let refused = appliance(
        d,
        &[
            "--data-dir",
            d.join("data").to_str().expect("path"),
            "restore",
            backup.to_str().expect("path"),
        ],
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("not empty"), "{}", text(&refused));

    let restored = d.join("restored");
    let r = appliance(
        d,
        &[
            "--data-dir",
            restored.to_str().expect("path"),
            "restore",
            backup.to_str().expect("path"),
        ],
    );
    assert!(r.status.success(), "{}", text(&r));
    let audit = appliance(
        d,
        &[
            "--data-dir",
            restored.to_str().expect("path"),
            "audit",
            "verify",
        ],
    );
    assert!(
        text(&audit).contains("the audit chain is intact"),
        "{}",
        text(&audit)
    );
    assert!(
        text(&audit).contains(&format!("{} records checked", counts["audit_log"])),
        "{}",
        text(&audit)
    );

    // The restored stack starts and serves what the snapshot held.
    let ports = Ports::free();
    let mut again = e2e::api::start(d, &ports, &["--data-dir", restored.to_str().expect("path")]);
    let login = e2e::request(
        ports.http,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        json!({ "login": "doctor.zhao", "password": "Consult-2026" })
            .to_string()
            .as_bytes(),
    )
    .expect("login");
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.json()["token"].as_str().expect("token").to_owned();
    // Consultation ids run 1..=N without gaps: the last one the snapshot holds is there, the
    // next one (made after the snapshot's moment) is not.
    let last = call(
        ports.http,
        "GET",
        &format!("/api/v1/consultations/{consultations}"),
        &token,
        &[],
        None,
    );
    assert_eq!(last.status, 200, "{}", last.body);
    let next = consultations + 1;
    let later = call(
        ports.http,
        "GET",
        &format!("/api/v1/consultations/{next}"),
        &token,
        &[],
        None,
    );
    assert_eq!(later.status, 404, "{}", later.body);
    let bearer = format!(
        "Bearer {}",
        e2e::service_token(&e2e::stack_signer(&restored), false)
    );
    let qido = e2e::request(
        ports.imaging_http,
        "GET",
        "/dicomweb/instances?limit=10000",
        &[("Authorization", &bearer)],
        &[],
    )
    .expect("QIDO");
    assert_eq!(
        qido.json().as_array().map(|a| a.len() as i64),
        Some(instances)
    );
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let log = again.stderr();
    assert!(log.contains("DICOM store checked"), "{log}");
    assert!(!log.contains("instance file missing"), "{log}");
    assert!(!log.contains("unreadable file"), "{log}");
}

#[test]
fn scheduled_backups_are_taken_and_kept_to_their_number() {
    let dir = temp_dir();
    let d = dir.path();
    let out = d.join("scheduled");
    let ports = Ports::free();
    let set = format!("backup.dir={}", out.display());
    // The keys are sealed with a passphrase in every scheduled backup.
    let passphrase = d.join("backup-passphrase");
    std::fs::write(&passphrase, "梅雨季节 correct horse battery\n").expect("passphrase");
    let sealed_by = format!("backup.key_passphrase_file={}", passphrase.display());
    let mut daemon = e2e::api::start(
        d,
        &ports,
        &["--set", &set, "--set", "backup.keep=1", "--set", &sealed_by],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let taken = loop {
        let done: Vec<_> = std::fs::read_dir(&out)
            .map(|r| {
                r.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| !p.to_string_lossy().ends_with(".partial"))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(first) = done.first() {
            break first.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup within a minute"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let verified = appliance(d, &["backup", "verify", taken.to_str().expect("path")]);
    assert!(verified.status.success(), "{}", text(&verified));
    let metrics = e2e::get(ports.http, "/metrics").expect("metrics").body;
    assert!(
        metrics.contains("backup_last_success_timestamp_seconds"),
        "{metrics}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));
    check_sealed_keys(d, &taken, &passphrase);
    // A bad schedule is refused by field.
    let bad = appliance(d, &["--set", "backup.every_hours=0", "config", "show"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("backup.every_hours"), "{}", text(&bad));
    std::fs::write(&passphrase, "short\n").expect("passphrase");
    let bad = appliance(d, &["--set", &sealed_by, "config", "show"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("backup.key_passphrase_file") && text(&bad).contains("12 characters"),
        "{}",
        text(&bad)
    );
}

/// A backup whose keys are sealed: no key in the clear, the passphrase checked by `verify`,
/// needed by `restore` (which writes nothing without it), and the keys restored byte for byte.
fn check_sealed_keys(d: &Path, taken: &Path, passphrase: &Path) {
    let data_key = std::fs::read_to_string(d.join("data/keys/data.key")).expect("data key");
    assert!(!taken.join("keys").exists() && !taken.join("tls").exists());
    let sealed = std::fs::read(taken.join("keys.sealed")).expect("keys.sealed");
    let needle = data_key.trim().as_bytes();
    assert!(!sealed.windows(needle.len()).any(|w| w == needle));
    let path = |p: &Path| p.to_str().expect("path").to_owned();
    let with = [
        "backup".to_owned(),
        "verify".to_owned(),
        path(taken),
        "--key-passphrase-file".to_owned(),
        path(passphrase),
    ];
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    let verified = appliance(d, &with);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("the passphrase opens them"),
        "{}",
        text(&verified)
    );
    let wrong = d.join("wrong-passphrase");
    std::fs::write(&wrong, "not the passphrase at all\n").expect("wrong");
    let mut refused = with.clone();
    let wrong_path = path(&wrong);
    refused[4] = &wrong_path;
    let r = appliance(d, &refused);
    assert!(!r.status.success());
    assert!(
        text(&r).contains("keys.sealed") && text(&r).contains("passphrase"),
        "{}",
        text(&r)
    );
    let restored = d.join("restored");
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "--data-dir".to_owned(),
            path(&restored),
            "restore".to_owned(),
            path(taken),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        appliance(d, &args)
    };
    for extra in [&[][..], &["--key-passphrase-file", &wrong_path][..]] {
        let r = restore(extra);
        assert!(!r.status.success(), "{extra:?}");
        assert!(text(&r).contains("passphrase"), "{}", text(&r));
        assert!(!restored.exists(), "nothing is written without the keys");
    }
    let r = restore(&["--key-passphrase-file", &path(passphrase)]);
    assert!(r.status.success(), "{}", text(&r));
    for key in [
        "keys/data.key",
        "keys/token-signing.key",
        "keys/report-sm2.key",
        "keys/report-sm2.pem",
        "tls/ca.key",
        "tls/ca.pem",
    ] {
        assert_eq!(
            std::fs::read(restored.join(key)).expect(key),
            std::fs::read(d.join("data").join(key)).expect(key),
            "{key}"
        );
    }
    let audit = appliance(d, &["--data-dir", &path(&restored), "audit", "verify"]);
    assert!(
        text(&audit).contains("the audit chain is intact"),
        "{}",
        text(&audit)
    );
}
