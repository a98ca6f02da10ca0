//! Rules that span fields or need more than a type: ranges, listeners sharing a port, TLS files
//! that must be readable, fields that go together. Every rule runs; every failure is reported.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::error::{ErrorKind, FieldError, Origin};
use crate::{Config, SmsGateway};

struct Check<'a> {
    origins: &'a BTreeMap<String, Origin>,
    errors: Vec<FieldError>,
}

impl Check<'_> {
    fn fail(
        &mut self,
        path: &str,
        kind: ErrorKind,
        value: impl ToString,
        reason: impl Into<String>,
    ) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            kind,
            value: Some(value.to_string()),
            reason: reason.into(),
            origin: self.origins.get(path).cloned().unwrap_or(Origin::Default),
        });
    }

    fn range(&mut self, path: &str, v: u32, min: u32, max: u32) {
        if !(min..=max).contains(&v) {
            self.fail(
                path,
                ErrorKind::OutOfRange,
                v,
                format!("out of range: allowed {min}-{max}"),
            );
        }
    }
}

pub(crate) fn validate(c: &Config, origins: &BTreeMap<String, Origin>) -> Vec<FieldError> {
    let mut k = Check {
        origins,
        errors: Vec::new(),
    };
    site(c, &mut k);
    listeners(c, &mut k);
    tls(c, &mut k);
    k.range(
        "database.max_connections",
        c.database.max_connections,
        1,
        256,
    );
    imaging(c, &mut k);
    sfu(c, &mut k);
    notifications(c, &mut k);
    security(c, &mut k);
    integration(c, &mut k);
    k.range("backup.every_hours", c.backup.every_hours, 1, 168);
    k.range("backup.keep", c.backup.keep, 1, 365);
    if let Some(file) = &c.security.data_key_file
        && let Err(e) = std::fs::metadata(file)
    {
        k.fail(
            "security.data_key_file",
            ErrorKind::MissingFile,
            file.display(),
            format!("cannot read the operator's data key: {e}"),
        );
    }
    if let Some(file) = &c.backup.key_passphrase_file {
        let first_line = std::fs::read_to_string(file)
            .map(|t| t.lines().next().unwrap_or_default().trim().chars().count());
        match first_line {
            Err(e) => k.fail(
                "backup.key_passphrase_file",
                ErrorKind::MissingFile,
                file.display(),
                format!("cannot read the file: {e}"),
            ),
            Ok(n) if n < 12 => k.fail(
                "backup.key_passphrase_file",
                ErrorKind::Invalid,
                file.display(),
                "the passphrase (the file's first line) needs at least 12 characters",
            ),
            Ok(_) => {}
        }
    }
    k.errors
}

fn site(c: &Config, k: &mut Check<'_>) {
    let name = c.site.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        k.fail(
            "site.name",
            ErrorKind::Invalid,
            &c.site.name,
            "must be 1-100 characters",
        );
    }
    let code = &c.site.institution_code;
    if code.len() > 32
        || !code
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        k.fail(
            "site.institution_code",
            ErrorKind::Invalid,
            code,
            "only letters, digits and '-', at most 32",
        );
    }
}

fn listeners(c: &Config, k: &mut Check<'_>) {
    let l = &c.listeners;
    let mut tcp = vec![
        ("listeners.http", l.http),
        ("listeners.imaging_http", l.imaging_http),
        ("listeners.dicom", l.dicom),
        ("listeners.sfu_signalling", l.sfu_signalling),
        ("integration.hl7_mllp_port", c.integration.hl7_mllp_port),
    ];
    if let Some(port) = l.dicom_tls {
        tcp.push(("listeners.dicom_tls", port));
        if !c.tls_on() {
            k.fail(
                "listeners.dicom_tls",
                ErrorKind::Invalid,
                port,
                "DICOM over TLS needs tls.cert and tls.key",
            );
        }
    }
    for (i, (path, port)) in tcp.iter().enumerate() {
        if let Some((other, _)) = tcp[..i].iter().find(|(_, p)| p == port) {
            k.fail(
                path,
                ErrorKind::DuplicatePort,
                port,
                format!(
                    "TCP port {port} is also used by {other}: each listener needs its own port"
                ),
            );
        }
    }
    if l.sfu_media_udp.contains(l.sfu_quic) {
        k.fail(
            "listeners.sfu_quic",
            ErrorKind::DuplicatePort,
            l.sfu_quic,
            format!(
                "UDP port {} lies inside listeners.sfu_media_udp ({}): each listener needs its own port",
                l.sfu_quic, l.sfu_media_udp
            ),
        );
    }
}

fn tls(c: &Config, k: &mut Check<'_>) {
    let t = &c.tls;
    match (&t.cert, &t.key) {
        (Some(_), None) => {
            k.fail(
                "tls.key",
                ErrorKind::Invalid,
                "",
                "required when tls.cert is set",
            );
        }
        (None, Some(_)) => {
            k.fail(
                "tls.cert",
                ErrorKind::Invalid,
                "",
                "required when tls.key is set",
            );
        }
        (None, None) if t.require_outside_loopback && !c.listeners.bind.is_loopback() => {
            k.fail(
                "tls.cert",
                ErrorKind::Invalid,
                "",
                format!(
                    "listeners.bind is {}, not loopback: TLS is required (set tls.cert and tls.key)",
                    c.listeners.bind
                ),
            );
        }
        _ => {}
    }
    for (path, file, what) in [
        ("tls.cert", &t.cert, "CERTIFICATE"),
        ("tls.key", &t.key, "PRIVATE KEY"),
    ] {
        if let Some(file) = file
            && let Err(why) = readable_pem(file, what)
        {
            k.fail(path, ErrorKind::MissingFile, file.display(), why);
        }
    }
}

/// The file opens, is a regular file and holds a PEM block whose label ends in `label`.
fn readable_pem(path: &Path, label: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut head = String::new();
    file.take(1 << 20)
        .read_to_string(&mut head)
        .map_err(|e| format!("cannot read the file as PEM text: {e}"))?;
    let found = head
        .lines()
        .filter_map(|line| line.trim().strip_prefix("-----BEGIN "))
        .any(|rest| rest.trim_end_matches('-').ends_with(label));
    if found {
        Ok(())
    } else {
        Err(format!("no PEM block ending in \"{label}\" in the file"))
    }
}

/// Whether `key` is empty or has the shape of a base64 Ed25519 public key.
fn key_shape(key: &str) -> bool {
    let base64 = |ch: char| ch.is_ascii_alphanumeric() || ch == '+' || ch == '/';
    key.is_empty()
        || (key.len() == 44
            && key.ends_with('=')
            && key[..43].chars().all(base64)
            && !key[..43].ends_with('='))
}

fn imaging(c: &Config, k: &mut Check<'_>) {
    let i = &c.imaging;
    let key = &i.viewer_token_key;
    if !key_shape(key) {
        k.fail(
            "imaging.viewer_token_key",
            ErrorKind::Invalid,
            key,
            "an Ed25519 public key is 32 bytes in base64: 44 characters ending in '='",
        );
    }
    k.range("imaging.viewer_grace_secs", i.viewer_grace_secs, 1, 300);
    if i.volume_cache.0 < 64 << 20 {
        k.fail(
            "imaging.volume_cache",
            ErrorKind::OutOfRange,
            i.volume_cache,
            "out of range: at least 64MiB",
        );
    }
    if i.gpu_memory.0 < 64 << 20 {
        k.fail(
            "imaging.gpu_memory",
            ErrorKind::OutOfRange,
            i.gpu_memory,
            "out of range: at least 64MiB",
        );
    }
    k.range("imaging.render_threads", i.render_threads, 0, 1024);
    if i.allowed_callers.is_empty() && !c.listeners.bind.is_loopback() {
        k.fail(
            "imaging.allowed_callers",
            ErrorKind::Invalid,
            "[]",
            format!(
                "listeners.bind is {}, not loopback: list the DICOM peers allowed to call",
                c.listeners.bind
            ),
        );
    }
}

fn sfu(c: &Config, k: &mut Check<'_>) {
    let s = &c.sfu;
    for (n, server) in s.ice_servers.iter().enumerate() {
        if server.urls.is_empty() {
            k.fail(
                "sfu.ice_servers",
                ErrorKind::Invalid,
                format!("[{n}]"),
                "an ICE server needs at least one URL",
            );
        }
        for u in &server.urls {
            let scheme = u.split(':').next().unwrap_or_default();
            let rest = u.split_once(':').map(|(_, r)| r).unwrap_or_default();
            if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") || rest.is_empty() {
                k.fail(
                    "sfu.ice_servers",
                    ErrorKind::BadUrl,
                    u,
                    format!(
                        "ICE server [{n}]: a URL must be stun:, stuns:, turn: or turns: HOST[:PORT]"
                    ),
                );
            } else if scheme.starts_with("turn")
                && (server.username.is_empty() || server.credential.is_empty())
            {
                k.fail(
                    "sfu.ice_servers",
                    ErrorKind::Invalid,
                    u,
                    format!("ICE server [{n}]: a TURN server needs username and credential"),
                );
            }
        }
    }
    k.range("sfu.max_rooms", s.max_rooms, 1, 10_000);
    k.range(
        "sfu.max_participants_per_room",
        s.max_participants_per_room,
        2,
        100,
    );
    k.range("sfu.rejoin_grace_secs", s.rejoin_grace_secs, 0, 300);
    if !key_shape(&s.token_key) {
        k.fail(
            "sfu.token_key",
            ErrorKind::Invalid,
            &s.token_key,
            "an Ed25519 public key is 32 bytes in base64: 44 characters ending in '='",
        );
    }
}

fn notifications(c: &Config, k: &mut Check<'_>) {
    let n = &c.notifications;
    if n.sms_gateway != SmsGateway::None && n.sms_url.is_none() {
        k.fail(
            "notifications.sms_url",
            ErrorKind::Invalid,
            "",
            "required when sms_gateway is not \"none\"",
        );
    }
    if !n.sms_template.contains("{message}") {
        k.fail(
            "notifications.sms_template",
            ErrorKind::Invalid,
            &n.sms_template,
            "must contain {message}",
        );
    }
}

fn security(c: &Config, k: &mut Check<'_>) {
    let s = &c.security;
    k.range(
        "security.password_min_length",
        s.password_min_length,
        8,
        128,
    );
    k.range(
        "security.password_min_classes",
        s.password_min_classes,
        3,
        4,
    );
    k.range(
        "security.password_max_age_days",
        s.password_max_age_days,
        1,
        365,
    );
    k.range("security.lockout_threshold", s.lockout_threshold, 1, 10);
    k.range("security.lockout_minutes", s.lockout_minutes, 1, 1440);
    k.range(
        "security.idle_timeout_minutes",
        s.idle_timeout_minutes,
        1,
        120,
    );
    k.range(
        "security.audit_retention_days",
        s.audit_retention_days,
        180,
        36_500,
    );
}

fn integration(c: &Config, k: &mut Check<'_>) {
    let i = &c.integration;
    if !(1 << 10..=256 << 20).contains(&i.hl7_max_message_bytes.0) {
        k.fail(
            "integration.hl7_max_message_bytes",
            ErrorKind::OutOfRange,
            i.hl7_max_message_bytes,
            "out of range: 1KiB to 256MiB",
        );
    }
    let set = [
        ("integration.pacs_ae_title", i.pacs_ae_title.is_some()),
        ("integration.pacs_host", i.pacs_host.is_some()),
        ("integration.pacs_port", i.pacs_port.is_some()),
    ];
    if set.iter().any(|(_, s)| *s) {
        for (path, _) in set.iter().filter(|(_, s)| !*s) {
            k.fail(
                path,
                ErrorKind::Invalid,
                "",
                "the PACS needs pacs_ae_title, pacs_host and pacs_port together",
            );
        }
    }
}
