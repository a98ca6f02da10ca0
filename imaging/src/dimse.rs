//! The DICOM listener (`listeners.dicom`, 11112): associations addressed to our AE title
//! (`listeners.dicom_ae_title`), from callers listed in `imaging.allowed_callers` (AE title, and
//! address when given; any caller when the list is empty, which the configuration allows only
//! on loopback). Others get an A-ASSOCIATE-RJ naming the reason. Verification (C-ECHO) is
//! answered. Storage (C-STORE) of any SOP class in any transfer syntax dicom-rs reads goes to
//! the [`Store`]: a malformed or unidentifiable instance is refused with a failure status and
//! the association goes on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::association::Association;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, UserIdentity,
};
use firmware_config::{Config, DicomCaller};
use firmware_runtime::{Context, RuntimeError, State};
use tokio::task::JoinSet;

use crate::store::{Store, text};

/// Readiness name of the DICOM listener.
pub const SUBSYSTEM: &str = "dicom";

const VERIFICATION: &str = "1.2.840.10008.1.1";
const C_ECHO_RQ: u16 = 0x0030;
const C_ECHO_RSP: u16 = 0x8030;
const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;
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

/// Runs the DICOM listener until `ctx.shutdown`, then lets open associations finish (up to
/// the idle limit).
pub async fn run(config: &Config, ctx: &Context, store: Store) -> Result<(), RuntimeError> {
    ctx.readiness.set(SUBSYSTEM, State::Starting);
    let addr = SocketAddr::new(config.listeners.bind, config.listeners.dicom.get());
    let listener = match firmware_runtime::bind(addr, "listeners.dicom").await {
        Ok(l) => l,
        Err(e) => {
            ctx.readiness.set(SUBSYSTEM, State::Failed(e.to_string()));
            return Err(e);
        }
    };
    let ae_title = config.listeners.dicom_ae_title.as_str().to_owned();
    let allowed = config.imaging.allowed_callers.clone();
    tracing::info!(%addr, ae_title = %ae_title, "DICOM listening");
    ctx.readiness.set(SUBSYSTEM, State::Ready);
    let mut associations = JoinSet::new();
    loop {
        tokio::select! {
            () = ctx.shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let callers = Callers { allowed: allowed.clone(), peer: peer.ip() };
                    let ae_title = ae_title.clone();
                    let store = store.clone();
                    associations.spawn(async move {
                        if let Err(e) = association(stream, peer, callers, &ae_title, &store).await {
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
    ctx.readiness.set(SUBSYSTEM, State::Stopping);
    let _ = tokio::time::timeout(IDLE, async {
        while associations.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn association(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    callers: Callers,
    ae_title: &str,
    store: &Store,
) -> Result<(), String> {
    let options = ServerAssociationOptions::new()
        .ae_access_control(callers)
        .ae_title(ae_title)
        .with_abstract_syntax(VERIFICATION)
        // Any storage SOP class: what cannot be kept is refused per instance, with a status.
        .promiscuous(true)
        .read_timeout(IDLE)
        .write_timeout(IDLE);
    let mut assoc = options
        .establish_async(stream)
        .await
        .map_err(|e| format!("refused: {e}"))?;
    tracing::info!(%peer, calling = assoc.peer_ae_title(), "DICOM association accepted");
    metrics::counter!("dicom_associations_total").increment(1);
    let contexts: Vec<(u8, String)> = assoc
        .presentation_contexts()
        .iter()
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
        .collect();
    // A C-STORE-RQ command waiting for its data set, and the data received so far.
    let mut pending: Option<(InMemDicomObject, u8)> = None;
    let mut data = Vec::new();
    loop {
        match assoc.receive().await.map_err(|e| e.to_string())? {
            Pdu::PData { data: values } => {
                for pdv in values {
                    match pdv.value_type {
                        PDataValueType::Command if pdv.is_last => {
                            let cmd = read_command(&pdv.data)?;
                            match field(&cmd, tags::COMMAND_FIELD) {
                                Some(C_STORE_RQ) => {
                                    pending = Some((cmd, pdv.presentation_context_id));
                                    data.clear();
                                }
                                _ => {
                                    let reply = answer_echo(&cmd, pdv.presentation_context_id)?;
                                    assoc.send(&reply).await.map_err(|e| e.to_string())?;
                                }
                            }
                        }
                        PDataValueType::Command => return Err("fragmented command".into()),
                        PDataValueType::Data => {
                            data.extend_from_slice(&pdv.data);
                            if pdv.is_last {
                                let (cmd, pc) =
                                    pending.take().ok_or("data set without a C-STORE command")?;
                                let ts = contexts
                                    .iter()
                                    .find(|(id, _)| *id == pc)
                                    .map(|(_, ts)| ts.clone())
                                    .unwrap_or_default();
                                let bytes = std::mem::take(&mut data);
                                let class =
                                    text(&cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
                                let instance =
                                    text(&cmd, tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
                                let outcome =
                                    store.put_dataset(&ts, &class, &instance, &bytes).await;
                                let status = crate::store::record("dicom", &outcome);
                                let reply = store_response(&cmd, pc, status)?;
                                assoc.send(&reply).await.map_err(|e| e.to_string())?;
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

/// A response command without a data set: the affected SOP class, the response's command
/// field, the message it answers, the status, and for C-STORE the affected instance.
fn response(
    pc: u8,
    sop_class: &str,
    command: u16,
    message_id: u16,
    status: u16,
    instance: Option<&str>,
) -> Result<Pdu, String> {
    let mut elements = vec![
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
            PrimitiveValue::from(0x0101u16),
        ),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ];
    if let Some(uid) = instance {
        elements.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid),
        ));
    }
    command_pdu(&InMemDicomObject::command_from_element_iter(elements), pc)
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

/// The response to a command other than C-STORE: C-ECHO-RSP with status Success; anything
/// else ends the association (a conforming peer sends only what was negotiated).
fn answer_echo(cmd: &InMemDicomObject, pc: u8) -> Result<Pdu, String> {
    let command = field(cmd, tags::COMMAND_FIELD).ok_or("command without Command Field")?;
    let message_id = field(cmd, tags::MESSAGE_ID).ok_or("command without Message ID")?;
    if command != C_ECHO_RQ {
        return Err(format!("unsupported command 0x{command:04X}"));
    }
    response(pc, VERIFICATION, C_ECHO_RSP, message_id, 0x0000, None)
}
