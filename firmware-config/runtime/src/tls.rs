//! TLS on every HTTP and WebSocket listener: the certificate chain and key named by `tls.cert`
//! and `tls.key` (PEM), served by rustls (TLS 1.2 and 1.3 on ring), replaced without a restart
//! when either file changes or on SIGHUP; and the listener that accepts TCP, completes
//! handshakes off the accept path and hands axum the decrypted streams.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::Shutdown;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate files are checked for a change.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{field} ({path}): cannot read the file: {source}")]
    Read {
        /// `tls.cert` or `tls.key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file holds no usable PEM block of its kind.
    #[error("{field} ({path}): {why}")]
    Pem {
        /// `tls.cert` or `tls.key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key does not fit the certificate, or rustls refused them.
    #[error("tls.key ({path}): {why}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The certificate in force, the files it came from and the rustls configuration that serves
/// it. Shared by every listener of the process; [`Tls::reload`] swaps the certificate for all.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Resolver>,
    stamp: Mutex<Stamp>,
    config: Arc<ServerConfig>,
}

/// What the files looked like when last loaded (modification time and length of each).
type Stamp = [(Option<SystemTime>, u64); 2];

#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.0.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        })
    }
}

fn stamp(path: &Path) -> (Option<SystemTime>, u64) {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a chain and key; the key must sign for the chain's first certificate.
fn certified(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |field, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            field,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("tls.cert", cert)?;
    let key_pem = read("tls.key", key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            field: "tls.cert",
            path: cert.to_owned(),
            why: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            field: "tls.cert",
            path: cert.to_owned(),
            why: "no CERTIFICATE block".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        field: "tls.key",
        path: key.to_owned(),
        why: format!("no usable PRIVATE KEY block: {e}"),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::Key {
            path: key.to_owned(),
            why: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Key {
        path: key.to_owned(),
        why: format!("does not belong to the certificate in tls.cert: {e}"),
    })?;
    Ok(certified)
}

impl Tls {
    /// Loads `cert` and `key`; `None` when TLS is not configured.
    pub fn from_config(config: &firmware_config::Config) -> Result<Option<Arc<Self>>, TlsError> {
        match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// Loads a certificate chain and its key.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let before = [stamp(cert), stamp(key)];
        let current = certified(cert, key)?;
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(current))));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Key {
                path: key.to_owned(),
                why: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            resolver,
            stamp: Mutex::new(before),
            config: Arc::new(config),
        }))
    }

    /// Reads the files again and serves what they hold from the next handshake on. On an error
    /// the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let now = [stamp(&self.cert), stamp(&self.key)];
        let fresh = certified(&self.cert, &self.key)?;
        match self.resolver.0.write() {
            Ok(mut k) => *k = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        if let Ok(mut s) = self.stamp.lock() {
            *s = now;
        }
        metrics::counter!("tls_certificate_reloads_total").increment(1);
        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// A rustls configuration serving the same (reloading) certificate for another protocol:
    /// `alpn` as its application protocols (empty: none), e.g. DICOM's TLS port.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The chain's first certificate as served now (DER).
    pub fn certificate(&self) -> Option<Vec<u8>> {
        let k = match self.resolver.0.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        k.cert.first().map(|c| c.as_ref().to_vec())
    }

    fn changed(&self) -> bool {
        let now = [stamp(&self.cert), stamp(&self.key)];
        self.stamp.lock().map(|s| *s != now).unwrap_or(true)
    }

    /// Reloads on SIGHUP, and when either file's time or length changes (checked every two
    /// seconds), until `shutdown`. A file caught half-written fails to load and is tried again
    /// at the next check.
    pub fn watch(self: &Arc<Self>, shutdown: Shutdown) -> Result<(), crate::RuntimeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).map_err(crate::RuntimeError::Signals)?;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(WATCH_EVERY);
            let mut failed_stamp = None;
            loop {
                let why = tokio::select! {
                    () = shutdown.wait() => return,
                    _ = hup.recv() => "SIGHUP",
                    _ = every.tick() => {
                        let now = [stamp(&this.cert), stamp(&this.key)];
                        if !this.changed() || failed_stamp == Some(now) {
                            continue;
                        }
                        "file changed"
                    }
                };
                match this.reload() {
                    Ok(()) => failed_stamp = None,
                    Err(e) => {
                        failed_stamp = Some([stamp(&this.cert), stamp(&this.key)]);
                        tracing::error!(reason = why, error = %e, "TLS certificate not reloaded: the one in force stays");
                    }
                }
            }
        });
        Ok(())
    }
}

/// A connection as axum reads it: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// No TLS configured.
    Plain(TcpStream),
    /// After the handshake.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Accepted connections, ready to serve: the accept loop runs in its own task, each TLS
/// handshake in another, so a slow or hostile client never holds up the next one.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<(Stream, SocketAddr)>,
    local: SocketAddr,
}

impl Incoming {
    /// Starts accepting on `listener` (with TLS when `tls` is set) until `shutdown`.
    pub fn start(
        listener: TcpListener,
        tls: Option<Arc<Tls>>,
        shutdown: Shutdown,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(Arc::clone(&t.config)));
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = shutdown.wait() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: wait rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                // Small messages (WebSocket operations and state) must not wait for the peer's
                // delayed ACK behind Nagle's algorithm.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
                let Some(acceptor) = &acceptor else {
                    if tx.send((Stream::Plain(tcp), peer)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((Stream::Tls(Box::new(tls)), peer)).await;
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(next) => next,
            // The accept loop ended (shutdown): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_mismatched_files_name_the_field() {
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        let e = Tls::load(&cert, &key).unwrap_err();
        assert!(e.to_string().starts_with("tls.cert"), "{e}");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let e = Tls::load(&cert, &key).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
