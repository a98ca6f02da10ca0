//! What the operations guide ships is usable as shipped: the hospital configuration template
//! passes `appliance config check` (with certificates `tls init` made), the systemd unit starts
//! the binary with options it has, and every metric the Prometheus alert rules name is one the
//! daemons emit (a renamed metric would leave an alert that can never fire).

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{bin, temp_dir};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_hospital_configuration_template_is_valid() {
    let dir = temp_dir();
    let d = dir.path();
    let data = d.join("data");
    let data = data.to_str().expect("path");
    let init = Command::new(bin("appliance"))
        .current_dir(d)
        .args([
            "--data-dir",
            data,
            "tls",
            "init",
            "--host",
            "consult.hospital.local",
        ])
        .output()
        .expect("tls init");
    assert!(init.status.success(), "{init:?}");
    let template = root().join("deploy/appliance.toml");
    let template = template.to_str().expect("path");
    let cert = format!("tls.cert={data}/tls/server.pem");
    let key = format!("tls.key={data}/tls/server.key");
    let check = |extra: &[&str]| {
        Command::new(bin("appliance"))
            .current_dir(d)
            .args(["--set", &cert, "--set", &key])
            .args(extra)
            .args(["config", "check", template])
            .output()
            .expect("config check")
    };
    let out = check(&[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without its certificate files the template is refused, naming the fields.
    let out = Command::new(bin("appliance"))
        .current_dir(d)
        .args(["config", "check", template])
        .output()
        .expect("config check");
    assert_eq!(out.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.contains("tls.cert"), "{out:?}");
    assert!(errors.contains("cannot read the file"), "{out:?}");
    // DICOM over TLS without TLS is refused by name.
    let out = Command::new(bin("appliance"))
        .current_dir(d)
        .args([
            "--data-dir",
            "elsewhere",
            "--set",
            "listeners.dicom_tls=2762",
        ])
        .args(["config", "show"])
        .output()
        .expect("config show");
    assert_eq!(out.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        errors.contains("listeners.dicom_tls") && errors.contains("needs tls.cert"),
        "{out:?}"
    );
}

#[test]
fn the_systemd_unit_runs_options_the_binary_has() {
    let unit =
        std::fs::read_to_string(root().join("deploy/systemd/appliance.service")).expect("the unit");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[0], "/opt/appliance/bin/appliance");
    let help = Command::new(bin("appliance"))
        .arg("--help")
        .output()
        .expect("appliance --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not an option of appliance");
    }
    assert_eq!(words.last(), Some(&"run"));
    for needed in [
        "User=appliance",
        "UMask=0077",
        "RestartPreventExitStatus=2",
        "ExecReload=",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
}

#[test]
fn every_metric_an_alert_names_is_emitted() {
    let rules = root().join("deploy/prometheus/alerts.yml");
    // PyYAML (installed with schemathesis by scripts/test) reads the rules as Prometheus would.
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, yaml\nfor g in yaml.safe_load(open(sys.argv[1]))['groups']:\n  for r in g['rules']:\n    print(r['alert'], '\\t', r['expr'])",
        )
        .arg(&rules)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut sources = String::new();
    for dir in [
        "appliance/src",
        "imaging/src",
        "sfu/src",
        "firmware-config/runtime/src",
    ] {
        for f in e2e::files_under(&root().join(dir)) {
            if f.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&f).expect("source"));
            }
        }
    }
    let functions = ["sum", "rate", "increase", "by", "time"];
    let mut checked = 0;
    for line in listed.lines() {
        let (alert, expr) = line.split_once('\t').expect("alert and expr");
        // Metric names: identifiers with an underscore, outside label matchers' braces.
        let mut depth = 0;
        let bare: String = expr
            .chars()
            .filter(|&c| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => return depth == 0,
                }
                false
            })
            .collect();
        let names: Vec<String> = bare
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with(|c: char| c.is_ascii_lowercase()))
            .map(str::to_owned)
            .collect();
        for name in names {
            if name.contains('_') && !functions.contains(&name.as_str()) {
                assert!(
                    sources.contains(&format!("\"{name}\"")),
                    "{alert}: {name} is emitted nowhere"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "{checked} metric names checked in:\n{listed}");
}
