//! e2e: the harness for end-to-end tests. It finds the daemon binaries cargo built, starts one
//! as a real process in a fresh data directory on free ports, speaks HTTP/1.1 to it over a
//! plain socket, and stops it with a real signal. The tests in `tests/` use it.
//!
//! The binaries are the ones in the same target directory as the test executable; a workspace
//! `cargo test` builds them first (each daemon package has integration tests, which makes cargo
//! build its binary), and `scripts/test` builds them explicitly.

pub mod chromium;
pub mod hl7;
pub mod imaging;
pub mod janus;
pub mod orthanc;
pub mod testdata;
pub mod webrtc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The path of a workspace binary (`appliance`, `imaging`, `sfu`) in the target directory this
/// executable was built into: beside it (a bench binary in `target/release/`) or one folder up
/// (a test in `target/debug/deps/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "{name} is missing from {:?}: build the binaries first (`cargo build --workspace --bins`, as scripts/test does)",
            candidates
        )
    })
}

/// How often the harness polls a daemon: fine enough to time start-up in the bench.
const POLL: Duration = Duration::from_millis(2);

/// A set of free loopback ports for one daemon's listeners.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// listeners.http
    pub http: u16,
    /// listeners.imaging_http
    pub imaging_http: u16,
    /// listeners.dicom
    pub dicom: u16,
    /// listeners.sfu_signalling
    pub sfu_signalling: u16,
    /// integration.hl7_mllp_port
    pub hl7: u16,
    /// listeners.sfu_quic (UDP)
    pub quic: u16,
    /// The first port of `listeners.sfu_media_udp` (see [`Ports::media_udp`]).
    media_first: u16,
}

/// How many port sets this process has handed out: each gets its own media range.
static PORT_SETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Ports {
    /// Ports the system just handed out as free.
    pub fn free() -> Self {
        let tcp: Vec<TcpListener> = (0..5)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port"))
            .collect();
        let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
        // The media range lies below the system's ephemeral ports (32768 up), so no port the
        // system hands out (here or to another test) falls in it; each port set of this
        // process takes its own 100 ports of 10000-29999, offset by the process id, so tests
        // running side by side in one process never share one (the drivers also listen on
        // TCP at these numbers, for ICE-TCP).
        let n = PORT_SETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = (std::process::id().wrapping_mul(37).wrapping_add(n)) % 200;
        Self {
            http: port(&tcp[0]),
            imaging_http: port(&tcp[1]),
            dicom: port(&tcp[2]),
            sfu_signalling: port(&tcp[3]),
            hl7: port(&tcp[4]),
            quic: udp.local_addr().expect("local addr").port(),
            media_first: 10_000 + (slot as u16) * 100,
        }
    }

    /// The sfu's WebRTC media range (`listeners.sfu_media_udp`) these ports give: 100 ports.
    pub fn media_udp(&self) -> (u16, u16) {
        (self.media_first, self.media_first + 99)
    }

    /// `--set` arguments putting every listener on these ports.
    pub fn args(&self) -> Vec<String> {
        let (media_first, _) = self.media_udp();
        [
            format!("listeners.http={}", self.http),
            format!("listeners.imaging_http={}", self.imaging_http),
            format!("listeners.dicom={}", self.dicom),
            format!("listeners.sfu_signalling={}", self.sfu_signalling),
            format!("integration.hl7_mllp_port={}", self.hl7),
            format!("listeners.sfu_quic={}", self.quic),
            format!(
                "listeners.sfu_media_udp={}-{}",
                media_first,
                media_first + 99
            ),
        ]
        .into_iter()
        .flat_map(|a| ["--set".to_owned(), a])
        .collect()
    }
}

/// A daemon process started by a test; killed when dropped if still running.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Daemon {
    /// Starts `cmd` with piped output collected in the background.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start the daemon");
        let (stdout, out_reader) = collect(child.stdout.take().expect("piped stdout"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
            started,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Polls `GET path` on `port` until it answers 200 or `timeout` passes; returns the response
    /// and when it came.
    pub fn wait_ok(&mut self, port: u16, path: &str, timeout: Duration) -> (Response, Instant) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = get(port, path)
                && r.status == 200
            {
                return (r, Instant::now());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "daemon exited with {status} before {path} answered\nstderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{path} on port {port} did not answer 200 in {timeout:?}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until stdout contains `text`.
    pub fn wait_stdout(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if out.contains(text) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "stdout never showed {text:?}; it was:\n{out}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {name} failed");
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                // The pipes close with the process: the readers finish with all its output.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon still running after {timeout:?}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(pipe: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&buf);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut b = sink.lock().unwrap_or_else(PoisonError::into_inner);
            b.push_str(&line);
            b.push('\n');
        }
    });
    (buf, reader)
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body as text (invalid UTF-8 replaced).
    pub body: String,
    /// Body as received.
    pub bytes: Vec<u8>,
}

impl Response {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The key tests that start imaging alone make it trust ([`imaging_key_args`]) and sign their
/// credentials with (the seed the viewer tests use).
pub fn test_signer() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// `--set imaging.viewer_token_key=` [`test_signer`]'s public key.
pub fn imaging_key_args() -> [String; 2] {
    [
        "--set".to_owned(),
        format!(
            "imaging.viewer_token_key={}",
            firmware_runtime::token::public_key_base64(&test_signer())
        ),
    ]
}

/// A service account's token (as the appliance signs them), valid a day.
pub fn service_token(key: &ed25519_dalek::SigningKey, write: bool) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    firmware_runtime::token::sign(
        &serde_json::json!({ "sub": "svc:tests", "jti": "tests", "write": write, "exp": exp }),
        key,
    )
}

/// The token-signing key of an appliance stack whose data directory is `data_dir`.
pub fn stack_signer(data_dir: &std::path::Path) -> ed25519_dalek::SigningKey {
    use base64::Engine;
    let text = std::fs::read_to_string(data_dir.join("keys/token-signing.key"))
        .expect("the stack's token-signing key");
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64")
        .try_into()
        .expect("32 bytes");
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// Requests to imaging with a service credential signed by [`test_signer`] (read and write).
pub mod as_service {
    /// `GET path` with the credential.
    pub fn get(port: u16, path: &str) -> std::io::Result<crate::Response> {
        request(port, "GET", path, &[], &[])
    }

    /// `METHOD path` with these headers, the credential and the body.
    pub fn request(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<crate::Response> {
        let auth = format!(
            "Bearer {}",
            crate::service_token(&crate::test_signer(), true)
        );
        let mut all = headers.to_vec();
        all.push(("Authorization", &auth));
        crate::request(port, method, path, &all, body)
    }
}

/// `GET path` on 127.0.0.1:`port` with HTTP/1.1 and `Connection: close`.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(port, "GET", path, &[], &[])
}

/// `METHOD path` on 127.0.0.1:`port` with these headers and body (HTTP/1.1, `Connection:
/// close`, Content-Length when there is a body).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Every file under `dir`, recursively, sorted (nothing when it cannot be read).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The 140 images of ../shared/testdata/series/ct-philips-headphantom-140 (without Philips'
/// DIRFILE, which is not an image), sorted.
pub fn ct_series_files() -> Vec<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140");
    files_under(&dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "DIRFILE"))
        .collect()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Waits up to 20 s for a listener on 127.0.0.1:`port`; the test fails naming `what` otherwise.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening(port) {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Checks a daemon binary's command line: `--help` names the options every daemon shares,
/// `--version` starts with its name, and an unknown option is a usage error (exit 2) naming it.
pub fn check_shared_cli(path: &str, name: &str) {
    let run = |arg: &str| {
        Command::new(path)
            .arg(arg)
            .output()
            .expect("run the binary")
    };
    let help = run("--help");
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--config <FILE>",
        "--data-dir <DIR>",
        "--set <SECTION.KEY=VALUE>",
        "--log-format",
    ] {
        assert!(
            text.contains(option),
            "{name} --help lacks {option}:\n{text}"
        );
    }
    let version = run("--version");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with(&format!("{name} ")));
    let bad = run("--no-such-option");
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--no-such-option"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nok\n")
            .expect("parses");
        assert_eq!(
            (r.status, r.body.as_str(), r.header("x-a")),
            (200, "ok\n", Some("b"))
        );
        let r = parse_response(
            b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!((r.status, r.body.as_str()), (503, "abc"));
        assert!(parse_response(b"garbage").is_none());
    }
}

/// Helpers for the appliance's command line and REST API.
/// The hospital's SMS gateway as tests stub it (an edge nobody here can reach).
pub mod sms {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    /// The hospital's SMS gateway, stubbed: records each request body; answers 503 while `down`.
    #[derive(Debug)]
    pub struct SmsStub {
        /// Its port on 127.0.0.1.
        pub port: u16,
        /// While true, it answers 503 and records nothing.
        pub down: Arc<AtomicBool>,
        /// The JSON bodies received.
        pub received: Arc<Mutex<Vec<Value>>>,
    }

    impl SmsStub {
        /// Starts it, down.
        pub fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub");
            let port = listener.local_addr().expect("addr").port();
            let down = Arc::new(AtomicBool::new(true));
            let received = Arc::new(Mutex::new(Vec::new()));
            let (d, r) = (down.clone(), received.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let status = if d.load(Ordering::SeqCst) {
                        "503 Service Unavailable"
                    } else {
                        if let Ok(v) = serde_json::from_slice(&body) {
                            r.lock().expect("stub lock").push(v);
                        }
                        "200 OK"
                    };
                    let _ = reader.get_mut().write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                }
            });
            Self {
                port,
                down,
                received,
            }
        }
    }
}

pub mod api {
    use std::path::Path;
    use std::process::Command;

    use serde_json::{Value, json};

    use crate::{Response, bin, request};

    /// Starts the whole stack (`appliance`) in `dir` on `ports`, with extra arguments, and waits
    /// until it is ready.
    pub fn start(dir: &Path, ports: &crate::Ports, extra: &[&str]) -> crate::Daemon {
        let mut cmd = Command::new(bin("appliance"));
        cmd.current_dir(dir)
            .args(ports.args())
            .args(extra)
            .env_remove("RUST_LOG");
        let mut d = crate::Daemon::spawn(cmd);
        d.wait_ok(ports.http, "/readyz", std::time::Duration::from_secs(30));
        d
    }

    /// `appliance demo-data` in `dir`; what it printed (the logins and one-time passwords).
    pub fn demo_data(dir: &Path) -> String {
        admin(dir, &["demo-data"])
    }

    /// The one-time password `demo_data` printed for `login`.
    pub fn demo_password(text: &str, login: &str) -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(login))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{login} in:\n{text}"))
            .to_owned()
    }

    /// Runs `appliance ARGS` in `dir` (its data under `dir/data`); panics unless it succeeds.
    pub fn admin(dir: &Path, args: &[&str]) -> String {
        let out = Command::new(bin("appliance"))
            .current_dir(dir)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run appliance");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds a user from the command line; returns (login, one-time password).
    pub fn new_user(
        dir: &Path,
        login: &str,
        role: &str,
        institution: &str,
        phone: &str,
    ) -> (String, String) {
        let out = admin(
            dir,
            &[
                "user",
                "add",
                "--login",
                login,
                "--name",
                login,
                "--role",
                role,
                "--institution",
                institution,
                "--phone",
                phone,
            ],
        );
        let one_time = out
            .lines()
            .find_map(|l| l.split(": ").nth(1).filter(|_| l.contains("one-time")))
            .expect("a one-time password")
            .to_owned();
        (login.to_owned(), one_time)
    }

    /// An API call with a bearer token, extra headers and an optional JSON body.
    pub fn call(
        port: u16,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Response {
        let auth = format!("Bearer {token}");
        let mut h = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        h.extend_from_slice(headers);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        request(port, method, path, &h, body.as_bytes()).expect("API request")
    }

    /// Logs in with the one-time password and replaces it with `Consult-2026`; returns a
    /// session token.
    pub fn activate(port: u16, (login, one_time): &(String, String)) -> String {
        let r = request(
            port,
            "POST",
            "/api/v1/auth/login",
            &[("Content-Type", "application/json")],
            json!({ "login": login, "password": one_time })
                .to_string()
                .as_bytes(),
        )
        .expect("login");
        assert_eq!(r.status, 200, "{}", r.body);
        let token = r.json()["token"].as_str().expect("a token").to_owned();
        let r = call(
            port,
            "POST",
            "/api/v1/auth/password",
            &token,
            &[],
            Some(json!({ "old_password": one_time, "new_password": "Consult-2026" })),
        );
        assert_eq!(r.status, 204, "{}", r.body);
        token
    }
}

/// Second-factor helpers: TOTP codes computed by Python's standard library (hmac, hashlib),
/// an implementation nobody here wrote.
pub mod totp {
    use std::process::Command;

    use serde_json::json;

    use crate::api::call;

    /// The code for a base32 `secret`, `offset` 30-second steps from now.
    pub fn code(secret: &str, offset: i64) -> String {
        let script = "import base64, hashlib, hmac, struct, sys, time\n\
s = sys.argv[1]; key = base64.b32decode(s + '=' * (-len(s) % 8))\n\
step = int(time.time()) // 30 + int(sys.argv[2])\n\
h = hmac.new(key, struct.pack('>Q', step), hashlib.sha1).digest()\n\
o = h[-1] & 15\n\
print('%06d' % ((struct.unpack('>I', h[o:o + 4])[0] & 0x7fffffff) % 1000000))\n";
        let out = Command::new("python3")
            .args(["-c", script, secret, &offset.to_string()])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Sets up and confirms a second factor for the session `token`; returns the secret.
    pub fn enroll(port: u16, token: &str) -> String {
        let setup = call(port, "POST", "/api/v1/auth/totp/setup", token, &[], None);
        assert_eq!(setup.status, 200, "{}", setup.body);
        let secret = setup.json()["secret"]
            .as_str()
            .expect("a secret")
            .to_owned();
        let r = call(
            port,
            "POST",
            "/api/v1/auth/totp/confirm",
            token,
            &[],
            Some(json!({ "code": code(&secret, 0) })),
        );
        assert_eq!(r.status, 204, "{}", r.body);
        secret
    }
}

/// The text of a PDF, as poppler's pdftotext (an independent reader) extracts it.
pub fn pdf_text(pdf: &[u8]) -> String {
    let dir = temp_dir();
    let file = dir.path().join("doc.pdf");
    std::fs::write(&file, pdf).expect("write the PDF");
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext (scripts/test installs poppler-utils)");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minimal WebSocket client (RFC 6455) for tests: the opening handshake, then text frames
/// read one at a time (the server sends them unmasked and, here, unfragmented).
#[derive(Debug)]
pub struct WebSocket {
    stream: BufReader<TcpStream>,
}

impl WebSocket {
    /// Opens `path` on 127.0.0.1:`port`; returns the status line and, on 101, the socket.
    pub fn connect(port: u16, path: &str) -> (String, Option<WebSocket>) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .expect("handshake");
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let status = status.trim().to_owned();
        let open = status.contains(" 101 ");
        (status, open.then_some(WebSocket { stream: reader }))
    }

    /// Sends a text message (masked, as a client must).
    pub fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x37u8, 0xFA, 0x21, 0x3D];
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .get_mut()
            .write_all(&frame)
            .expect("send a WebSocket frame");
    }

    /// The next text message, or `None` if the socket closed or `timeout` passed.
    pub fn next_text(&mut self, timeout: Duration) -> Option<String> {
        self.stream.get_ref().set_read_timeout(Some(timeout)).ok()?;
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).ok()?;
            let opcode = head[0] & 0x0F;
            let mut len = u64::from(head[1] & 0x7F);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).ok()?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).ok()?;
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; usize::try_from(len).ok()?];
            self.stream.read_exact(&mut payload).ok()?;
            match opcode {
                0x1 => return String::from_utf8(payload).ok(),
                0x8 => return None,
                _ => {} // pings and binary frames are skipped
            }
        }
    }
}
