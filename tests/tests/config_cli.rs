//! `appliance config ...` as a real process: `check` gives each kind of bad configuration its
//! own message naming the field and exits non-zero; `show` masks secrets and says where values
//! came from; `sample` is the documented sample; `save`, `history` and `rollback` manage the
//! run-time store, and `run` uses its current version.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::{Daemon, Ports, bin, temp_dir};

fn appliance(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("appliance"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run appliance")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_names_each_kind_of_bad_field() {
    let dir = temp_dir();
    let cases = [
        (
            "unknown key",
            "[listeners]\nhtpp = 9000\n",
            "listeners.htpp",
            "unknown key",
        ),
        (
            "wrong type",
            "[listeners]\nhttp = \"eighty\"\n",
            "listeners.http",
            "invalid type",
        ),
        (
            "port out of range",
            "[listeners]\ndicom = 70000\n",
            "listeners.dicom",
            "out of range",
        ),
        (
            "duplicate port",
            "[listeners]\nsfu_signalling = 8081\n",
            "listeners.sfu_signalling",
            "also used by listeners.imaging_http",
        ),
        (
            "missing cert file",
            "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
            "tls.cert",
            "No such file",
        ),
        (
            "bad URL",
            "[integration]\nfhir_base_url = \"fhir server\"\n",
            "integration.fhir_base_url",
            "not a URL",
        ),
    ];
    for (what, toml, field, reason) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, toml).expect("write");
        let out = appliance(dir.path(), &["config", "check", "bad.toml"], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(field) && err.contains(reason),
            "{what}: expected {field} / {reason} in:\n{err}"
        );
        assert!(
            err.contains("bad.toml"),
            "{what}: the message says which file: {err}"
        );
    }

    std::fs::write(
        dir.path().join("good.toml"),
        "[site]\nname = \"城西社区卫生服务中心\"\n",
    )
    .expect("write");
    let out = appliance(dir.path(), &["config", "check", "good.toml"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("good.toml: valid"));

    let out = appliance(dir.path(), &["config", "check", "missing.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the configuration file"));
}

#[test]
fn show_masks_secrets_and_names_origins() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("site.toml"),
        "[notifications]\nsms_gateway = \"http-json\"\nsms_url = \"https://sms.hospital.local/send\"\nsms_api_key = \"file-secret-42\"\n",
    )
    .expect("write");
    let out = appliance(
        dir.path(),
        &[
            "--config",
            "site.toml",
            "--set",
            "sfu.max_rooms=7",
            "config",
            "show",
        ],
        &[(
            "APPLIANCE__DATABASE__URL",
            "postgres://app:pg-secret-77@db.local/appliance",
        )],
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !shown.contains("file-secret-42") && !shown.contains("pg-secret-77"),
        "{shown}"
    );
    assert!(
        shown.contains("sms_api_key = \"********\"  # from file site.toml"),
        "{shown}"
    );
    assert!(
        shown.contains("max_rooms = 7  # from command line `sfu.max_rooms=7`"),
        "{shown}"
    );
    assert!(
        shown.contains("# from environment variable APPLIANCE__DATABASE__URL"),
        "{shown}"
    );
    assert!(
        shown.contains("http = 8080\n"),
        "defaults carry no origin comment: {shown}"
    );
    // What `show` prints is itself a valid configuration.
    std::fs::write(dir.path().join("shown.toml"), &shown).expect("write");
    let out = appliance(dir.path(), &["config", "check", "shown.toml"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn sample_is_the_documented_sample() {
    let dir = temp_dir();
    let out = appliance(dir.path(), &["config", "sample"], &[]);
    assert!(out.status.success());
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config-sample.toml"),
    )
    .expect("docs/config-sample.toml");
    assert_eq!(
        text(&out.stdout),
        docs,
        "docs/config-sample.toml drifted from `appliance config sample`"
    );
}

#[test]
fn store_versions_take_effect_and_roll_back() {
    let dir = temp_dir();
    let d = dir.path();
    std::fs::write(d.join("v1.toml"), "[site]\nname = \"第一人民医院\"\n").expect("write");
    std::fs::write(
        d.join("v2.toml"),
        "[site]\nname = \"第一人民医院（东院）\"\n",
    )
    .expect("write");
    std::fs::write(d.join("bad.toml"), "[security]\nlockout_threshold = 50\n").expect("write");

    let out = appliance(
        d,
        &[
            "config",
            "save",
            "v1.toml",
            "--by",
            "sysadmin",
            "--comment",
            "site name",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("saved version 1"));
    let out = appliance(
        d,
        &[
            "config", "save", "v2.toml", "--by", "sysadmin", "--base", "1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A stale base conflicts; an invalid document is refused; neither changes anything.
    let out = appliance(
        d,
        &["config", "save", "v1.toml", "--by", "other", "--base", "1"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("current version is Some(2)"),
        "{}",
        text(&out.stderr)
    );
    let out = appliance(d, &["config", "save", "bad.toml", "--by", "sysadmin"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("security.lockout_threshold"),
        "{}",
        text(&out.stderr)
    );

    let history = text(&appliance(d, &["config", "history"], &[]).stdout);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[1].starts_with("*    2") && lines[1].contains("sysadmin"),
        "{history}"
    );

    // `run` uses the current stored version.
    let ports = Ports::free();
    let mut run = Command::new(bin("appliance"));
    run.current_dir(d).args(ports.args());
    let mut daemon = Daemon::spawn(run);
    let (api, _) = daemon.wait_ok(ports.http, "/api/v1", Duration::from_secs(20));
    assert_eq!(api.json()["site"], "第一人民医院（东院）");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));

    // Rolling back restores version 1 exactly.
    let out = appliance(d, &["config", "rollback", "1", "--by", "secadmin"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("version 1 restored as version 3"));
    let stored = std::fs::read_to_string(d.join("data/config/versions/00000003.toml")).expect("v3");
    assert_eq!(
        stored,
        std::fs::read_to_string(d.join("v1.toml")).expect("v1")
    );
    let shown = text(&appliance(d, &["config", "show"], &[]).stdout);
    assert!(
        shown.contains("name = \"第一人民医院\"  # from stored version 3"),
        "{shown}"
    );
    let out = appliance(d, &["config", "rollback", "99", "--by", "secadmin"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("version 99 is not in the store"));
}
