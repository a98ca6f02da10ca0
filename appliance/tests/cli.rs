//! The `appliance` binary's command line: `--help` and `--version` work and name the options every
//! daemon shares. (Being an integration test also makes `cargo test` build the binary, which
//! the end-to-end tests in tests/ run.)

use std::process::Command;

#[test]
fn help_names_the_shared_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .arg("--help")
        .output()
        .expect("run appliance --help");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--config <FILE>",
        "--data-dir <DIR>",
        "--set <SECTION.KEY=VALUE>",
        "--log-format",
    ] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
}

#[test]
fn version_and_unknown_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .arg("--version")
        .output()
        .expect("run appliance --version");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("appliance "));
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .arg("--no-such-option")
        .output()
        .expect("run appliance");
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-option"));
}
