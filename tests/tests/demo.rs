//! `appliance demo-data` on an empty data directory: it prints a login and one-time password
//! for every role, imports the CT series into imaging and attaches it to a consultation draft;
//! the printed logins work, the experts have tomorrow's slots, the study is queryable in
//! imaging and viewable through a token; a second run refuses to touch a filled database.

use std::process::Command;
use std::time::Duration;

use e2e::api::{activate, call};
use e2e::{Ports, bin, get, temp_dir};

#[test]
fn demo_data_builds_an_alliance_to_try() {
    let dir = temp_dir();
    let d = dir.path();
    let series = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140");
    let demo = || {
        Command::new(bin("appliance"))
            .current_dir(d)
            .arg("demo-data")
            .arg("--series")
            .arg(&series)
            .env_remove("RUST_LOG")
            .output()
            .expect("appliance demo-data")
    };
    let out = demo();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = |name: &str| -> (String, String) {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in:\n{text}"));
        let password = line.split_whitespace().nth(1).expect("a password");
        (name.to_owned(), password.to_owned())
    };
    for role in [
        "system_admin",
        "security_admin",
        "audit_admin",
        "coordinator",
        "qc_reviewer",
        "referral_staff",
        "expert",
        "doctor",
    ] {
        assert!(text.contains(role), "{role} in:\n{text}");
    }
    assert!(text.contains("stored 140"), "{text}");

    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let zhao = activate(port, &login("doctor.zhao"));
    let mine = call(port, "GET", "/api/v1/consultations", &zhao, &[], None).json();
    let draft = &mine["items"][0];
    assert_eq!(draft["state"], "draft", "{mine}");
    assert_eq!(draft["studies"].as_array().map(Vec::len), Some(1), "{mine}");
    let id = draft["id"].as_i64().expect("an id");
    let token = call(
        port,
        "POST",
        &format!("/api/v1/consultations/{id}/view-token"),
        &zhao,
        &[],
        None,
    );
    assert_eq!(token.status, 200, "{}", token.body);
    let experts = call(port, "GET", "/api/v1/experts", &zhao, &[], None).json();
    let items = experts["items"].as_array().expect("experts");
    assert_eq!(items.len(), 3, "{experts}");
    let li = items
        .iter()
        .find(|e| e["name"] == "李主任")
        .expect("李主任");
    let slots = call(
        port,
        "GET",
        &format!("/api/v1/experts/{}/slots?free=true", li["id"]),
        &zhao,
        &[],
        None,
    )
    .json();
    assert_eq!(slots["items"].as_array().map(Vec::len), Some(4), "{slots}");
    let studies = get(ports.imaging_http, "/dicomweb/studies").expect("QIDO");
    assert_eq!(
        studies.json().as_array().map(Vec::len),
        Some(1),
        "{}",
        studies.body
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let again = demo();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has institutions"));
}
