//! C-GET and C-MOVE as an SCP (PS3.4 C.4.2, C.4.3): others retrieve what we keep. A request
//! identifier names what to send ([`read_identifier`]); each instance goes as a C-STORE
//! sub-operation, on the caller's own association (C-GET, the caller having taken the SCP role
//! for the instance's SOP class) or on one we open to the Move Destination (C-MOVE, which must
//! be one of `imaging.peers`: we never send patient data to an address a caller names). An
//! instance is sent in the transfer syntax it was stored in, or re-encoded between the
//! uncompressed ones; one no accepted context can carry is counted as failed and named in the
//! final response's Failed SOP Instance UID List.

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::association::{AsyncAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use firmware_config::DicomPeer;
use sqlx::SqlitePool;

use crate::store::text;

const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;
const C_CANCEL_RQ: u16 = 0x0FFF;
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Pending: sub-operations are continuing.
pub const PENDING: u16 = 0xFF00;
/// Sub-operations complete, one or more failures or warnings.
pub const SOME_FAILED: u16 = 0xB000;
/// Cancelled by the caller (C-CANCEL).
pub const CANCELLED: u16 = 0xFE00;
/// C-MOVE refused: the Move Destination is not one of `imaging.peers`.
pub const DESTINATION_UNKNOWN: u16 = 0xA801;
/// The identifier does not name what to retrieve.
pub const IDENTIFIER_INVALID: u16 = 0xA900;
/// Unable to process (the index failed).
pub const UNABLE: u16 = 0xC000;
/// Out of resources, unable to perform sub-operations (the destination cannot be reached).
pub const UNABLE_TO_SEND: u16 = 0xA702;
/// How long a destination may take to answer one sub-operation.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// What a C-GET or C-MOVE identifier names: instances under a patient, studies, series or
/// single instances, by their unique keys (PS3.4 C.4.2.2.1: lists of UIDs allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Patient ID (0010,0020), at PATIENT level or as a check above it.
    pub patient: Option<String>,
    /// Study Instance UIDs.
    pub studies: Vec<String>,
    /// Series Instance UIDs.
    pub series: Vec<String>,
    /// SOP Instance UIDs.
    pub instances: Vec<String>,
}

/// One instance to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// SOP Instance UID.
    pub sop_instance: String,
    /// SOP Class UID.
    pub sop_class: String,
    /// The transfer syntax it is stored in.
    pub transfer_syntax: String,
    /// Its file, relative to the store root.
    pub file: String,
}

/// Sub-operation counts, reported in every pending and the final response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Not sent yet.
    pub remaining: u16,
    /// Stored by the receiver.
    pub completed: u16,
    /// Not sent, or refused by the receiver.
    pub failed: u16,
    /// Stored with a warning.
    pub warning: u16,
    /// The instances counted as failed.
    pub failed_uids: Vec<String>,
}

impl Counts {
    /// The final status: success, or "one or more failures or warnings".
    pub fn final_status(&self) -> u16 {
        if self.failed + self.warning > 0 {
            SOME_FAILED
        } else {
            0x0000
        }
    }

    /// Counts an instance that was not sent.
    pub fn fail(&mut self, uid: &str) {
        self.failed += 1;
        self.failed_uids.push(uid.to_owned());
    }

    /// Counts a C-STORE response status (PS3.4 B.2.3: Bxxx warnings, 0000 success).
    pub fn record(&mut self, uid: &str, status: u16) {
        match status {
            0x0000 => self.completed += 1,
            0xB000..=0xBFFF => self.warning += 1,
            _ => self.fail(uid),
        }
    }
}

fn uids(id: &InMemDicomObject, tag: dicom_object::Tag, name: &str) -> Result<Vec<String>, String> {
    let Some(value) = text(id, tag) else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = value
        .split('\\')
        .map(|u| u.trim_matches(['\0', ' ']).to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    for u in &list {
        let ok = u.len() <= 64
            && u.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(format!("{name}: {u:?} is not a UID"));
        }
    }
    Ok(list)
}

/// Reads a retrieve identifier. The level's own unique key must be given; a UID that is not a
/// UID, or a wildcard, is refused (retrieval matches unique keys only).
pub fn read_identifier(id: &InMemDicomObject) -> Result<Target, String> {
    let level = text(id, tags::QUERY_RETRIEVE_LEVEL).unwrap_or_default();
    let patient = text(id, tags::PATIENT_ID).filter(|p| !p.is_empty());
    if patient
        .as_deref()
        .is_some_and(|p| p.contains(['*', '?', '\\']))
    {
        return Err("PatientID (0010,0020): retrieval takes one ID, not a pattern".into());
    }
    let target = Target {
        patient,
        studies: uids(id, tags::STUDY_INSTANCE_UID, "StudyInstanceUID (0020,000D)")?,
        series: uids(
            id,
            tags::SERIES_INSTANCE_UID,
            "SeriesInstanceUID (0020,000E)",
        )?,
        instances: uids(id, tags::SOP_INSTANCE_UID, "SOPInstanceUID (0008,0018)")?,
    };
    let missing = match level.as_str() {
        "PATIENT" => target.patient.is_none().then_some("PatientID (0010,0020)"),
        "STUDY" => target
            .studies
            .is_empty()
            .then_some("StudyInstanceUID (0020,000D)"),
        "SERIES" => target
            .series
            .is_empty()
            .then_some("SeriesInstanceUID (0020,000E)"),
        "IMAGE" => target
            .instances
            .is_empty()
            .then_some("SOPInstanceUID (0008,0018)"),
        other => {
            return Err(format!(
                "QueryRetrieveLevel (0008,0052): {other:?} is not PATIENT, STUDY, SERIES or IMAGE"
            ));
        }
    };
    match missing {
        Some(key) => Err(format!("{key} is required at the {level} level")),
        None => Ok(target),
    }
}

impl Target {
    /// The instances it names, by series and instance number.
    pub async fn instances(&self, pool: &SqlitePool) -> Result<Vec<Instance>, sqlx::Error> {
        let list = |v: &[String]| (!v.is_empty()).then(|| serde_json::json!(v).to_string());
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, i.file \
             FROM instances i JOIN series se USING (series_uid) JOIN studies st USING (study_uid) \
             WHERE (?1 IS NULL OR st.patient_id = ?1) \
             AND (?2 IS NULL OR st.study_uid IN (SELECT value FROM json_each(?2))) \
             AND (?3 IS NULL OR se.series_uid IN (SELECT value FROM json_each(?3))) \
             AND (?4 IS NULL OR i.sop_instance_uid IN (SELECT value FROM json_each(?4))) \
             ORDER BY st.study_uid, se.series_number, se.series_uid, i.instance_number, \
             i.sop_instance_uid",
        )
        .bind(self.patient.as_deref())
        .bind(list(&self.studies))
        .bind(list(&self.series))
        .bind(list(&self.instances))
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(sop_instance, sop_class, transfer_syntax, file)| Instance {
                    sop_instance,
                    sop_class,
                    transfer_syntax,
                    file,
                },
            )
            .collect())
    }

    /// A short description for the audit trail.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.patient {
            parts.push(format!("patient={p}"));
        }
        for (name, v) in [
            ("study", &self.studies),
            ("series", &self.series),
            ("instance", &self.instances),
        ] {
            if !v.is_empty() {
                parts.push(format!("{name}={}", v.join(",")));
            }
        }
        parts.join(" ")
    }
}

/// Whether a stored data set in `from` can be sent in `to`: the same syntax, or a re-encoding
/// between syntaxes whose pixel data is not encapsulated.
pub fn can_send(from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    let native = |uid: &str| {
        TransferSyntaxRegistry
            .get(uid)
            .is_some_and(|ts| ts.is_codec_free())
    };
    native(from) && native(to)
}

/// The instance's data set, encoded in `ts` (see [`can_send`]).
pub fn dataset(root: &std::path::Path, instance: &Instance, ts: &str) -> Result<Vec<u8>, String> {
    let bytes =
        crate::store::sealing::read(&root.join(&instance.file)).map_err(|e| e.to_string())?;
    let (obj, _) = crate::dicom::guard::parse(&bytes, false)?;
    let transfer = TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| format!("transfer syntax {ts} is not known"))?;
    let mut out = Vec::with_capacity(bytes.len());
    obj.write_dataset_with_ts(&mut out, transfer)
        .map_err(|e| format!("encoding in {ts}: {e}"))?;
    Ok(out)
}

/// The accepted presentation context that can carry `instance`: one in its own transfer
/// syntax first, else one it can be re-encoded into.
pub fn context_for<'a>(
    contexts: &'a [dicom_ul::pdu::PresentationContextNegotiated],
    instance: &Instance,
) -> Option<&'a dicom_ul::pdu::PresentationContextNegotiated> {
    let usable = || {
        contexts.iter().filter(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && pc.abstract_syntax.trim_end_matches('\0') == instance.sop_class
        })
    };
    usable()
        .find(|pc| pc.transfer_syntax == instance.transfer_syntax)
        .or_else(|| usable().find(|pc| can_send(&instance.transfer_syntax, &pc.transfer_syntax)))
}

/// What every response to one C-GET or C-MOVE request names.
#[derive(Debug, Clone, Copy)]
pub struct Responder<'a> {
    /// The request's presentation context.
    pub pc: u8,
    /// Its transfer syntax (for the Failed SOP Instance UID List).
    pub ts: &'a str,
    /// The request's SOP class.
    pub sop_class: &'a str,
    /// C-GET-RSP or C-MOVE-RSP.
    pub command: u16,
    /// The request's Message ID.
    pub message_id: u16,
}

impl Responder<'_> {
    /// A response with its sub-operation counts and, for a refusal, an Error Comment. A final
    /// response with failures carries the Failed SOP Instance UID List as its data set.
    pub fn pdu(&self, status: u16, counts: &Counts, comment: Option<&str>) -> Result<Pdu, String> {
        let &Responder {
            pc,
            ts,
            sop_class,
            command,
            message_id,
        } = self;
        let with_list = status != PENDING && !counts.failed_uids.is_empty();
        let mut elements =
            super::response_elements(sop_class, command, message_id, status, with_list);
        if let Some(c) = comment {
            // Error Comment is LO: 64 characters at most.
            let c: String = c.chars().take(64).collect();
            elements.push(DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(c),
            ));
        }
        // Counts: remaining only while pending (PS3.4 C.4.3.1.3.1); the rest always.
        if status == PENDING {
            elements.push(DataElement::new(
                tags::NUMBER_OF_REMAINING_SUBOPERATIONS,
                VR::US,
                PrimitiveValue::from(counts.remaining),
            ));
        }
        for (tag, n) in [
            (tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, counts.completed),
            (tags::NUMBER_OF_FAILED_SUBOPERATIONS, counts.failed),
            (tags::NUMBER_OF_WARNING_SUBOPERATIONS, counts.warning),
        ] {
            elements.push(DataElement::new(tag, VR::US, PrimitiveValue::from(n)));
        }
        let cmd = InMemDicomObject::command_from_element_iter(elements);
        let Pdu::PData { data: mut values } = super::command_pdu(&cmd, pc)? else {
            return Err("a command is P-DATA".into());
        };
        if with_list {
            let transfer = TransferSyntaxRegistry
                .get(ts)
                .ok_or_else(|| format!("transfer syntax {ts} is not known"))?;
            let list = InMemDicomObject::from_element_iter([DataElement::new(
                tags::FAILED_SOP_INSTANCE_UID_LIST,
                VR::UI,
                PrimitiveValue::from(counts.failed_uids.join("\\")),
            )]);
            let mut data = Vec::new();
            list.write_dataset_with_ts(&mut data, transfer)
                .map_err(|e| e.to_string())?;
            values.push(PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Data,
                is_last: true,
                data,
            });
        }
        Ok(Pdu::PData { data: values })
    }
}

/// What a C-STORE sub-operation came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The C-STORE response status.
    pub status: u16,
    /// Whether the caller sent C-CANCEL while it was under way (C-GET only).
    pub cancelled: bool,
}

/// Sends one instance as a C-STORE-RQ on `pc` and waits for its response. The data set is cut
/// into P-DATA PDUs no longer than the receiver accepts.
#[allow(clippy::too_many_arguments)]
pub async fn store<S, A>(
    assoc: &mut A,
    pc: u8,
    message_id: u16,
    instance: &Instance,
    data: Vec<u8>,
    originator: Option<(&str, u16)>,
) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    A: AsyncAssociation<S> + Send,
{
    let mut extra = vec![DataElement::new(
        tags::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(instance.sop_instance.as_str()),
    )];
    if let Some((ae, id)) = originator {
        extra.push(DataElement::new(
            tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
            VR::AE,
            PrimitiveValue::from(ae),
        ));
        extra.push(DataElement::new(
            tags::MOVE_ORIGINATOR_MESSAGE_ID,
            VR::US,
            PrimitiveValue::from(id),
        ));
    }
    let cmd = super::scu::request(&instance.sop_class, C_STORE_RQ, message_id, extra);
    let send = |value_type, is_last, data| Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last,
            data,
        }],
    };
    AsyncAssociation::send(assoc, &super::command_pdu(&cmd, pc)?)
        .await
        .map_err(|e| format!("send: {e}"))?;
    // A PDV item adds 6 bytes to its data; a peer that sets no limit gets 1 MiB PDUs.
    let max = match assoc.peer_max_pdu_length() {
        0 => 1 << 20,
        n => (n as usize).clamp(64, 1 << 20),
    } - 6;
    let mut chunks = data.chunks(max).peekable();
    if chunks.peek().is_none() {
        AsyncAssociation::send(assoc, &send(PDataValueType::Data, true, Vec::new()))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        AsyncAssociation::send(assoc, &send(PDataValueType::Data, last, chunk.to_vec()))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let mut cancelled = false;
    loop {
        let pdu = AsyncAssociation::receive(assoc)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        let values = match pdu {
            Pdu::PData { data } => data,
            Pdu::AbortRQ { .. } => return Err("aborted by the peer".into()),
            other => return Err(format!("unexpected {}", other.short_description())),
        };
        for pdv in values {
            if pdv.value_type != PDataValueType::Command || !pdv.is_last {
                return Err("a data set where a C-STORE response was expected".into());
            }
            let rsp = InMemDicomObject::read_dataset_with_ts(
                pdv.data.as_slice(),
                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .map_err(|e| format!("response: {e}"))?;
            let field = |tag| rsp.element(tag).ok().and_then(|e| e.to_int::<u16>().ok());
            match field(tags::COMMAND_FIELD) {
                Some(C_CANCEL_RQ) => cancelled = true,
                Some(C_STORE_RSP)
                    if field(tags::MESSAGE_ID_BEING_RESPONDED_TO) == Some(message_id) =>
                {
                    return Ok(Answer {
                        status: field(tags::STATUS).unwrap_or(0xFFFF),
                        cancelled,
                    });
                }
                other => {
                    return Err(format!(
                        "unexpected command 0x{:04X} during a C-STORE sub-operation",
                        other.unwrap_or_default()
                    ));
                }
            }
        }
    }
}

/// An association to a C-MOVE destination, proposing a context for each SOP class and
/// stored transfer syntax among `instances` (uncompressed ones also in both little endian
/// syntaxes, so a receiver that takes only those still gets them).
pub async fn open_destination(
    our_ae: &str,
    peer: &DicomPeer,
    instances: &[Instance],
) -> Result<dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream>, String> {
    let mut proposed: Vec<(String, Vec<String>)> = Vec::new();
    for i in instances {
        let mut list = vec![i.transfer_syntax.clone()];
        for ts in [EXPLICIT_LE, IMPLICIT_LE] {
            if ts != i.transfer_syntax && can_send(&i.transfer_syntax, ts) {
                list.push(ts.to_owned());
            }
        }
        if !proposed
            .iter()
            .any(|(c, l)| *c == i.sop_class && *l == list)
        {
            proposed.push((i.sop_class.clone(), list));
        }
    }
    // A-ASSOCIATE-RQ holds at most 128 presentation contexts (odd IDs 1-255).
    proposed.truncate(128);
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(our_ae)
        .called_ae_title(peer.ae_title.as_str())
        .read_timeout(PEER_TIMEOUT)
        .write_timeout(PEER_TIMEOUT)
        .connection_timeout(Duration::from_secs(10));
    for (class, list) in proposed {
        options = options.with_presentation_context(class, list);
    }
    let address = format!("{}:{}", peer.host.as_str(), peer.port);
    let mut assoc = options
        .establish_async(address.as_str())
        .await
        .map_err(|e| format!("{peer}: {e}"))?;
    // Each sub-operation waits for its response: Nagle's algorithm would hold the last piece
    // of every data set for the peer's delayed ACK.
    let _ = assoc.inner_stream().set_nodelay(true);
    Ok(assoc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(elements: &[(dicom_object::Tag, VR, &str)]) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(
            elements
                .iter()
                .map(|&(t, vr, v)| DataElement::new(t, vr, PrimitiveValue::from(v))),
        )
    }

    #[test]
    fn identifiers_name_what_to_send() {
        let t = read_identifier(&id(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
            (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
            (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4\\1.2.3.5"),
        ]))
        .unwrap();
        assert_eq!(t.studies, ["1.2.3"]);
        assert_eq!(t.series, ["1.2.3.4", "1.2.3.5"]);
        assert_eq!(t.describe(), "study=1.2.3 series=1.2.3.4,1.2.3.5");

        let missing = read_identifier(&id(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"),
            (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
        ]))
        .unwrap_err();
        assert!(missing.contains("SOPInstanceUID"), "{missing}");
        let wildcard = read_identifier(&id(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.*"),
        ]))
        .unwrap_err();
        assert!(wildcard.contains("not a UID"), "{wildcard}");
        let level = read_identifier(&id(&[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "FRAME")]));
        assert!(level.unwrap_err().contains("FRAME"));
        let patient = read_identifier(&id(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
            (tags::PATIENT_ID, VR::LO, "P*"),
        ]));
        assert!(patient.unwrap_err().contains("pattern"));
    }

    #[test]
    fn only_uncompressed_data_is_re_encoded() {
        assert!(can_send(EXPLICIT_LE, IMPLICIT_LE));
        assert!(can_send("1.2.840.10008.1.2.2", EXPLICIT_LE));
        assert!(can_send("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.90"));
        assert!(!can_send("1.2.840.10008.1.2.4.90", EXPLICIT_LE));
        assert!(!can_send(EXPLICIT_LE, "1.2.840.10008.1.2.4.50"));
    }

    #[test]
    fn counts_decide_the_final_status() {
        let mut c = Counts::default();
        c.record("1.1", 0);
        assert_eq!(c.final_status(), 0);
        c.record("1.2", 0xB007);
        assert_eq!((c.warning, c.final_status()), (1, SOME_FAILED));
        c.record("1.3", 0xA700);
        assert_eq!(c.failed_uids, ["1.3"]);
        let r = Responder {
            pc: 1,
            ts: EXPLICIT_LE,
            sop_class: "1.2",
            command: 0x8010,
            message_id: 7,
        };
        let pdu = r.pdu(SOME_FAILED, &c, None).unwrap();
        let Pdu::PData { data } = pdu else {
            panic!("not P-DATA")
        };
        assert_eq!(data.len(), 2, "the failed list follows the command");
        let pending = r.pdu(PENDING, &c, None).unwrap();
        let Pdu::PData { data } = pending else {
            panic!("not P-DATA")
        };
        assert_eq!(data.len(), 1);
    }
}
