//! The DICOM listener (`listeners.dicom`, 11112): associations addressed to our AE title
//! (`listeners.dicom_ae_title`), from callers listed in `imaging.allowed_callers` (AE title, and
//! address when given; any caller when the list is empty, which the configuration allows only
//! on loopback). Others get an A-ASSOCIATE-RJ naming the reason. Verification (C-ECHO) is
//! answered. Storage (C-STORE) of any SOP class in any transfer syntax dicom-rs reads goes to
//! the [`Store`]: a malformed or unidentifiable instance is refused with a failure status and
//! the association goes on. C-FIND is answered from the index ([`cfind`]); C-GET and C-MOVE
//! send what the index holds ([`retrieve`]).

pub mod cfind;
pub mod retrieve;
pub mod scu;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::association::Association;
use dicom_ul::association::server::{AccessControl, Negotiation, ServerAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, RequestorRoles, UserIdentity,
};
use firmware_config::{Config, DicomCaller, DicomPeer};
use firmware_runtime::{Context, RuntimeError, State};
use tokio::task::JoinSet;

use crate::store::{Store, text};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// Readiness name of the DICOM listener.
pub const SUBSYSTEM: &str = "dicom";

const VERIFICATION: &str = "1.2.840.10008.1.1";
const C_ECHO_RQ: u16 = 0x0030;
const C_ECHO_RSP: u16 = 0x8030;
const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;
const C_FIND_RQ: u16 = 0x0020;
const C_FIND_RSP: u16 = 0x8020;
const C_MOVE_RQ: u16 = 0x0021;
const C_MOVE_RSP: u16 = 0x8021;
const C_GET_RQ: u16 = 0x0010;
const C_GET_RSP: u16 = 0x8010;
const C_CANCEL_RQ: u16 = 0x0FFF;
/// Command Data Set Type: no data set follows.
const NO_DATA_SET: u16 = 0x0101;
/// C-FIND pending: a match follows.
const PENDING: u16 = 0xFF00;
/// How long an idle association may wait for its next message.
const IDLE: Duration = Duration::from_secs(30);

/// Who may open an association, decided per connection (the caller's address is known).
#[derive(Debug, Clone)]
struct Callers {
    allowed: Vec<DicomCaller>,
    peer: IpAddr,
}

impl AccessControl for Callers {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let calling = calling_ae_title.trim();
        let known = self.allowed.is_empty()
            || self
                .allowed
                .iter()
                .any(|c| c.ae_title.as_str() == calling && c.host.is_none_or(|h| h == self.peer));
        if known {
            Ok(())
        } else {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

/// Role selection: a caller may take the SCP role for storage (C-GET sends instances back
/// on its own association, PS3.4 C.4.3.1); every role asked for is granted.
#[derive(Debug, Clone, Copy)]
struct Roles;

impl Negotiation for Roles {
    fn negotiate_roles(&self, _class: &str, scu: bool, scp: bool) -> Option<RequestorRoles> {
        Some(RequestorRoles { scu, scp })
    }
}

/// Runs the DICOM listener until `ctx.shutdown`, then lets open associations finish (up to
/// the idle limit).
pub async fn run(
    config: &Config,
    ctx: &Context,
    store: Store,
    audit: std::sync::Arc<dyn crate::access::AuditSink>,
) -> Result<(), RuntimeError> {
    ctx.readiness.set(SUBSYSTEM, State::Starting);
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.dicom.get());
    let listener = match firmware_runtime::bind(addr, "listeners.dicom").await {
        Ok(l) => l,
        Err(e) => {
            ctx.readiness.set(SUBSYSTEM, State::Failed(e.to_string()));
            return Err(e);
        }
    };
    // DICOM over TLS: the same service on its own port, with the listeners' certificate.
    let secure = match (config.listeners.dicom_tls, &ctx.tls) {
        (Some(port), Some(tls)) => {
            let addr = SocketAddr::new(config.listeners.bind, port.get());
            match firmware_runtime::bind(addr, "listeners.dicom_tls").await {
                Ok(l) => Some((l, tls.server_config(&[]))),
                Err(e) => {
                    ctx.readiness.set(SUBSYSTEM, State::Failed(e.to_string()));
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let service = Service {
        ae_title: config.listeners.dicom_ae_title.as_str().to_owned(),
        allowed: config.imaging.allowed_callers.clone(),
        peers: config.imaging.peers.clone(),
        store,
        audit,
    };
    tracing::info!(%addr, ae_title = %service.ae_title, "DICOM listening");
    if let Some((l, _)) = &secure
        && let Ok(a) = l.local_addr()
    {
        tracing::info!(addr = %a, "DICOM over TLS listening");
    }
    ctx.readiness.set(SUBSYSTEM, State::Ready);
    let plain = accept_loop(listener, None, &service, ctx);
    match secure {
        Some((l, tls)) => {
            tokio::join!(plain, accept_loop(l, Some(tls), &service, ctx));
        }
        None => plain.await,
    }
    ctx.readiness.set(SUBSYSTEM, State::Stopping);
    Ok(())
}

/// What every association of the listener shares.
#[derive(Debug, Clone)]
struct Service {
    ae_title: String,
    allowed: Vec<DicomCaller>,
    /// Where C-MOVE may send.
    peers: Vec<DicomPeer>,
    store: Store,
    audit: std::sync::Arc<dyn crate::access::AuditSink>,
}

/// Accepts associations on `listener` (over TLS when `tls` is set) until shutdown, then lets
/// those open finish for up to [`IDLE`].
async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    service: &Service,
    ctx: &Context,
) {
    let mut associations = JoinSet::new();
    loop {
        tokio::select! {
            () = ctx.shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Responses are small and answer a request: Nagle's algorithm would hold
                    // each one until the peer's delayed ACK (40 ms), capping an association
                    // at ~25 instances/s.
                    let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    let service = service.clone();
                    let tls = tls.clone();
                    associations.spawn(async move {
                        if let Err(e) = association(stream, peer, &service, tls).await {
                            tracing::info!(%peer, reason = %e, "DICOM association ended");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "DICOM accept failed"),
            },
        }
        while associations.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(IDLE, async {
        while associations.join_next().await.is_some() {}
    })
    .await;
}

async fn association(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: &Service,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> Result<(), String> {
    let callers = Callers {
        allowed: service.allowed.clone(),
        peer: peer.ip(),
    };
    let options = ServerAssociationOptions::new()
        .ae_access_control(callers)
        .ae_title(service.ae_title.as_str())
        .with_negotiation(Roles)
        .with_abstract_syntax(VERIFICATION)
        // Any storage SOP class: what cannot be kept is refused per instance, with a status.
        .promiscuous(true)
        .read_timeout(IDLE)
        .write_timeout(IDLE);
    match tls {
        None => {
            let assoc = options
                .establish_async(stream)
                .await
                .map_err(|e| format!("refused: {e}"))?;
            serve(assoc, peer, service, |s: &tokio::net::TcpStream| s).await
        }
        Some(config) => {
            let assoc =
                tokio::time::timeout(IDLE, options.tls_config(config).establish_tls_async(stream))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("refused: {e}"))?;
            serve(
                assoc,
                peer,
                service,
                |s: &dicom_ul::association::server::AsyncTlsStream| s.get_ref().0,
            )
            .await
        }
    }
}

/// One association's messages, over plain TCP or TLS (`tcp` finds the socket under the stream).
async fn serve<S>(
    mut assoc: dicom_ul::association::server::AsyncServerAssociation<S>,
    peer: SocketAddr,
    service: &Service,
    tcp: impl Fn(&S) -> &tokio::net::TcpStream,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let store = &service.store;
    let audit = service.audit.clone();
    tracing::info!(%peer, calling = assoc.peer_ae_title(), "DICOM association accepted");
    // What this association does goes to the audit trail under the caller's AE title.
    let audited = Audited {
        sink: audit,
        who: format!("ae:{}", assoc.peer_ae_title().trim()),
        source: peer.ip().to_string(),
        stored: Default::default(),
        refused: Default::default(),
    };
    metrics::counter!("dicom_associations_total").increment(1);
    let contexts: Vec<(u8, String)> = assoc
        .presentation_contexts()
        .iter()
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
        .collect();
    // A command waiting for its data set, and the data received so far.
    let mut pending: Option<(InMemDicomObject, u8)> = None;
    let mut data = Vec::new();
    loop {
        let pdu = assoc.receive().await.map_err(|e| e.to_string())?;
        // ACK at once: a sender that uses Nagle's algorithm (dcmtk's storescu does unless
        // TCP_NODELAY=1) holds the last piece of each data set until its previous segment is
        // acknowledged, and a delayed ACK costs 40 ms per instance. Linux drops quick-ACK mode
        // by itself, so it is renewed after every PDU.
        let _ = socket2::SockRef::from(tcp(assoc.inner_stream())).set_tcp_quickack(true);
        match pdu {
            Pdu::PData { data: values } => {
                for pdv in values {
                    let pc = pdv.presentation_context_id;
                    match pdv.value_type {
                        PDataValueType::Command if pdv.is_last => {
                            let cmd = read_command(&pdv.data)?;
                            if field(&cmd, tags::COMMAND_DATA_SET_TYPE) == Some(NO_DATA_SET) {
                                if let Some(reply) = answer_without_data(&cmd, pc)? {
                                    assoc.send(&reply).await.map_err(|e| e.to_string())?;
                                }
                            } else {
                                pending = Some((cmd, pc));
                                data.clear();
                            }
                        }
                        PDataValueType::Command => return Err("fragmented command".into()),
                        PDataValueType::Data => {
                            data.extend_from_slice(&pdv.data);
                            if pdv.is_last {
                                let (cmd, pc) =
                                    pending.take().ok_or("data set without a command")?;
                                let ts = contexts
                                    .iter()
                                    .find(|(id, _)| *id == pc)
                                    .map(|(_, ts)| ts.clone())
                                    .unwrap_or_default();
                                let bytes = std::mem::take(&mut data);
                                let command = field(&cmd, tags::COMMAND_FIELD);
                                if matches!(command, Some(C_GET_RQ | C_MOVE_RQ)) {
                                    let request = Request {
                                        cmd: &cmd,
                                        pc,
                                        ts: &ts,
                                        identifier: &bytes,
                                    };
                                    retrieve(&mut assoc, service, request, &audited).await?;
                                    continue;
                                }
                                for reply in
                                    answer_with_data(store, &cmd, pc, &ts, &bytes, &audited).await?
                                {
                                    assoc.send(&reply).await.map_err(|e| e.to_string())?;
                                }
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                assoc
                    .send(&Pdu::ReleaseRP)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            Pdu::AbortRQ { .. } => return Err("aborted by the peer".into()),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}

fn read_command(bytes: &[u8]) -> Result<InMemDicomObject, String> {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("bad command: {e}"))
}

fn field(cmd: &InMemDicomObject, tag: dicom_object::Tag) -> Option<u16> {
    cmd.element(tag).ok().and_then(|e| e.to_int::<u16>().ok())
}

fn store_response(cmd: &InMemDicomObject, pc: u8, status: u16) -> Result<Pdu, String> {
    let message_id = field(cmd, tags::MESSAGE_ID).ok_or("C-STORE without Message ID")?;
    let sop_class = text(cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let instance = text(cmd, tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
    response(
        pc,
        &sop_class,
        C_STORE_RSP,
        message_id,
        status,
        Some(&instance),
    )
}

/// A response command: the affected SOP class, the response's command
/// field, the message it answers, the status, and for C-STORE the affected instance.
fn response(
    pc: u8,
    sop_class: &str,
    command: u16,
    message_id: u16,
    status: u16,
    instance: Option<&str>,
) -> Result<Pdu, String> {
    // A pending C-FIND response carries its match; no other response here has a data set.
    let has_data = command == C_FIND_RSP && matches!(status, 0xFF00 | 0xFF01);
    let mut elements = response_elements(sop_class, command, message_id, status, has_data);
    if let Some(uid) = instance {
        elements.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid),
        ));
    }
    command_pdu(&InMemDicomObject::command_from_element_iter(elements), pc)
}

/// The elements every response command starts with: the affected SOP class, the command
/// field, the message it answers, whether a data set follows, and the status.
fn response_elements(
    sop_class: &str,
    command: u16,
    message_id: u16,
    status: u16,
    has_data: bool,
) -> Vec<DataElement<InMemDicomObject>> {
    vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(sop_class),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(command)),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(message_id),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(if has_data { 0x0000u16 } else { NO_DATA_SET }),
        ),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ]
}

fn command_pdu(cmd: &InMemDicomObject, pc: u8) -> Result<Pdu, String> {
    let mut data = Vec::new();
    cmd.write_dataset_with_ts(&mut data, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| e.to_string())?;
    Ok(Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data,
        }],
    })
}

/// The answer to a command that has no data set: C-ECHO-RSP with status Success; nothing for
/// C-CANCEL (every C-FIND is answered whole before the next message is read); anything else
/// ends the association (a conforming peer sends only what was negotiated).
fn answer_without_data(cmd: &InMemDicomObject, pc: u8) -> Result<Option<Pdu>, String> {
    let command = field(cmd, tags::COMMAND_FIELD).ok_or("command without Command Field")?;
    match command {
        C_ECHO_RQ => {
            let message_id = field(cmd, tags::MESSAGE_ID).ok_or("command without Message ID")?;
            response(pc, VERIFICATION, C_ECHO_RSP, message_id, 0x0000, None).map(Some)
        }
        C_CANCEL_RQ => Ok(None),
        other => Err(format!("unsupported command 0x{other:04X}")),
    }
}

/// Who an association's audit events name, and where they go. Stores are summed and recorded
/// once when the association ends (a modality sends hundreds of instances per study);
/// queries and retrieves each when they happen.
struct Audited {
    sink: std::sync::Arc<dyn crate::access::AuditSink>,
    who: String,
    source: String,
    stored: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

impl Drop for Audited {
    fn drop(&mut self) {
        let stored = *self.stored.get_mut();
        let refused = *self.refused.get_mut();
        if stored + refused > 0 {
            let result = if refused == 0 {
                "ok".to_owned()
            } else {
                format!("{refused} refused")
            };
            self.record("image_store", format!("dicom:{stored} instances"), result);
        }
    }
}

impl Audited {
    fn record(&self, action: &str, target: String, result: String) {
        self.sink.record(crate::access::AccessEvent {
            who: self.who.clone(),
            role: "dicom".into(),
            action: action.into(),
            target,
            source: self.source.clone(),
            result,
        });
    }
}

/// The answers to a command with a data set: C-STORE (the instance kept or refused), C-FIND
/// (pending responses with identifiers, then the final status). C-GET and C-MOVE are
/// [`retrieve`]d.
async fn answer_with_data(
    store: &Store,
    cmd: &InMemDicomObject,
    pc: u8,
    ts: &str,
    bytes: &[u8],
    audited: &Audited,
) -> Result<Vec<Pdu>, String> {
    let command = field(cmd, tags::COMMAND_FIELD).ok_or("command without Command Field")?;
    let message_id = field(cmd, tags::MESSAGE_ID).ok_or("command without Message ID")?;
    let sop_class = text(cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    match command {
        C_STORE_RQ => {
            let instance = text(cmd, tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
            let outcome = store.put_dataset(ts, &sop_class, &instance, bytes).await;
            let status = crate::store::record("dicom", &outcome);
            let count = if status == 0 {
                &audited.stored
            } else {
                &audited.refused
            };
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec![store_response(cmd, pc, status)?])
        }
        C_FIND_RQ => {
            let transfer = TransferSyntaxRegistry
                .get(ts)
                .ok_or_else(|| format!("transfer syntax {ts} is not known"))?;
            let found = match InMemDicomObject::read_dataset_with_ts(bytes, transfer) {
                Err(e) => Err((0xC000, format!("identifier: {e}"))),
                Ok(id) => match cfind::read_identifier(&id) {
                    Err(e) => Err((0xA900, e.to_string())),
                    Ok(find) => find
                        .run(store.pool())
                        .await
                        .map_err(|e| (0xA700, e.to_string())),
                },
            };
            metrics::counter!("dicom_find_total").increment(1);
            audited.record(
                "image_query",
                "dicom:c-find".into(),
                match &found {
                    Ok(r) => format!("ok: {} matches", r.len()),
                    Err((status, _)) => format!("status 0x{status:04X}"),
                },
            );
            let mut replies = Vec::new();
            match found {
                Ok(results) => {
                    for r in &results {
                        replies.push(response(
                            pc, &sop_class, C_FIND_RSP, message_id, PENDING, None,
                        )?);
                        let mut data = Vec::new();
                        r.write_dataset_with_ts(&mut data, transfer)
                            .map_err(|e| e.to_string())?;
                        replies.push(Pdu::PData {
                            data: vec![PDataValue {
                                presentation_context_id: pc,
                                value_type: PDataValueType::Data,
                                is_last: true,
                                data,
                            }],
                        });
                    }
                    replies.push(response(
                        pc, &sop_class, C_FIND_RSP, message_id, 0x0000, None,
                    )?);
                }
                Err((status, why)) => {
                    tracing::warn!(reason = %why, "C-FIND refused");
                    replies.push(response(
                        pc, &sop_class, C_FIND_RSP, message_id, status, None,
                    )?);
                }
            }
            Ok(replies)
        }
        other => Err(format!("unsupported command 0x{other:04X}")),
    }
}

/// A C-GET or C-MOVE request whose identifier has arrived.
struct Request<'a> {
    cmd: &'a InMemDicomObject,
    pc: u8,
    ts: &'a str,
    identifier: &'a [u8],
}

/// Answers a C-GET (sub-operations on this association) or a C-MOVE (on one opened to the
/// Move Destination): a pending response after each instance, then the final one.
async fn retrieve<S>(
    assoc: &mut dicom_ul::association::server::AsyncServerAssociation<S>,
    service: &Service,
    request: Request<'_>,
    audited: &Audited,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    use retrieve::{Counts, Instance};
    let Request {
        cmd,
        pc,
        ts,
        identifier,
    } = request;
    let command = field(cmd, tags::COMMAND_FIELD).ok_or("command without Command Field")?;
    let message_id = field(cmd, tags::MESSAGE_ID).ok_or("command without Message ID")?;
    let sop_class = text(cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let (rsp, kind) = if command == C_GET_RQ {
        (C_GET_RSP, "c-get")
    } else {
        (C_MOVE_RSP, "c-move")
    };
    let responder = retrieve::Responder {
        pc,
        ts,
        sop_class: &sop_class,
        command: rsp,
        message_id,
    };
    let reply = |status: u16, counts: &Counts| responder.pdu(status, counts, None);
    let refuse = |status: u16, why: String| {
        tracing::warn!(kind, reason = %why, "retrieve refused");
        audited.record(
            "image_retrieve",
            format!("dicom:{kind}"),
            format!("status 0x{status:04X}: {why}"),
        );
        responder.pdu(status, &Counts::default(), Some(&why))
    };
    let target = TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| format!("transfer syntax {ts} is not known"))
        .and_then(|t| {
            InMemDicomObject::read_dataset_with_ts(identifier, t)
                .map_err(|e| format!("identifier: {e}"))
        })
        .and_then(|id| retrieve::read_identifier(&id));
    let target = match target {
        Ok(t) => t,
        Err(why) => {
            let pdu = refuse(retrieve::IDENTIFIER_INVALID, why)?;
            return assoc.send(&pdu).await.map_err(|e| e.to_string());
        }
    };
    let instances: Vec<Instance> = match target.instances(service.store.pool()).await {
        Ok(i) => i,
        Err(e) => {
            let pdu = refuse(retrieve::UNABLE, format!("index: {e}"))?;
            return assoc.send(&pdu).await.map_err(|e| e.to_string());
        }
    };
    let mut destination = None;
    if command == C_MOVE_RQ {
        let name = text(cmd, tags::MOVE_DESTINATION).unwrap_or_default();
        let Some(peer) = service
            .peers
            .iter()
            .find(|p| p.ae_title.as_str() == name.as_str())
        else {
            let why = format!("Move Destination {name:?} is not one of imaging.peers");
            let pdu = refuse(retrieve::DESTINATION_UNKNOWN, why)?;
            return assoc.send(&pdu).await.map_err(|e| e.to_string());
        };
        if !instances.is_empty() {
            match retrieve::open_destination(&service.ae_title, peer, &instances).await {
                Ok(a) => destination = Some(a),
                Err(why) => {
                    let pdu = refuse(retrieve::UNABLE_TO_SEND, why)?;
                    return assoc.send(&pdu).await.map_err(|e| e.to_string());
                }
            }
        }
    }
    let total = u16::try_from(instances.len()).unwrap_or(u16::MAX);
    let mut counts = Counts {
        remaining: total,
        ..Counts::default()
    };
    let originator = assoc.peer_ae_title().trim().to_owned();
    let root = service.store.root().to_owned();
    let mut cancelled = false;
    // Where the sub-operations go: the destination's contexts, or (C-GET) the caller's own.
    let contexts = match &destination {
        Some(d) => d.presentation_contexts().to_vec(),
        None => assoc.presentation_contexts().to_vec(),
    };
    for (n, instance) in instances.iter().enumerate() {
        counts.remaining = total.saturating_sub(u16::try_from(n + 1).unwrap_or(u16::MAX));
        let message_id_out = u16::try_from(n % 0xFFFF + 1).unwrap_or(1);
        // C-GET: the caller must have taken the SCP role for the instance's class.
        let may_send = destination.is_some() || assoc.requestor_roles_for(&instance.sop_class).scp;
        let chosen = may_send
            .then(|| retrieve::context_for(&contexts, instance))
            .flatten();
        let Some(chosen) = chosen else {
            tracing::info!(sop_class = %instance.sop_class, ts = %instance.transfer_syntax,
                "no accepted context carries this instance");
            counts.fail(&instance.sop_instance);
            assoc
                .send(&reply(retrieve::PENDING, &counts)?)
                .await
                .map_err(|e| e.to_string())?;
            continue;
        };
        let (id, to) = (chosen.id, chosen.transfer_syntax.clone());
        let data = {
            let (root, instance, to) = (root.clone(), instance.clone(), to.clone());
            tokio::task::spawn_blocking(move || retrieve::dataset(&root, &instance, &to))
                .await
                .map_err(|e| e.to_string())?
        };
        let data = match data {
            Ok(d) => d,
            Err(why) => {
                tracing::warn!(sop_instance_uid = %instance.sop_instance, reason = %why,
                    "a stored instance cannot be sent");
                counts.fail(&instance.sop_instance);
                continue;
            }
        };
        let answer = match destination.as_mut() {
            Some(d) => {
                retrieve::store(
                    d,
                    id,
                    message_id_out,
                    instance,
                    data,
                    Some((&originator, message_id)),
                )
                .await
            }
            None => retrieve::store(assoc, id, message_id_out, instance, data, None).await,
        };
        match answer {
            Ok(a) => {
                counts.record(&instance.sop_instance, a.status);
                cancelled = a.cancelled;
            }
            // The caller's own association broke: nothing more can be said to it.
            Err(why) if destination.is_none() => return Err(why),
            Err(why) => {
                tracing::warn!(reason = %why, "the C-MOVE destination failed");
                for i in &instances[n..] {
                    counts.fail(&i.sop_instance);
                }
                counts.remaining = 0;
                destination = None;
                break;
            }
        }
        if cancelled {
            break;
        }
        if counts.remaining > 0 {
            assoc
                .send(&reply(retrieve::PENDING, &counts)?)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(d) = destination {
        let _ = d.release().await;
    }
    let status = if cancelled {
        retrieve::CANCELLED
    } else {
        counts.final_status()
    };
    metrics::counter!("dicom_retrieve_total", "kind" => kind).increment(1);
    metrics::counter!("dicom_retrieve_instances_total", "kind" => kind)
        .increment(u64::from(counts.completed + counts.warning));
    audited.record(
        "image_retrieve",
        format!("dicom:{kind} {}", target.describe()),
        format!(
            "status 0x{status:04X}: {} sent, {} failed",
            counts.completed + counts.warning,
            counts.failed
        ),
    );
    let mut last = counts;
    if !cancelled {
        last.remaining = 0;
    }
    assoc
        .send(&reply(status, &last)?)
        .await
        .map_err(|e| e.to_string())
}
