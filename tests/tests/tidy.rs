//! House rules checked over the source tree: every `.rs` file opens with a `//!` line saying
//! what it owns; every crate folder named in docs/ARCHITECTURE.md exists; each crate depends
//! only on what its list below allows (the pure cores on no IO crate, imaging and sfu never on
//! appliance); unsafe code lives only in the listed modules, each block with a `SAFETY:`
//! comment and each unsafe function with a `# Safety` section; and a file over
//! `LARGE_LINES` lines is named below with the reason to keep it whole.

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
            if !(name.starts_with('.')
                || ["target", "data", "node_modules", "dist"].contains(&name.as_ref()))
            {
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

/// Each workspace member's normal dependencies (build and target-specific ones included; dev
/// dependencies are the tests' business). A dependency not listed fails the test: add it here
/// with the reason in the commit that needs it. A listed one no longer used fails too.
const DEPENDENCIES: &[(&str, &[&str])] = &[
    // Configuration: parsing, sizes and durations, URLs, wiping secrets. No IO crate.
    (
        "firmware-config",
        &["humantime", "serde", "thiserror", "toml", "url", "zeroize"],
    ),
    // The daemons' shared plumbing: HTTP (axum on tokio), CLI, logs, metrics, signed tokens,
    // glibc's allocator settings.
    (
        "firmware-config/runtime",
        &[
            // National cryptography shared by the daemons (gm.rs): SM4-GCM, SM3, key files.
            "aes-gcm",
            "axum",
            "base64",
            "clap",
            "ed25519-dalek",
            "firmware-config",
            "libc",
            "metrics",
            "metrics-exporter-prometheus",
            "rand_core",
            // TLS on every listener (ring, already built for WebRTC).
            "rustls",
            "rustls-pki-types",
            "serde",
            "serde_json",
            "sm3",
            "sm4",
            "thiserror",
            "tokio",
            "tokio-rustls",
            "tracing",
            "tracing-subscriber",
        ],
    ),
    // The pure rendering core: threads (rayon), encoders, the GPU driver's API, madvise.
    (
        "render",
        &[
            "bytemuck",
            "jpeg-encoder",
            "libc",
            "png",
            "pollster",
            "rayon",
            "thiserror",
            "turbojpeg",
            "wgpu",
        ],
    ),
    (
        "imaging",
        &[
            "axum",
            "base64",
            "charls",
            "clap",
            "dicom-core",
            "dicom-dictionary-std",
            "dicom-object",
            "dicom-pixeldata",
            "dicom-transfer-syntax-registry",
            "dicom-ul",
            "ed25519-dalek",
            "firmware-config",
            "firmware-runtime",
            // The guard inflates deflated data sets to check their lengths.
            "flate2",
            "jpeg-decoder",
            "jpeg2k",
            "memchr",
            "metrics",
            "png",
            "rayon",
            "render",
            // DICOM over TLS: the listeners' certificate, as dicom-ul takes it.
            "rustls",
            "serde",
            "serde_json",
            "socket2",
            "sqlx",
            "thiserror",
            "tiff",
            "tokio",
            "tracing",
            "url",
            "zip",
        ],
    ),
    (
        "sfu",
        &[
            "async-trait",
            "axum",
            "clap",
            "ed25519-dalek",
            "firmware-config",
            "firmware-runtime",
            "metrics",
            "rtc",
            "serde",
            "serde_json",
            "sfu-core",
            "socket2",
            "str0m",
            "thiserror",
            "tokio",
            "tracing",
            "webrtc",
        ],
    ),
    // The pure forwarding core, and the signalling messages parsed without IO (serde_json).
    ("sfu/core", &["serde_json", "thiserror"]),
    (
        "appliance",
        &[
            // GCM over SM4 (the mode is generic over the block cipher).
            "aes-gcm",
            "anyhow",
            "argon2",
            "axum",
            "base64",
            "clap",
            "ed25519-dalek",
            "firmware-config",
            "firmware-runtime",
            "futures-util",
            "hmac",
            "hl7v2",
            "imaging",
            "jpeg-decoder",
            "krilla",
            "metrics",
            "png",
            "rand_core",
            // `tls init`: the local CA and server certificates.
            "rcgen",
            // `report verify --ca`: the local CA's ECDSA signature on the report certificate
            // (already in the tree through rustls).
            "ring",
            "rustls-pki-types",
            // The HL7 writer kept on one CPU (already in the tree through tempfile).
            "rustix",
            "serde",
            "serde_json",
            "sfu",
            "sha1",
            "sha2",
            // SM2 report signatures (GB/T 32918).
            "sm2",
            // National cryptography: backup manifests, sealed columns.
            "sm3",
            "sm4",
            "sqlx",
            "thiserror",
            "time",
            "tokio",
            "toml",
            "tracing",
            "url",
            "workflow",
            "zip",
        ],
    ),
    // The pure workflow core.
    ("appliance/workflow", &["serde", "thiserror"]),
    // HL7 v2 with no IO: ED payloads in Base64, GB 18030 and the other character sets.
    ("appliance/hl7", &["base64", "encoding_rs", "thiserror"]),
    (
        "benches",
        &[
            "anyhow",
            "async-trait",
            "e2e",
            "ed25519-dalek",
            "futures-util",
            "hl7v2",
            "imaging",
            "rayon",
            "render",
            "rtc",
            "serde_json",
            "sfu",
            "tempfile",
            "tokio",
            "tokio-tungstenite",
            "turbojpeg",
            "webrtc",
        ],
    ),
    (
        "tests",
        &[
            "async-trait",
            "base64",
            "ed25519-dalek",
            "firmware-runtime",
            "futures-util",
            "rtc",
            "serde_json",
            "sfu",
            "tempfile",
            "tokio",
            "tokio-tungstenite",
            "url",
            "webrtc",
        ],
    ),
];

/// The pure cores: state machines and pixels, no sockets, files, runtimes or databases.
const PURE: &[&str] = &[
    "render",
    "sfu/core",
    "appliance/workflow",
    "appliance/hl7",
    "firmware-config",
];

/// Crates that do IO (network, async runtimes, databases, HTTP, DICOM networking, media
/// transports) or run a daemon: none may appear in a pure core's list.
const IO_CRATES: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "reqwest",
    "tower",
    "tower-http",
    "mio",
    "socket2",
    "sqlx",
    "tokio-tungstenite",
    "dicom-ul",
    "str0m",
    "webrtc",
    "rtc",
    "quinn",
    "metrics-exporter-prometheus",
    "firmware-runtime",
    "imaging",
    "sfu",
    "appliance",
];

/// The crates the appliance owns; imaging, sfu and everything below them never depend on
/// them (they trust only the tokens it signs).
const APPLIANCE_ONLY: &[&str] = &["appliance", "workflow"];
const BELOW_APPLIANCE: &[&str] = &[
    "imaging",
    "sfu",
    "sfu/core",
    "render",
    "firmware-config",
    "firmware-config/runtime",
];

fn workspace_members() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let doc: toml::Table = text.parse().expect("Cargo.toml parses");
    doc["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().expect("member path").to_owned())
        .collect()
}

/// A crate's normal, build and target-specific dependencies, by the name it uses.
fn dependencies(member: &str) -> std::collections::BTreeSet<String> {
    let path = root().join(member).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("member Cargo.toml");
    let doc: toml::Table = text.parse().expect("member Cargo.toml parses");
    let mut out = std::collections::BTreeSet::new();
    let mut add = |t: Option<&toml::Value>| {
        if let Some(t) = t.and_then(toml::Value::as_table) {
            out.extend(t.keys().cloned());
        }
    };
    add(doc.get("dependencies"));
    add(doc.get("build-dependencies"));
    if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            add(target.get("dependencies"));
            add(target.get("build-dependencies"));
        }
    }
    out
}

fn allowed(member: &str) -> &'static [&'static str] {
    DEPENDENCIES
        .iter()
        .find(|(m, _)| *m == member)
        .map(|(_, deps)| *deps)
        .unwrap_or_else(|| panic!("workspace member {member} has no dependency list in tidy.rs"))
}

#[test]
fn every_crate_depends_only_on_what_its_list_allows() {
    let members = workspace_members();
    assert!(members.len() >= 8, "found only {members:?}");
    let mut wrong = Vec::new();
    for member in &members {
        let list = allowed(member);
        let deps = dependencies(member);
        for dep in &deps {
            if !list.contains(&dep.as_str()) {
                wrong.push(format!(
                    "{member} depends on `{dep}`, which its list does not allow"
                ));
            }
        }
        for dep in list {
            if !deps.contains(*dep) {
                wrong.push(format!(
                    "{member}'s list allows `{dep}`, which it no longer uses"
                ));
            }
        }
    }
    for (member, _) in DEPENDENCIES {
        if !members.iter().any(|m| m == member) {
            wrong.push(format!("{member} is listed but is not a workspace member"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_pure_cores_do_no_io_and_nothing_below_depends_on_the_appliance() {
    for member in PURE {
        let io: Vec<&&str> = allowed(member)
            .iter()
            .filter(|d| IO_CRATES.contains(d))
            .collect();
        assert!(io.is_empty(), "{member} may not depend on {io:?}");
    }
    for member in BELOW_APPLIANCE {
        let up: Vec<&&str> = allowed(member)
            .iter()
            .filter(|d| APPLIANCE_ONLY.contains(d))
            .collect();
        assert!(up.is_empty(), "{member} may not depend on {up:?}");
    }
}

/// The modules allowed to use unsafe code, and why each needs it.
const UNSAFE_MODULES: &[(&str, &str)] = &[
    (
        "render/src/simd/mod.rs",
        "the SIMD kernels' dispatch: calls into target-feature functions once the CPU is known",
    ),
    (
        "render/src/simd/avx2.rs",
        "AVX2 intrinsics and gathers through raw pointers (indices clamped first)",
    ),
    (
        "render/src/simd/avx512.rs",
        "AVX-512 intrinsics, gathers and prefetches (indices clamped first)",
    ),
    (
        "render/src/pages.rs",
        "madvise on the process's own voxel buffers (2 MiB pages)",
    ),
    (
        "render/src/encode.rs",
        "libjpeg-turbo's C API for grey frames (tjCompressFromYUV)",
    ),
    (
        "firmware-config/runtime/src/memory.rs",
        "glibc's mallopt and malloc_trim",
    ),
];

/// A line's code: without string literals' contents and without a trailing `//` comment
/// (enough to find the `unsafe` keyword; raw strings over several lines are not tracked).
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push('"');
        } else if c == '/' && chars.peek() == Some(&'/') {
            break;
        } else {
            out.push(c);
        }
    }
    out
}

fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

fn rust_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What is wrong with the unsafe code of one file (`rel`: its path from the root): its use
/// outside the listed modules, a block without a `SAFETY:` comment, an unsafe function
/// without a `# Safety` section.
fn unsafe_findings(rel: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let uses: Vec<usize> = (0..lines.len())
        .filter(|&i| has_word(&code_of(lines[i]), "unsafe"))
        .collect();
    if uses.is_empty() {
        return Vec::new();
    }
    if !UNSAFE_MODULES.iter().any(|(m, _)| *m == rel) {
        return vec![format!("{rel}: unsafe code outside the listed modules")];
    }
    let mut wrong = Vec::new();
    for &i in &uses {
        let function = has_word(&code_of(lines[i]), "fn");
        // Walk up over comments, attributes and sibling unsafe lines (one `SAFETY (each)`
        // comment may cover a match's arms) to the comment that justifies it.
        let mut justified = lines[i].contains("// SAFETY");
        let mut j = i;
        while !justified && j > 0 {
            j -= 1;
            let above = lines[j].trim();
            let code = code_of(above);
            let sibling = has_word(&code, "unsafe") && !has_word(&code, "fn");
            let comment = above.starts_with("//");
            if !(comment || above.starts_with("#[") || sibling) {
                break;
            }
            justified = if function {
                above.starts_with("///") && above.contains("# Safety")
            } else {
                comment && above.contains("SAFETY")
            };
        }
        if !justified {
            let want = if function {
                "a `# Safety` doc section"
            } else {
                "a `// SAFETY:` comment"
            };
            wrong.push(format!("{rel}:{}: unsafe without {want}", i + 1));
        }
    }
    wrong
}

#[test]
fn unsafe_code_lives_only_in_the_listed_modules_and_says_why() {
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for file in rust_sources() {
        let rel = relative(&file);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().any(|l| has_word(&code_of(l), "unsafe")) {
            seen.push(rel.clone());
        }
        wrong.extend(unsafe_findings(&rel, &text));
    }
    for (module, _) in UNSAFE_MODULES {
        if !seen.iter().any(|s| s == module) {
            wrong.push(format!("{module} is listed but has no unsafe code"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The checker itself: it finds what it must, and lets through what is justified.
#[test]
fn the_unsafe_check_finds_unjustified_blocks() {
    let listed = "render/src/pages.rs";
    let good = "/// # Safety\n/// The CPU has AVX2.\n#[inline]\nunsafe fn f() {}\n\
                fn g() {\n    // SAFETY: f's condition holds.\n    #[cfg(x)]\n    unsafe { f() };\n\
                    let s = \"unsafe in a string\"; // and unsafe in a comment\n}\n";
    assert_eq!(unsafe_findings(listed, good), Vec::<String>::new());
    let bad = "fn g() {\n    let x = 1;\n    unsafe { f() };\n}\n/// Does f.\nunsafe fn f() {}\n";
    assert_eq!(
        unsafe_findings(listed, bad),
        [
            format!("{listed}:3: unsafe without a `// SAFETY:` comment"),
            format!("{listed}:6: unsafe without a `# Safety` doc section"),
        ]
    );
    assert_eq!(
        unsafe_findings("sfu/src/lib.rs", good),
        ["sfu/src/lib.rs: unsafe code outside the listed modules"]
    );
}

/// Lines above which a file must be named below with the reason to keep it whole.
const LARGE_LINES: usize = 900;

/// Files over `LARGE_LINES` lines and why each stays whole (or which issue splits it).
const LARGE_FILES: &[(&str, &str)] = &[
    (
        "sfu/src/transport.rs",
        "the str0m driver; the SFU issue (25) splits it into sfu/src/driver/",
    ),
    (
        "sfu/src/media.rs",
        "the webrtc-rs transport, which the SFU issue (25) removes",
    ),
    (
        "sfu/tests/media.rs",
        "media tests run against both transports; they halve when the SFU issue (25) removes one",
    ),
    (
        "imaging/src/viewer/view.rs",
        "the viewer's state machine; the viewer issue (21) splits it",
    ),
    (
        "appliance/workflow/src/consultation.rs",
        "one state machine: its transition table and the property tests over random action \
         sequences (half the file) read together",
    ),
    (
        "tests/tests/consultations.rs",
        "the consultation journeys share one running appliance and its people; split by \
         journey when the consultation centre's browser tests take them over",
    ),
];

#[test]
fn large_files_are_named_with_a_reason() {
    let mut wrong = Vec::new();
    for file in rust_sources() {
        let rel = relative(&file);
        let lines = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count();
        let listed = LARGE_FILES.iter().any(|(f, _)| *f == rel);
        if lines > LARGE_LINES && !listed {
            wrong.push(format!(
                "{rel} has {lines} lines: split it, or name it in LARGE_FILES with a reason"
            ));
        }
        if lines <= LARGE_LINES && listed {
            wrong.push(format!("{rel} has {lines} lines: take it off LARGE_FILES"));
        }
    }
    for (file, reason) in LARGE_FILES {
        assert!(!reason.is_empty(), "{file}: no reason");
        if !root().join(file).is_file() {
            wrong.push(format!("{file} is in LARGE_FILES but does not exist"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
