//! The dependency policy holds (`scripts/deny`: cargo deny, offline, against the dated RustSec
//! snapshot in deny/advisories.json), and its advisory check can fail: an advisory against a
//! crate the workspace uses, added to a copy of the snapshot, fails the run by its id.

use std::process::Command;

fn deny(advisories: Option<&std::path::Path>) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(root.join("scripts/deny"));
    cmd.current_dir(&root);
    if let Some(file) = advisories {
        cmd.env("DENY_ADVISORIES", file);
    }
    // Its own folder under the target directory: the two runs may overlap.
    let target = e2e::temp_dir();
    cmd.env("CARGO_TARGET_DIR", target.path());
    let out = cmd.output().expect("run scripts/deny");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_dependency_policy_holds_and_an_advisory_fails_it() {
    let (ok, text) = deny(None);
    assert!(ok, "{text}");
    assert!(
        text.contains("advisories ok, bans ok, licenses ok, sources ok"),
        "{text}"
    );

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deny/advisories.json")).expect("the snapshot"),
    )
    .expect("JSON");
    snapshot["advisories"]
        .as_array_mut()
        .expect("advisories")
        .push(serde_json::json!({
            "id": "RUSTSEC-2099-0001", "package": "sm2", "date": "2099-01-01",
            "url": "https://example.invalid/sm2", "categories": ["crypto-failure"],
            "patched": [">= 99.0.0"]
        }));
    let dir = e2e::temp_dir();
    let file = dir.path().join("advisories.json");
    std::fs::write(&file, snapshot.to_string()).expect("write");
    let (ok, text) = deny(Some(&file));
    assert!(!ok, "a vulnerable crate passed:\n{text}");
    assert!(
        text.contains("RUSTSEC-2099-0001") && text.contains("advisories FAILED"),
        "{text}"
    );
}
