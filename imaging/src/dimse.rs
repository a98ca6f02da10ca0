//! The DICOM listener (`listeners.dicom`, 11112): associations addressed to our AE title
//! (`listeners.dicom_ae_title`), from callers listed in `imaging.allowed_callers` (AE title, and
//! address when given; any caller when the list is empty, which the configuration allows only
//! on loopback). Others get an A-ASSOCIATE-RJ naming the reason. Verification (C-ECHO) is
//! answered; storage and query/retrieve come with the rest of issue 3.

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

/// Readiness name of the DICOM listener.
pub const SUBSYSTEM: &str = "dicom";

const VERIFICATION: &str = "1.2.840.10008.1.1";
const C_ECHO_RQ: u16 = 0x0030;
const C_ECHO_RSP: u16 = 0x8030;
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
pub async fn run(config: &Config, ctx: &Context) -> Result<(), RuntimeError> {
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
                    associations.spawn(async move {
                        if let Err(e) = association(stream, peer, callers, &ae_title).await {
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
) -> Result<(), String> {
    let options = ServerAssociationOptions::new()
        .ae_access_control(callers)
        .ae_title(ae_title)
        .with_abstract_syntax(VERIFICATION)
        .read_timeout(IDLE)
        .write_timeout(IDLE);
    let mut assoc = options
        .establish_async(stream)
        .await
        .map_err(|e| format!("refused: {e}"))?;
    tracing::info!(%peer, calling = assoc.peer_ae_title(), "DICOM association accepted");
    metrics::counter!("dicom_associations_total").increment(1);
    loop {
        match assoc.receive().await.map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                for pdv in data
                    .into_iter()
                    .filter(|v| v.value_type == PDataValueType::Command && v.is_last)
                {
                    let reply = answer(&pdv)?;
                    assoc.send(&reply).await.map_err(|e| e.to_string())?;
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

/// The response to one command: C-ECHO-RSP with status Success; anything else is refused
/// (only Verification is negotiated, so a conforming peer sends nothing else).
fn answer(pdv: &PDataValue) -> Result<Pdu, String> {
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let cmd = InMemDicomObject::read_dataset_with_ts(&pdv.data[..], &ts)
        .map_err(|e| format!("bad command: {e}"))?;
    let field = |tag| cmd.element(tag).ok().and_then(|e| e.to_int::<u16>().ok());
    let command = field(tags::COMMAND_FIELD).ok_or("command without Command Field")?;
    let message_id = field(tags::MESSAGE_ID).ok_or("command without Message ID")?;
    if command != C_ECHO_RQ {
        return Err(format!("unsupported command 0x{command:04X}"));
    }
    let rsp = InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(VERIFICATION),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(C_ECHO_RSP),
        ),
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
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(0x0000u16)),
    ]);
    let mut data = Vec::new();
    rsp.write_dataset_with_ts(&mut data, &ts)
        .map_err(|e| e.to_string())?;
    Ok(Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pdv.presentation_context_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data,
        }],
    })
}
