//! Every bench binary answers `--help` with its usage (exit 0), and a wrong argument with what
//! is wrong and the usage (exit 2), never a panic and a backtrace. The benches themselves are
//! run by hand (docs/PERFORMANCE.md); this only runs their command lines.

use std::process::Command;

use e2e::bin;

const BENCHES: [(&str, &str); 8] = [
    ("gpu", "not-a-number"),
    ("ingest", "many"),
    ("mpr_frame", "0"),
    ("record", "10"),
    ("sfu_load", "1,x"),
    ("startup", "-5"),
    ("viewer", "extra"),
    ("web", "0"),
];

#[test]
fn bench_binaries_answer_help_and_refuse_bad_arguments() {
    for (name, bad) in BENCHES {
        let help = Command::new(bin(name))
            .arg("--help")
            .output()
            .expect("run the bench");
        let out = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{name} --help: {help:?}");
        assert!(
            out.starts_with(&format!("usage: {name}")),
            "{name} --help printed:\n{out}"
        );

        let wrong = Command::new(bin(name))
            .arg(bad)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run the bench");
        let err = String::from_utf8_lossy(&wrong.stderr);
        assert_eq!(wrong.status.code(), Some(2), "{name} {bad}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(&format!("usage: {name}")),
            "{name} {bad} printed:\n{err}"
        );
        assert!(!err.contains("panicked"), "{name} {bad} panicked:\n{err}");
    }
}
