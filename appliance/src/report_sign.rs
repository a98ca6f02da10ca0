//! SM2 report signatures (GB/T 32918, with GM/T 0009's default distinguishing ID): the
//! report-signing key (`DATA_DIR/keys/report-sm2.key`, PKCS#8 PEM, 0600), its certificate
//! (`DATA_DIR/keys/report-sm2.pem`, issued by the local CA, or one the hospital's CA issued for
//! the same key), the statement a report signature covers, and the offline check of an exported
//! signed-report bundle (`appliance report verify`; openssl verifies the same files).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use sm2::dsa::signature::{Signer, Verifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};

use crate::gm::hex;

/// The distinguishing ID every signature uses (GM/T 0009-2012's default; openssl's
/// `-sigopt distid:1234567812345678`).
pub const DIST_ID: &str = "1234567812345678";

/// The statement's first line, naming its format.
const STATEMENT_HEAD: &str = "报告签名声明 / report signature statement v1";

/// Why the report-signing key or certificate could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportSignError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The local CA could not be read or made.
    #[error(transparent)]
    Ca(#[from] crate::tls_cmd::TlsInitError),
    /// Signing failed.
    #[error("SM2 signing: {0}")]
    Sign(String),
}

/// Why a signed-report bundle does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bundle is not a zip holding the expected files.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The content does not match the statement.
    #[error("content.json does not match the statement's content-sm3 (the report was changed)")]
    Content,
    /// The SM2 signature does not verify with the certificate's key.
    #[error("statement.sig is not a valid SM2 signature of statement.txt by signer.pem's key")]
    Signature,
    /// The certificate was not issued by the given CA.
    #[error("signer.pem was not issued by the given CA: {0}")]
    Chain(String),
}

/// The key file.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("report-sm2.key")
}

/// The certificate file (the signing certificate first, then its issuers).
pub fn cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("report-sm2.pem")
}

/// The appliance's report-signing key and certificate chain.
pub struct ReportSigner {
    key: SigningKey,
    chain: String,
    fingerprint: String,
}

impl std::fmt::Debug for ReportSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSigner")
            .field("certificate_sha256", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ReportSigner {
    /// Loads the key and certificate, making the key (and a certificate under the local CA,
    /// made too when there is none) on first use.
    pub fn load(data_dir: &Path, site: &str) -> Result<Self, ReportSignError> {
        let key_file = key_path(data_dir);
        let invalid = |path: &Path, why: String| ReportSignError::Invalid {
            path: path.to_owned(),
            why,
        };
        let secret = match std::fs::read_to_string(&key_file) {
            Ok(pem) => sm2::SecretKey::from_pkcs8_pem(&pem)
                .map_err(|e| invalid(&key_file, format!("not an SM2 PKCS#8 private key: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = random_secret();
                let pem = secret
                    .to_pkcs8_pem(sm2::pkcs8::LineEnding::LF)
                    .map_err(|e| ReportSignError::Sign(e.to_string()))?;
                if let Some(dir) = key_file.parent() {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|source| ReportSignError::Io {
                            path: dir.to_owned(),
                            source,
                        })?;
                }
                crate::tls_cmd::write_atomic(&key_file, &pem, true)?;
                tracing::info!(path = %key_file.display(), "report-signing key (SM2) created");
                secret
            }
            Err(source) => {
                return Err(ReportSignError::Io {
                    path: key_file,
                    source,
                });
            }
        };
        let spki = secret
            .public_key()
            .to_public_key_der()
            .map_err(|e| ReportSignError::Sign(e.to_string()))?;
        let cert_file = cert_path(data_dir);
        let chain = match std::fs::read_to_string(&cert_file) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = issue(data_dir, site, spki.as_bytes())?;
                crate::tls_cmd::write_atomic(&cert_file, &pem, false)?;
                tracing::info!(path = %cert_file.display(), "report-signing certificate issued by the local CA");
                pem
            }
            Err(source) => {
                return Err(ReportSignError::Io {
                    path: cert_file,
                    source,
                });
            }
        };
        let leaf = pem_certificates(&chain)
            .into_iter()
            .next()
            .ok_or_else(|| invalid(&cert_file, "no PEM certificate in the file".into()))?;
        let parsed = Cert::parse(&leaf)
            .ok_or_else(|| invalid(&cert_file, "the first certificate is not X.509 DER".into()))?;
        if parsed.spki != spki.as_bytes() {
            return Err(invalid(
                &cert_file,
                "the certificate is not for report-sm2.key's public key (have the CA issue one \
                 for that key: docs/security.md)"
                    .into(),
            ));
        }
        let key =
            SigningKey::new(DIST_ID, &secret).map_err(|e| ReportSignError::Sign(e.to_string()))?;
        Ok(Self {
            key,
            chain,
            fingerprint: hex(&Sha256::digest(&leaf)),
        })
    }

    /// Signs `statement`: the signature in DER (SEQUENCE of r and s), as openssl writes it.
    pub fn sign(&self, statement: &[u8]) -> Result<Vec<u8>, ReportSignError> {
        let sig: Signature = self
            .key
            .try_sign(statement)
            .map_err(|e| ReportSignError::Sign(e.to_string()))?;
        Ok(signature_der(&sig))
    }

    /// The certificate chain (PEM), signing certificate first.
    pub fn chain_pem(&self) -> &str {
        &self.chain
    }

    /// SHA-256 of the signing certificate (DER), hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn random_secret() -> sm2::SecretKey {
    use rand_core::{OsRng, RngCore};
    loop {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        // Zero or at least the group order is refused; drawing again is all it takes.
        if let Ok(secret) = sm2::SecretKey::from_slice(&bytes) {
            return secret;
        }
    }
}

/// What a report signature covers, one `name: value` line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The consultation.
    pub consultation: i64,
    /// The report version.
    pub version: i64,
    /// SM3 of the stored content (the exact bytes `content.json` holds), hex.
    pub content_sm3: String,
    /// SHA-256 of the signer's signature image, hex.
    pub signature_image_sha256: String,
    /// The signer's user id.
    pub signer: i64,
    /// The signer's name as shown then.
    pub signer_name: String,
    /// When, ms since the epoch.
    pub signed_at: i64,
    /// The seal's hash algorithm (`sm3` or `sha256`).
    pub seal_alg: String,
    /// The seal, hex.
    pub seal: String,
}

impl Statement {
    /// The text signed.
    pub fn text(&self) -> String {
        format!(
            "{STATEMENT_HEAD}\nconsultation: {}\nversion: {}\ncontent-sm3: {}\n\
             signature-image-sha256: {}\nsigner: {}\nsigner-name: {}\nsigned-at: {} ({} CST)\n\
             seal-alg: {}\nseal: {}\n",
            self.consultation,
            self.version,
            self.content_sm3,
            self.signature_image_sha256,
            self.signer,
            self.signer_name.replace(['\n', '\r'], " "),
            self.signed_at,
            crate::reports::china_time(self.signed_at),
            self.seal_alg,
            self.seal,
        )
    }

    /// Reads the fields of a statement's text.
    pub fn fields(text: &str) -> Option<BTreeMap<String, String>> {
        let mut lines = text.lines();
        if lines.next()? != STATEMENT_HEAD {
            return None;
        }
        Some(
            lines
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

/// Verifies an SM2 signature (DER) of `message` by the key in `cert_der`'s certificate.
pub fn verify(message: &[u8], signature: &[u8], cert_der: &[u8]) -> bool {
    let Some(cert) = Cert::parse(cert_der) else {
        return false;
    };
    let Ok(public) = sm2::PublicKey::from_public_key_der(cert.spki) else {
        return false;
    };
    let Ok(key) = VerifyingKey::new(DIST_ID, public) else {
        return false;
    };
    let Some(sig) = signature_from_der(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// What an exported bundle says, once it verified.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The statement's fields.
    pub fields: BTreeMap<String, String>,
    /// The signing certificate's subject, as `CN=..., O=...`.
    pub subject: String,
    /// SHA-256 of the signing certificate, hex.
    pub certificate_sha256: String,
    /// Whether the certificate was checked against a CA given.
    pub chain_checked: bool,
}

/// The files of a signed-report bundle, by name.
pub const BUNDLE_FILES: [&str; 4] = [
    "content.json",
    "statement.txt",
    "statement.sig",
    "signer.pem",
];

/// Checks a signed-report bundle (a zip of [`BUNDLE_FILES`]): the content's SM3 against the
/// statement, the SM2 signature against the certificate, and, with `ca_pem`, the certificate
/// against that CA (ECDSA P-256 with SHA-256, as the local CA signs).
pub fn check_bundle(zip: &[u8], ca_pem: Option<&str>) -> Result<Checked, VerifyError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| VerifyError::Bundle(format!("not a zip: {e}")))?;
    let mut files = BTreeMap::new();
    for name in BUNDLE_FILES {
        let mut entry = archive
            .by_name(name)
            .map_err(|_| VerifyError::Bundle(format!("{name} is missing")))?;
        let mut bytes = Vec::new();
        entry
            .by_ref()
            .take(16 << 20)
            .read_to_end(&mut bytes)
            .map_err(|e| VerifyError::Bundle(format!("{name}: {e}")))?;
        files.insert(name, bytes);
    }
    let text = std::str::from_utf8(&files["statement.txt"])
        .map_err(|_| VerifyError::Bundle("statement.txt is not UTF-8".into()))?;
    let fields = Statement::fields(text)
        .ok_or_else(|| VerifyError::Bundle("statement.txt is not a report statement".into()))?;
    if fields.get("content-sm3") != Some(&hex(&crate::gm::sm3(&files["content.json"]))) {
        return Err(VerifyError::Content);
    }
    let pem = std::str::from_utf8(&files["signer.pem"])
        .map_err(|_| VerifyError::Bundle("signer.pem is not PEM".into()))?;
    let leaf = pem_certificates(pem)
        .into_iter()
        .next()
        .ok_or_else(|| VerifyError::Bundle("signer.pem holds no certificate".into()))?;
    if !verify(text.as_bytes(), &files["statement.sig"], &leaf) {
        return Err(VerifyError::Signature);
    }
    let cert = Cert::parse(&leaf).ok_or(VerifyError::Signature)?;
    if let Some(ca_pem) = ca_pem {
        check_issued_by(&cert, ca_pem).map_err(VerifyError::Chain)?;
    }
    Ok(Checked {
        fields,
        subject: name_text(cert.subject),
        certificate_sha256: hex(&Sha256::digest(&leaf)),
        chain_checked: ca_pem.is_some(),
    })
}

/// What VERIFY.txt says: the checks anyone can run with OpenSSL 3 (or gmssl's equivalents).
pub const VERIFY_TEXT: &str = "\
会诊报告 SM2 签名包 / SM2-signed consultation report

content.json   报告内容（签名时的原样字节）/ the report content, exactly as hashed
statement.txt  签名声明（含内容的 SM3 摘要）/ the statement signed (holds content-sm3)
statement.sig  SM2 签名 (DER) / the SM2 signature, DER
signer.pem     签名证书及其签发 CA / the signing certificate, then its CA

用 OpenSSL 3 核验 / verify with OpenSSL 3:
  openssl dgst -sm3 content.json                      # = content-sm3 in statement.txt
  openssl x509 -in signer.pem -pubkey -noout > signer-pub.pem
  openssl dgst -sm3 -verify signer-pub.pem -sigopt distid:1234567812345678 \\
      -signature statement.sig statement.txt           # Verified OK
  openssl verify -CAfile ca.pem signer.pem             # ca.pem: the CA you trust (/ca.pem)
或 / or: appliance report verify report-signed.zip --ca ca.pem
";

/// The signed-report bundle [`check_bundle`] reads, with VERIFY.txt.
pub fn bundle(
    content: &str,
    statement: &str,
    sig: &[u8],
    chain: &str,
) -> Result<Vec<u8>, zip::result::ZipError> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in [
        ("content.json", content.as_bytes()),
        ("statement.txt", statement.as_bytes()),
        ("statement.sig", sig),
        ("signer.pem", chain.as_bytes()),
        ("VERIFY.txt", VERIFY_TEXT.as_bytes()),
    ] {
        zip.start_file(name, options)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

fn check_issued_by(cert: &Cert<'_>, ca_pem: &str) -> Result<(), String> {
    let ca_der = pem_certificates(ca_pem)
        .into_iter()
        .next()
        .ok_or("the CA file holds no PEM certificate")?;
    let ca = Cert::parse(&ca_der).ok_or("the CA certificate is not X.509 DER")?;
    if cert.issuer != ca.subject {
        return Err(format!(
            "issued by {}, not by {}",
            name_text(cert.issuer),
            name_text(ca.subject)
        ));
    }
    if cert.sig_alg != oid(ECDSA_SHA256).as_slice() {
        return Err(
            "only ECDSA P-256 with SHA-256 issuers are checked here; use openssl verify".into(),
        );
    }
    // The SPKI's BIT STRING holds the uncompressed point.
    let point = read(ca.spki)
        .and_then(|(_, inner, _, _)| read(inner))
        .and_then(|(_, _, _, rest)| read(rest))
        .filter(|(tag, ..)| *tag == 0x03)
        .and_then(|(_, bits, _, _)| bits.split_first())
        .map(|(_, point)| point)
        .ok_or("the CA's public key cannot be read")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(cert.tbs, cert.signature)
        .map_err(|_| "the CA's signature on the certificate does not verify".to_owned())
}

/// Issues the report-signing certificate for `spki` (DER) under the local CA: the chain, PEM.
fn issue(data_dir: &Path, site: &str, spki: &[u8]) -> Result<String, ReportSignError> {
    let (ca_pem, ca_key, _) = crate::tls_cmd::local_ca(data_dir, site)?;
    let ca_file = crate::tls_cmd::ca_path(data_dir);
    let invalid = |why: &str| ReportSignError::Invalid {
        path: ca_file.clone(),
        why: why.into(),
    };
    if ca_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(invalid("the local CA's key is not ECDSA P-256"));
    }
    let ca_der = pem_certificates(&ca_pem)
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no PEM certificate"))?;
    let ca = Cert::parse(&ca_der).ok_or_else(|| invalid("not X.509 DER"))?;
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let now = time::OffsetDateTime::now_utc();
    let ext = |id: &[u64], critical: bool, value: Vec<u8>| {
        let mut parts = vec![oid(id)];
        if critical {
            parts.push(vec![0x01, 0x01, 0xff]);
        }
        parts.push(tlv(0x04, &value));
        seq(&parts)
    };
    let tbs = seq(&[
        tlv(0xa0, &tlv(0x02, &[2])),
        tlv(0x02, &serial),
        seq(&[oid(ECDSA_SHA256)]),
        ca.subject.to_vec(),
        seq(&[
            der_time(now - time::Duration::days(1)),
            der_time(now + time::Duration::days(3650)),
        ]),
        seq(&[
            tlv(
                0x31,
                &seq(&[
                    oid(&[2, 5, 4, 3]),
                    tlv(0x0c, format!("{site} 报告签名 Report signing").as_bytes()),
                ]),
            ),
            tlv(
                0x31,
                &seq(&[oid(&[2, 5, 4, 10]), tlv(0x0c, site.as_bytes())]),
            ),
        ]),
        spki.to_vec(),
        tlv(
            0xa3,
            &seq(&[
                ext(&[2, 5, 29, 19], true, seq(&[])),
                // digitalSignature and nonRepudiation (contentCommitment).
                ext(&[2, 5, 29, 15], true, vec![0x03, 0x02, 0x06, 0xc0]),
            ]),
        ),
    ]);
    let sig = rcgen::SigningKey::sign(&ca_key, &tbs).map_err(crate::tls_cmd::TlsInitError::from)?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&sig);
    let cert = seq(&[tbs, seq(&[oid(ECDSA_SHA256)]), tlv(0x03, &bits)]);
    Ok(format!("{}{}", pem("CERTIFICATE", &cert), ca_pem))
}

const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];

/// The DER certificates of a PEM text, in order.
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// A little DER: enough to write one certificate and to read the parts of one.

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut stack = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            stack.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        body.extend(stack.iter().rev());
    };
    push(arcs[0] * 40 + arcs[1]);
    for a in &arcs[2..] {
        push(*a);
    }
    tlv(0x06, &body)
}

fn der_time(t: time::OffsetDateTime) -> Vec<u8> {
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.year() < 2050 {
        tlv(0x17, format!("{:02}{rest}", t.year() % 100).as_bytes())
    } else {
        tlv(0x18, format!("{:04}{rest}", t.year()).as_bytes())
    }
}

fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed = &bytes[bytes
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(bytes.len() - 1)..];
    let mut content = Vec::new();
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

fn signature_der(sig: &Signature) -> Vec<u8> {
    seq(&[
        unsigned_integer(&sig.r_bytes()),
        unsigned_integer(&sig.s_bytes()),
    ])
}

fn signature_from_der(der: &[u8]) -> Option<Signature> {
    let (0x30, body, _, []) = read(der)? else {
        return None;
    };
    let (0x02, r, _, rest) = read(body)? else {
        return None;
    };
    let (0x02, s, _, []) = read(rest)? else {
        return None;
    };
    let field = |v: &[u8]| -> Option<[u8; 32]> {
        let v = &v[v.iter().take_while(|b| **b == 0).count()..];
        let mut out = [0u8; 32];
        out.get_mut(32usize.checked_sub(v.len())?..)?
            .copy_from_slice(v);
        Some(out)
    };
    Signature::from_scalars(field(r)?, field(s)?).ok()
}

/// One TLV: its tag, its content, the whole TLV, and what follows.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn read(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &rest[..len], &input[..header + len], &rest[len..]))
}

/// The parts of a certificate this module reads.
struct Cert<'a> {
    tbs: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    spki: &'a [u8],
    sig_alg: &'a [u8],
    signature: &'a [u8],
}

impl<'a> Cert<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (0x30, body, _, _) = read(der)? else {
            return None;
        };
        let (0x30, tbs_body, tbs, rest) = read(body)? else {
            return None;
        };
        let (0x30, alg, _, rest) = read(rest)? else {
            return None;
        };
        let (0x06, _, sig_alg, _) = read(alg)? else {
            return None;
        };
        let (0x03, bits, _, _) = read(rest)? else {
            return None;
        };
        let (0, signature) = bits.split_first()? else {
            return None;
        };
        let mut r = tbs_body;
        if let (0xa0, _, _, rest) = read(r)? {
            r = rest;
        }
        let (_, _, _, r) = read(r)?; // serial
        let (_, _, _, r) = read(r)?; // signature algorithm
        let (0x30, _, issuer, r) = read(r)? else {
            return None;
        };
        let (_, _, _, r) = read(r)?; // validity
        let (0x30, _, subject, r) = read(r)? else {
            return None;
        };
        let (0x30, _, spki, _) = read(r)? else {
            return None;
        };
        Some(Self {
            tbs,
            issuer,
            subject,
            spki,
            sig_alg,
            signature,
        })
    }
}

/// A Name as `CN=..., O=...` (common name and organisation; other attributes as their OID).
fn name_text(name: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut sets = read(name).map(|(_, body, _, _)| body).unwrap_or_default();
    while let Some((_, set, _, rest)) = read(sets) {
        sets = rest;
        let Some((_, atv, _, _)) = read(set) else {
            continue;
        };
        let Some((_, id, whole_id, rest)) = read(atv) else {
            continue;
        };
        let Some((_, value, _, _)) = read(rest) else {
            continue;
        };
        let label = if whole_id == oid(&[2, 5, 4, 3]).as_slice() {
            "CN".to_owned()
        } else if whole_id == oid(&[2, 5, 4, 10]).as_slice() {
            "O".to_owned()
        } else {
            hex(id)
        };
        parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_and_lengths_encode_as_der() {
        // 1.2.156.10197.1.301, the SM2 curve.
        assert_eq!(
            oid(&[1, 2, 156, 10197, 1, 301]),
            [0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d]
        );
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, content, whole, rest) = read(&long).unwrap();
        assert_eq!(
            (tag, content.len(), whole.len(), rest.len()),
            (0x04, 300, 304, 0)
        );
        assert!(read(&long[..100]).is_none());
    }

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An SM2 signature made by an implementation nobody here wrote (OpenSSL 3.0:
    /// `openssl dgst -sm3 -sign key.pem -sigopt distid:1234567812345678`) verifies here, and
    /// not for another message; ours verify with openssl in the consultation journey's test.
    #[test]
    fn an_openssl_signature_verifies() {
        let public = unhex(
            "04804537f38e3c1c046ad487a48ad0cf7115b1ed95699c976b1117c0d38272d8bcd7c32654ac0dc04614\
             a1bf0f9fd89e86b551a9891f5a9f09ec0e2caa8c050352",
        );
        let sig = unhex(
            "304402205ca31897fdb67cfe65c13d2f782646a0e5a3934dda01d32ee03485d4f0b8dc0102204b77fa1d\
             b7d9898ed79f34cd718e2773f02d987f656faa1454476fbf008b10f4",
        );
        let key = VerifyingKey::from_sec1_bytes(DIST_ID, &public).unwrap();
        let parsed = signature_from_der(&sig).unwrap();
        assert!(key.verify(b"message digest", &parsed).is_ok());
        assert!(key.verify(b"message digesT", &parsed).is_err());
        assert_eq!(
            signature_der(&parsed),
            sig,
            "the DER round trip gives openssl's bytes"
        );
    }

    #[test]
    fn signs_verifies_and_refuses_changes() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ReportSigner::load(dir.path(), "测试医院").unwrap();
        let again = ReportSigner::load(dir.path(), "测试医院").unwrap();
        assert_eq!(signer.fingerprint(), again.fingerprint());
        let leaf = pem_certificates(signer.chain_pem()).remove(0);
        let sig = signer.sign(b"statement").unwrap();
        assert!(verify(b"statement", &sig, &leaf));
        assert!(!verify(b"statemenT", &sig, &leaf));
        let ca = std::fs::read_to_string(crate::tls_cmd::ca_path(dir.path())).unwrap();
        let cert = Cert::parse(&leaf).unwrap();
        assert_eq!(check_issued_by(&cert, &ca), Ok(()));
        assert!(name_text(cert.subject).contains("CN=测试医院 报告签名"));
        // A certificate for another key is refused at load, naming the file.
        let other = tempfile::tempdir().unwrap();
        ReportSigner::load(other.path(), "x").unwrap();
        std::fs::copy(cert_path(other.path()), cert_path(dir.path())).unwrap();
        let err = ReportSigner::load(dir.path(), "测试医院")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("report-sm2.pem") && err.contains("not for"),
            "{err}"
        );
    }
}
