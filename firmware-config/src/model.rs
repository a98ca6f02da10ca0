//! The configuration schema: every section and field, its type, default and documentation.
//! The defaults are the embedded default of DESIGN.md (loopback listeners, SQLite, ./data).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::schema::{FieldType, section, serde_field};
use crate::types::{
    AeTitle, ByteSize, DatabaseUrl, DicomCaller, DicomPeer, DicomWebSource, FhirSource, Hl7Source,
    HostName, HttpUrl, Port, PortRange, Secret,
};

// The defaults below are literals; the unit test `defaults_are_valid` builds them, so a typo
// fails the tests instead of reaching a user.
fn parse_default<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("built-in default parses")
}

const fn port(n: u16) -> Port {
    match Port::new(n) {
        Some(p) => p,
        None => panic!("a default port must not be 0"),
    }
}

section! {
    /// The site: who runs this appliance.
    Site = "site" {
        /// Name shown on pages, reports and SMS messages.
        name: String = "远程会诊与双向转诊平台".to_owned(),
        /// Code of the lead institution (e.g. its licence registration number); letters,
        /// digits and '-', at most 32. Empty until the site is registered.
        institution_code: String = String::new(),
    }
}

section! {
    /// Network listeners. Ports must differ within TCP and within UDP.
    Listeners = "listeners" {
        /// Address every listener binds to. Loopback in the embedded default; a non-loopback
        /// address needs TLS (see [tls]).
        bind: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST),
        /// Host name or IP address clients use to reach this machine (printed URLs, ICE
        /// candidates).
        public_host: HostName = parse_default("127.0.0.1"),
        /// TCP: appliance web pages and API (/api/v1, /healthz, /readyz, /metrics).
        http: Port = port(8080),
        /// TCP: imaging DICOMweb (/dicomweb), viewer page and its WebSocket.
        imaging_http: Port = port(8081),
        /// TCP: imaging DICOM upper layer (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE).
        dicom: Port = port(11112),
        /// Our DICOM AE title.
        dicom_ae_title: AeTitle = parse_default("APPLIANCE"),
        /// TCP: sfu signalling WebSocket, room page and admin API.
        sfu_signalling: Port = port(8082),
        /// UDP: sfu WebRTC media, a range FIRST-LAST. With the str0m transport, the first ports
        /// (one per core) carry everything, and the same numbers over TCP take ICE-TCP.
        sfu_media_udp: PortRange = parse_default("40000-40999"),
        /// TCP: DICOM over TLS (the standard's port is 2762), same AE title, callers and
        /// certificate as `dicom`; only with `tls.cert` and `tls.key` set. Unset: none.
        dicom_tls: Option<Port> = None,
        /// UDP: sfu QUIC for room terminals (planned: reserved, nothing listens on it yet).
        sfu_quic: Port = port(4433),
    }
}

section! {
    /// TLS for every HTTP and WebSocket listener (TLS 1.2 and 1.3). PEM files; relative paths
    /// are from the working directory. `appliance tls init` makes a local CA and sets both.
    /// Replaced files are served without a restart (checked every 2 s, and on SIGHUP).
    Tls = "tls" {
        /// Certificate chain (PEM). Set together with `key`.
        cert: Option<PathBuf> = None,
        /// Private key (PEM). Set together with `cert`.
        key: Option<PathBuf> = None,
        /// Refuse to start plain-text listeners on a non-loopback address (MLPS level 3:
        /// encryption in transit).
        require_outside_loopback: bool = true,
    }
}

section! {
    /// Where data lives on disk.
    Storage = "storage" {
        /// Data directory: database, DICOM store, configuration history. Also set by
        /// `--data-dir` or APPLIANCE_DATA.
        data_dir: PathBuf = PathBuf::from("./data"),
        /// Folder of the built web apps (`appliance/web/dist`, made by `scripts/run`). Unset:
        /// the one beside the sources this binary was built from.
        web_dir: Option<PathBuf> = None,
    }
}

section! {
    /// The appliance database.
    Database = "database" {
        /// sqlite:PATH (relative to the data directory) or postgres://user:password@host/db.
        url: DatabaseUrl = DatabaseUrl::Sqlite(PathBuf::from("appliance.db")),
        /// Most connections in the pool, 1-256.
        max_connections: u32 = 8,
    }
}

section! {
    /// The imaging server.
    Imaging = "imaging" {
        /// Memory for decoded images shared by all viewers and WADO-RS `rendered`, e.g. "4GiB".
        volume_cache: ByteSize = ByteSize(4 << 30),
        /// Render threads; 0 means one per CPU core. At most 1024.
        render_threads: u32 = 0,
        /// GPU rendering: "auto" (a real GPU if present), "on" or "off".
        gpu: GpuMode = GpuMode::Auto,
        /// GPU memory for resident volumes, e.g. "2GiB".
        gpu_memory: ByteSize = ByteSize(2 << 30),
        /// DICOM peers allowed to call us: "AE" or "AE@IP". Empty accepts any caller, which is
        /// allowed only on a loopback bind address.
        allowed_callers: Vec<DicomCaller> = Vec::new(),
        /// PACS we query (C-FIND) and retrieve from (C-MOVE to our AE title): "AE@host:port",
        /// e.g. ["PACS1@10.0.0.9:104"]. Each must know our AE title, address and DICOM port.
        /// They are also the only destinations a C-MOVE sent to us may name.
        peers: Vec<DicomPeer> = Vec::new(),
        /// The Ed25519 public key (base64, 32 bytes) whose signature viewer tokens must carry:
        /// the appliance's, or a development key until it issues them. Empty: every viewer
        /// session is refused.
        viewer_token_key: String = String::new(),
        /// Seconds a viewer who dropped keeps its place (and control) in a shared session, 1-300;
        /// a session nobody is in any more is then forgotten.
        viewer_grace_secs: u32 = 30,
        /// Whether every participant of a shared view may draw and edit annotations (true), or
        /// only the one in control.
        viewer_open_annotations: bool = true,
        /// Encrypt each DICOM file stored from now on with SM4-GCM under a key derived from
        /// DATA_DIR/keys/data.key (made if missing). Files stored before stay as they are and
        /// keep opening; backups copy the files encrypted.
        encrypt_at_rest: bool = false,
    }
}

section! {
    /// The media SFU.
    Sfu = "sfu" {
        /// STUN/TURN servers handed to clients, e.g.
        /// [{ urls = ["turn:turn.hospital.local:3478"], username = "u", credential = "c" }].
        ice_servers: Vec<IceServer> = Vec::new(),
        /// Rooms open at once on this node, 1-10000.
        max_rooms: u32 = 100,
        /// Participants in one room, 2-100.
        max_participants_per_room: u32 = 16,
        /// Seconds a dropped participant keeps its place, 0-300.
        rejoin_grace_secs: u32 = 20,
        /// The Ed25519 public key (base64, 32 bytes) whose signature room tokens must carry:
        /// the appliance's (`appliance run` fills it in when empty). Empty: every join is
        /// refused.
        token_key: String = String::new(),
        /// The WebRTC stack: "str0m" (one driver thread per core, each on one port of
        /// listeners.sfu_media_udp for all the connections of its rooms; TWCC estimates) or
        /// "webrtc-rs" (a peer connection and a UDP port per participant; about 20% more CPU
        /// per packet).
        transport: SfuTransport = SfuTransport::Str0m,
    }
}

section! {
    /// Notifications through the hospital's SMS platform.
    Notifications = "notifications" {
        /// SMS gateway: "none", "http-json" or "http-form".
        sms_gateway: SmsGateway = SmsGateway::None,
        /// Gateway endpoint (http or https); required unless the gateway is "none".
        sms_url: Option<HttpUrl> = None,
        /// Gateway API key.
        sms_api_key: Secret = Secret::default(),
        /// Message template; must contain {message}; {site} is the site name.
        sms_template: String = "【{site}】{message}".to_owned(),
    }
}

section! {
    /// Account security (MLPS level 3 baseline; it can be tightened, not loosened).
    Security = "security" {
        /// Minimum password length, 8-128.
        password_min_length: u32 = 8,
        /// Character classes (lower, upper, digit, symbol) a password needs, 3-4.
        password_min_classes: u32 = 3,
        /// Days before a password must be changed, 1-365.
        password_max_age_days: u32 = 90,
        /// Failed logins before the account locks, 1-10.
        lockout_threshold: u32 = 5,
        /// Minutes an account stays locked, 1-1440.
        lockout_minutes: u32 = 15,
        /// Minutes of inactivity before a session ends, 1-120.
        idle_timeout_minutes: u32 = 30,
        /// Who must use a TOTP second factor: "admins" (others may opt in) or "everyone".
        second_factor: SecondFactor = SecondFactor::Admins,
        /// Days the audit trail is kept, at least 180.
        audit_retention_days: u32 = 180,
        /// The hash new audit records are chained with: "sm3" (GB/T 32905, for the national
        /// cryptography assessment) or "sha256". Records keep the one they were written with,
        /// so a chain that changes keeps verifying.
        audit_hash: AuditHash = AuditHash::Sm3,
        /// The data key supplied by the operator (a file holding 32 random bytes in base64, on
        /// a mounted secrets volume or written by a key-management tool); it must exist and is
        /// never made here, nor copied into backups. Unset: DATA_DIR/keys/data.key, made on
        /// first start. Sensitive columns and encrypted DICOM files derive their keys from it.
        data_key_file: Option<PathBuf> = None,
    }
}

section! {
    /// Links to the hospital's other systems.
    Integration = "integration" {
        /// AE title of the PACS we pull studies from. Set with pacs_host and pacs_port.
        /// (Planned: not used yet; imaging pulls from the PACS in `imaging.peers`.)
        pacs_ae_title: Option<AeTitle> = None,
        /// Host of that PACS.
        pacs_host: Option<HostName> = None,
        /// DICOM port of that PACS.
        pacs_port: Option<Port> = None,
        /// TCP: the HL7 v2 MLLP listener for the HIS, EMR, LIS and the clinics' cloud HIS.
        hl7_mllp_port: Port = port(2575),
        /// Systems allowed to send HL7 v2 messages, each with the institution whose patients
        /// they are about: "APP^FACILITY@IP=institution" (MSH-3, MSH-4, the sending address; *
        /// for any application or address), e.g. ["HIS^CITY01@10.0.0.5=市第一人民医院"]. Empty:
        /// every message is refused (AR). Times without an offset are read as UTC+8.
        hl7_sources: Vec<Hl7Source> = Vec::new(),
        /// The largest HL7 message taken (a result with an embedded PDF counts whole), 1 KiB to
        /// 256 MiB.
        hl7_max_message_bytes: ByteSize = ByteSize(16 << 20),
        /// Not used: FHIR servers to pull from are `fhir_sources`. Kept so configurations
        /// that set it still load.
        fhir_base_url: Option<HttpUrl> = None,
        /// FHIR R4 servers whose record is pulled in incrementally (`_lastUpdated`), each with
        /// the institution whose patients it holds:
        /// "http://host:port/fhir=institution;token_file=PATH;every=SECS" (https planned).
        fhir_sources: Vec<FhirSource> = Vec::new(),
        /// Cloud PACS (DICOMweb: QIDO-RS and WADO-RS) whose studies are pulled into the data
        /// centre, each with the institution whose patients they are: every study not held
        /// whole yet is fetched and linked to the patient its Patient ID names there:
        /// "http://host:port/dicom-web=institution;token_file=PATH;every=SECS" (https planned).
        dicomweb_sources: Vec<DicomWebSource> = Vec::new(),
    }
}

section! {
    /// Scheduled backups, taken while the stack runs (`appliance backup --to DIR` takes one by
    /// hand; `appliance backup verify` and `appliance restore` use either).
    Backup = "backup" {
        /// Folder that receives the scheduled backups, one `backup-TIME` folder each; put it on
        /// another disk. Unset: no scheduled backups.
        dir: Option<PathBuf> = None,
        /// File whose first line is the passphrase (at least 12 characters) that seals the
        /// keys and TLS files in each backup (SM4-GCM under an Argon2id key); `restore` then
        /// needs it. Unset: keys are copied as they are, so keep backups as private as the
        /// data directory.
        key_passphrase_file: Option<PathBuf> = None,
        /// Hours between scheduled backups, 1-168.
        every_hours: u32 = 24,
        /// Scheduled backups kept (older ones are deleted), 1-365.
        keep: u32 = 14,
    }
}

/// GPU use for rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuMode {
    /// A real GPU adapter if there is one, otherwise the CPU.
    Auto,
    /// Always the GPU path (a software adapter when there is no GPU).
    On,
    /// Always the CPU.
    Off,
}

/// How SMS messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmsGateway {
    /// No SMS; in-app notices only.
    None,
    /// POST a JSON body.
    HttpJson,
    /// POST a form body.
    HttpForm,
}

/// Which WebRTC stack carries the SFU's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SfuTransport {
    /// webrtc-rs 0.21: one peer connection and UDP port per participant.
    WebrtcRs,
    /// str0m 0.25: sans-IO connections on one UDP port, one driver.
    Str0m,
}

/// The audit chain's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditHash {
    /// SM3 (GB/T 32905).
    Sm3,
    /// SHA-256.
    Sha256,
}

impl AuditHash {
    /// The name stored beside each record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sm3 => "sm3",
            Self::Sha256 => "sha256",
        }
    }
}

/// Who must use a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondFactor {
    /// The admin roles; other users may opt in.
    Admins,
    /// Every user.
    Everyone,
}

/// A STUN or TURN server handed to WebRTC clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub credential: Secret,
}

serde_field!(GpuMode, SmsGateway, SecondFactor, SfuTransport, AuditHash);

impl FieldType for Vec<IceServer> {
    const SENSITIVE: bool = true;
    fn from_toml(v: toml::Value) -> Result<Self, String> {
        crate::schema::via_serde(v)
    }
    fn to_toml(&self) -> Option<toml::Value> {
        crate::schema::to_value(self)
    }
}
