//! House rules checked over the source tree: every `.rs` file opens with a `//!` line saying
//! what it owns, and every crate folder named in docs/ARCHITECTURE.md exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "data") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("//! ") && l.len() > 10)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:#?}"
    );
}

#[test]
fn the_architecture_map_matches_the_tree() {
    let map =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    for folder in [
        "firmware-config",
        "firmware-config/runtime",
        "render",
        "imaging",
        "sfu",
        "appliance",
        "benches",
        "tests",
        "docs",
    ] {
        assert!(root().join(folder).is_dir(), "{folder} missing");
        assert!(
            map.contains(&format!("`{folder}/`")),
            "docs/ARCHITECTURE.md does not map `{folder}/`"
        );
    }
}
