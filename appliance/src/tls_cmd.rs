//! `appliance tls init`: a local certificate authority for a hospital without its own PKI, and
//! a server certificate under it for the configured host names and addresses. Files live in
//! `DATA_DIR/tls/` (keys 0600); the CA is made once and kept, the server certificate is issued
//! anew each time (the running daemons pick it up without a restart); the run-time
//! configuration gets `tls.cert` and `tls.key` as a new version. Clients install `ca.pem`,
//! which the appliance also serves at `/ca.pem`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use firmware_config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsInitError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Making or reading a certificate failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A name given is neither a host name nor an address.
    #[error("--host {0:?}: not a host name or IP address")]
    Host(String),
    /// The configuration store refused the change.
    #[error(transparent)]
    Config(#[from] crate::config_cmd::ConfigCmdError),
}

/// The folder under the data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The CA certificate clients install.
pub fn ca_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("ca.pem")
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The server certificate chain (server, then CA).
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
    /// The CA certificate.
    pub ca: PathBuf,
    /// SHA-256 of the CA certificate (DER), colon-separated hex, as browsers show it.
    pub ca_fingerprint: String,
    /// Whether the CA was made now (else an existing one signed).
    pub new_ca: bool,
    /// The names in the server certificate.
    pub names: Vec<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsInitError + '_ {
    move |source| TlsInitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a daemon watching the file
/// never reads half of it; `private` files are 0600.
pub(crate) fn write_atomic(path: &Path, text: &str, private: bool) -> Result<(), TlsInitError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub(crate) fn days_from_now(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(days)
}

/// The names a server certificate covers: the public host, `localhost`, loopback, the bind
/// address when it is a real one, and `extra`.
pub fn names(config: &Config, extra: &[String]) -> Result<Vec<String>, TlsInitError> {
    let mut names = vec![
        config.listeners.public_host.as_str().to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !config.listeners.bind.is_unspecified() {
        names.push(config.listeners.bind.to_string());
    }
    for e in extra {
        let ok = e.parse::<IpAddr>().is_ok()
            || (!e.is_empty()
                && e.len() <= 253
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !ok {
            return Err(TlsInitError::Host(e.clone()));
        }
        names.push(e.clone());
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    Ok(names)
}

/// The local CA's certificate (PEM) and key, made (10 years) when there is none yet; the flag
/// says whether it was made now. Server certificates and the report-signing certificate are
/// issued under it.
pub fn local_ca(data_dir: &Path, site: &str) -> Result<(String, KeyPair, bool), TlsInitError> {
    let folder = dir(data_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .map_err(io(&folder))?;
    let ca_pem_path = ca_path(data_dir);
    let ca_key_path = folder.join("ca.key");
    let found = match (
        std::fs::read_to_string(&ca_pem_path),
        std::fs::read_to_string(&ca_key_path),
    ) {
        (Ok(pem), Ok(key)) => (pem, KeyPair::from_pem(&key)?, false),
        _ => {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::default();
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.distinguished_name
                .push(DnType::CommonName, format!("{site} 本地根证书 Local CA"));
            p.distinguished_name.push(DnType::OrganizationName, site);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.not_before = days_from_now(-1);
            p.not_after = days_from_now(3650);
            let cert = p.self_signed(&key)?;
            write_atomic(&ca_key_path, &key.serialize_pem(), true)?;
            write_atomic(&ca_pem_path, &cert.pem(), false)?;
            (cert.pem(), key, true)
        }
    };
    Ok(found)
}

/// Makes the CA when there is none, issues a server certificate for `names` valid `days`, and
/// writes both under `data_dir/tls`.
pub fn issue(
    data_dir: &Path,
    site: &str,
    names: &[String],
    days: u32,
) -> Result<Issued, TlsInitError> {
    let folder = dir(data_dir);
    let (ca_pem, ca_key, new_ca) = local_ca(data_dir, site)?;
    let ca_pem_path = ca_path(data_dir);
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, names.first().map_or("localhost", |n| n));
    p.distinguished_name.push(DnType::OrganizationName, site);
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.as_str().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = days_from_now(-1);
    p.not_after = days_from_now(i64::from(days));
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    let cert_path = folder.join("server.pem");
    let key_path = folder.join("server.key");
    // Key first: a watcher that sees the new chain must find its key already there.
    write_atomic(&key_path, &key.serialize_pem(), true)?;
    write_atomic(&cert_path, &format!("{}{}", cert.pem(), ca_pem), false)?;
    Ok(Issued {
        cert: cert_path,
        key: key_path,
        ca_fingerprint: fingerprint(&ca_pem),
        ca: ca_pem_path,
        new_ca,
        names: names.to_vec(),
    })
}

/// SHA-256 of the first PEM certificate's DER, as `AB:CD:...`.
pub fn fingerprint(pem: &str) -> String {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `appliance tls init`: issues the certificates and saves `tls.cert` / `tls.key` as a new
/// run-time configuration version (unless they already point at these files).
pub fn init(
    args: &firmware_runtime::ConfigArgs,
    extra: &[String],
    days: u32,
) -> Result<String, TlsInitError> {
    let (loaded, mut store) = crate::config_cmd::effective(args)?;
    let config = loaded.config;
    let data_dir = &config.storage.data_dir;
    let names = names(&config, extra)?;
    let issued = issue(data_dir, &config.site.name, &names, days)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let (cert, key) = (absolute(&issued.cert), absolute(&issued.key));
    let mut out = String::new();
    if issued.new_ca {
        out.push_str(&format!(
            "本地根证书已生成 / local CA made: {}\n",
            issued.ca.display()
        ));
    }
    out.push_str(&format!(
        "服务器证书 / server certificate: {} (key {}), valid {days} days for {}\n\
         根证书指纹 / CA fingerprint (SHA-256): {}\n",
        cert.display(),
        key.display(),
        names.join(", "),
        issued.ca_fingerprint,
    ));
    if config.tls.cert.as_deref().map(absolute) == Some(cert.clone())
        && config.tls.key.as_deref().map(absolute) == Some(key.clone())
    {
        out.push_str("running daemons load the new certificate within seconds\n");
        return Ok(out);
    }
    let mut doc: toml::Table = match store
        .current()
        .map_err(crate::config_cmd::ConfigCmdError::from)?
    {
        Some((_, text)) => text.parse().unwrap_or_default(),
        None => toml::Table::new(),
    };
    let mut tls = toml::Table::new();
    tls.insert("cert".into(), cert.display().to_string().into());
    tls.insert("key".into(), key.display().to_string().into());
    if let Some(toml::Value::Table(old)) = doc.get("tls") {
        for (k, v) in old {
            tls.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    doc.insert("tls".into(), toml::Value::Table(tls));
    let info = store
        .save(
            &toml::to_string(&doc).unwrap_or_default(),
            "tls init",
            "TLS on: local CA certificate",
            SystemTime::now(),
        )
        .map_err(crate::config_cmd::ConfigCmdError::from)?;
    out.push_str(&format!(
        "saved configuration version {} with tls.cert and tls.key (takes effect at the next start)\n",
        info.version
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_under_one_ca_and_refuses_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["pacs.hospital.local".to_owned(), "10.1.2.3".to_owned()];
        let a = issue(dir.path(), "测试医院", &names, 30).unwrap();
        assert!(a.new_ca);
        let b = issue(dir.path(), "测试医院", &names, 30).unwrap();
        assert!(!b.new_ca);
        assert_eq!(a.ca_fingerprint, b.ca_fingerprint);
        assert_eq!(a.ca_fingerprint.len(), 32 * 3 - 1);
        // The chain verifies with the daemons' loader (the key matches the leaf).
        firmware_runtime::tls::Tls::load(&b.cert, &b.key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for key in [&b.key, &dir.path().join("tls/ca.key")] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
        let config = Config::default();
        assert!(matches!(
            super::names(&config, &["bad name".into()]),
            Err(TlsInitError::Host(_))
        ));
        let n = super::names(&config, &["Localhost".into(), "a.b".into()]).unwrap();
        assert_eq!(
            n.iter()
                .filter(|n| n.eq_ignore_ascii_case("localhost"))
                .count(),
            1
        );
        assert!(n.contains(&"a.b".to_owned()));
    }
}
