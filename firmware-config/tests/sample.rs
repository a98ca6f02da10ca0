//! The commented sample is generated from the schema: it must parse back to the defaults, and
//! docs/config-sample.toml must be exactly what `appliance config sample` prints today.
//! `UPDATE_SAMPLE=1 cargo test -p firmware-config --test sample` rewrites the file.

use firmware_config::{Config, Origin, check_document};

#[test]
fn sample_parses_back_to_the_defaults() {
    let sample = Config::sample();
    let config = check_document(&sample, Origin::Default).expect("sample is valid");
    assert_eq!(config, Config::default());
    // Every field is documented: each key line follows at least one comment line.
    for section in [
        "[site]",
        "[listeners]",
        "[tls]",
        "[storage]",
        "[database]",
        "[imaging]",
        "[sfu]",
        "[notifications]",
        "[security]",
        "[integration]",
    ] {
        assert!(sample.contains(section), "{section} missing");
    }
    let lines: Vec<&str> = sample.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let is_key = !line.starts_with('#') && line.contains(" = ");
        if is_key {
            assert!(lines[i - 1].starts_with('#'), "undocumented: {line}");
        }
    }
}

#[test]
fn docs_sample_has_not_drifted() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config-sample.toml");
    let sample = Config::sample();
    if std::env::var_os("UPDATE_SAMPLE").is_some() {
        std::fs::write(&path, &sample).expect("write sample");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == sample,
        "docs/config-sample.toml differs from the schema: run `cargo run -p appliance -- config sample > docs/config-sample.toml` \
         (or UPDATE_SAMPLE=1 cargo test -p firmware-config --test sample)"
    );
}
