//! README's port tables (Chinese and English) and ARCHITECTURE's listener table against the
//! sockets `appliance run` really opens: every documented listener not marked planned is
//! open, no planned one is, and every socket the process listens on is documented. The
//! process's sockets are read from /proc (its socket inodes, matched in /proc/PID/net).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::{Ports, temp_dir};

/// One row of a port table: the port or range as written, without words (`8080`,
/// `40000-40999`; `40000 up, one per core` is `40000`), the protocol, and whether it is
/// marked planned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    port: String,
    proto: String,
    planned: bool,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of every table whose first column reads `PORT/tcp` or `PORT/udp`, in the section
/// headed `heading`, with the table's last column (the config field, in ARCHITECTURE).
fn port_rows(text: &str, heading: &str) -> Vec<(Row, String)> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} section"));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text[start..].lines().skip(1) {
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some((port, proto)) = cells[0].rsplit_once('/') else {
            continue;
        };
        if !(proto == "tcp" || proto == "udp") {
            continue;
        }
        let planned = line.contains("planned") || line.contains("计划");
        // The first field the last cell names (`listeners.dicom`, `listeners.dicom_ae_title`).
        let field = cells
            .last()
            .and_then(|c| c.split(',').next())
            .map(|c| c.trim().trim_matches('`').to_owned())
            .unwrap_or_default();
        rows.push((
            Row {
                port: port
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .collect(),
                proto: proto.to_owned(),
                planned,
            },
            field,
        ));
    }
    assert!(!rows.is_empty(), "no port table under {heading:?}");
    rows
}

/// Sockets of `pid`: (protocol, port) it listens on (TCP in LISTEN, UDP bound).
fn open_sockets(pid: u32) -> BTreeSet<(String, u16)> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's fds")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    for (file, proto) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            // TCP: LISTEN (0A) only; UDP: every bound socket (07 is unconnected).
            let listening = if proto == "tcp" {
                f[3] == "0A"
            } else {
                f[3] == "07"
            };
            let port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (true, Some(port)) = (listening, port) {
                out.insert((proto.to_owned(), port));
            }
        }
    }
    out
}

#[test]
fn documented_listeners_are_the_ones_opened() {
    let readme = read("README.md");
    let arch = read("docs/ARCHITECTURE.md");
    let zh: BTreeSet<Row> = port_rows(&readme, "### 默认端口")
        .into_iter()
        .map(|r| r.0)
        .collect();
    let en: BTreeSet<Row> = port_rows(&readme, "### Default ports")
        .into_iter()
        .map(|r| r.0)
        .collect();
    let fields: Vec<(Row, String)> = port_rows(&arch, "## Default listeners");
    let map: BTreeSet<Row> = fields.iter().map(|r| r.0.clone()).collect();
    assert_eq!(zh, en, "README's Chinese and English port tables differ");
    assert_eq!(
        en, map,
        "README's and ARCHITECTURE's listener tables differ"
    );

    let ports = Ports::free();
    let dir = temp_dir();
    let mut daemon = e2e::api::start(dir.path(), &ports, &[]);
    // Where each configured field put its listener in this run.
    let (media_lo, media_hi) = ports.media_udp();
    let place = |field: &str| -> Box<dyn Fn(u16) -> bool> {
        let one = |p: u16| -> Box<dyn Fn(u16) -> bool> { Box::new(move |x| x == p) };
        match field {
            "listeners.http" => one(ports.http),
            "listeners.imaging_http" => one(ports.imaging_http),
            "listeners.dicom" => one(ports.dicom),
            "listeners.sfu_signalling" => one(ports.sfu_signalling),
            "listeners.sfu_media_udp" => Box::new(move |x| (media_lo..=media_hi).contains(&x)),
            "listeners.sfu_quic" => one(ports.quic),
            "integration.hl7_mllp_port" => one(ports.hl7),
            other => panic!("the test does not know where field {other:?} listens: add it"),
        }
    };
    let opened = open_sockets(daemon.pid());
    let mut wrong = Vec::new();
    let mut covered = BTreeSet::new();
    for (row, field) in &fields {
        let at = place(field);
        let here: Vec<&(String, u16)> = opened
            .iter()
            .filter(|(proto, port)| *proto == row.proto && at(*port))
            .collect();
        match (row.planned, here.is_empty()) {
            (false, true) => wrong.push(format!("documented but not opened: {row:?} ({field})")),
            (true, false) => wrong.push(format!(
                "marked planned but opened: {row:?} ({field}) at {here:?}"
            )),
            _ => {}
        }
        covered.extend(here.into_iter().cloned());
    }
    for socket in opened.difference(&covered) {
        wrong.push(format!("opened but not documented: {socket:?}"));
    }
    let by_proto: BTreeMap<&str, usize> = opened.iter().fold(BTreeMap::new(), |mut m, (p, _)| {
        *m.entry(p.as_str()).or_default() += 1;
        m
    });
    assert!(
        by_proto.get("tcp").copied().unwrap_or(0) >= 4,
        "read too few sockets: {opened:?}"
    );
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(20));
    assert!(wrong.is_empty(), "{wrong:#?}\nopened: {opened:?}");
}
