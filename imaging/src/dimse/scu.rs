//! DICOM as an SCU towards the PACS in `imaging.peers`: C-FIND (Study Root) to see what a PACS
//! has, and C-MOVE to have it send a study or series to our own C-STORE SCP, which keeps it
//! like any other instance. Exposed on imaging's HTTP listener:
//! `GET /pacs` (the peers), `GET /pacs/{ae}/studies?Key=value` and
//! `GET /pacs/{ae}/studies/{study}/series` (C-FIND, answered as DICOM JSON), and
//! `POST /pacs/{ae}/retrieve` with `{"StudyInstanceUID": ..., "SeriesInstanceUID": ...}`
//! (C-MOVE; answers with the sub-operation counts once the PACS is done).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use firmware_config::DicomPeer;
use serde_json::{Value as Json, json};

use crate::store::query::{dictionary_vr, parse_tag};

/// Study Root Query/Retrieve Information Model - FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
/// Study Root Query/Retrieve Information Model - MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// How long a peer may stay silent (a C-MOVE of a large study sends pending responses as it
/// goes).
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScuError {
    /// The association could not be opened or broke.
    #[error("{peer}: {reason}")]
    Association {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer answered with a failure status.
    #[error("{peer}: status 0x{status:04X}{}", comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        /// The peer.
        peer: String,
        /// The DIMSE status.
        status: u16,
        /// Its Error Comment, if any.
        comment: Option<String>,
    },
}

/// What a C-MOVE did, from the peer's final response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoveOutcome {
    /// Final status.
    pub status: u16,
    /// Instances sent.
    pub completed: u32,
    /// Instances that failed.
    pub failed: u32,
    /// Instances sent with a warning.
    pub warning: u32,
}

/// One request and the responses to it, on a fresh association.
async fn exchange(
    our_ae: &str,
    peer: &DicomPeer,
    sop_class: &str,
    command: InMemDicomObject,
    identifier: &InMemDicomObject,
) -> Result<Vec<(InMemDicomObject, Option<InMemDicomObject>)>, ScuError> {
    let name = peer.to_string();
    let fail = |reason: String| ScuError::Association {
        peer: name.clone(),
        reason,
    };
    let address = format!("{}:{}", peer.host.as_str(), peer.port);
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(our_ae)
        .called_ae_title(peer.ae_title.as_str())
        .with_presentation_context(sop_class, vec![EXPLICIT_LE, IMPLICIT_LE])
        .read_timeout(PEER_TIMEOUT)
        .write_timeout(PEER_TIMEOUT)
        .connection_timeout(Duration::from_secs(10))
        .establish_async(address.as_str())
        .await
        .map_err(|e| fail(format!("association: {e}")))?;
    let pc = assoc
        .presentation_contexts()
        .first()
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
        .ok_or_else(|| fail(format!("{sop_class} not accepted")))?;
    let ts = TransferSyntaxRegistry
        .get(&pc.1)
        .ok_or_else(|| fail(format!("unknown transfer syntax {}", pc.1)))?;
    let mut cmd_bytes = Vec::new();
    command
        .write_dataset_with_ts(&mut cmd_bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| fail(e.to_string()))?;
    let mut id_bytes = Vec::new();
    identifier
        .write_dataset_with_ts(&mut id_bytes, ts)
        .map_err(|e| fail(e.to_string()))?;
    for (value_type, data) in [
        (PDataValueType::Command, cmd_bytes),
        (PDataValueType::Data, id_bytes),
    ] {
        assoc
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc.0,
                    value_type,
                    is_last: true,
                    data,
                }],
            })
            .await
            .map_err(|e| fail(format!("send: {e}")))?;
    }
    let mut responses = Vec::new();
    let mut command_buf = Vec::new();
    let mut data_buf = Vec::new();
    let mut waiting: Option<InMemDicomObject> = None;
    loop {
        let pdu = assoc
            .receive()
            .await
            .map_err(|e| fail(format!("receive: {e}")))?;
        let Pdu::PData { data } = pdu else {
            return Err(fail(format!("unexpected {}", pdu.short_description())));
        };
        for pdv in data {
            match pdv.value_type {
                PDataValueType::Command => {
                    command_buf.extend_from_slice(&pdv.data);
                    if !pdv.is_last {
                        continue;
                    }
                    let rsp = InMemDicomObject::read_dataset_with_ts(
                        command_buf.as_slice(),
                        &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                    )
                    .map_err(|e| fail(format!("response command: {e}")))?;
                    command_buf.clear();
                    let has_data = int(&rsp, tags::COMMAND_DATA_SET_TYPE) != Some(0x0101);
                    if has_data {
                        waiting = Some(rsp);
                    } else {
                        let done = !is_pending(&rsp);
                        responses.push((rsp, None));
                        if done {
                            let _ = assoc.release().await;
                            return Ok(responses);
                        }
                    }
                }
                PDataValueType::Data => {
                    data_buf.extend_from_slice(&pdv.data);
                    if !pdv.is_last {
                        continue;
                    }
                    let rsp = waiting
                        .take()
                        .ok_or_else(|| fail("data without a response".into()))?;
                    let obj = InMemDicomObject::read_dataset_with_ts(data_buf.as_slice(), ts)
                        .map_err(|e| fail(format!("response identifier: {e}")))?;
                    data_buf.clear();
                    let done = !is_pending(&rsp);
                    responses.push((rsp, Some(obj)));
                    if done {
                        let _ = assoc.release().await;
                        return Ok(responses);
                    }
                }
            }
        }
    }
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.element(tag).ok().and_then(|e| e.to_int::<u32>().ok())
}

fn is_pending(rsp: &InMemDicomObject) -> bool {
    matches!(int(rsp, tags::STATUS), Some(0xFF00 | 0xFF01))
}

/// A request command with a data set: the SOP class, the command field, its Message ID,
/// medium priority, then `extra` (for C-STORE, the instance; for C-MOVE, the destination).
pub(super) fn request(
    sop_class: &str,
    command: u16,
    message_id: u16,
    extra: Vec<DataElement<InMemDicomObject>>,
) -> InMemDicomObject {
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(sop_class),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(command)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0000u16),
        ),
    ];
    elements.extend(extra);
    InMemDicomObject::command_from_element_iter(elements)
}

/// C-FIND on the peer: the matches, as identifiers.
pub async fn find(
    our_ae: &str,
    peer: &DicomPeer,
    identifier: &InMemDicomObject,
) -> Result<Vec<InMemDicomObject>, ScuError> {
    let cmd = request(STUDY_ROOT_FIND, 0x0020, 1, Vec::new());
    let responses = exchange(our_ae, peer, STUDY_ROOT_FIND, cmd, identifier).await?;
    let mut out = Vec::new();
    for (rsp, data) in responses {
        let status = int(&rsp, tags::STATUS).unwrap_or(0xFFFF) as u16;
        if !is_pending(&rsp) && status != 0 {
            return Err(ScuError::Status {
                peer: peer.to_string(),
                status,
                comment: crate::store::text(&rsp, tags::ERROR_COMMENT),
            });
        }
        out.extend(data);
    }
    Ok(out)
}

/// C-MOVE on the peer: it sends what `identifier` names to `destination` (our AE title).
pub async fn move_to(
    our_ae: &str,
    peer: &DicomPeer,
    identifier: &InMemDicomObject,
    destination: &str,
) -> Result<MoveOutcome, ScuError> {
    let cmd = request(
        STUDY_ROOT_MOVE,
        0x0021,
        1,
        vec![DataElement::new(
            tags::MOVE_DESTINATION,
            VR::AE,
            PrimitiveValue::from(destination),
        )],
    );
    let responses = exchange(our_ae, peer, STUDY_ROOT_MOVE, cmd, identifier).await?;
    let (last, _) = responses.last().ok_or_else(|| ScuError::Association {
        peer: peer.to_string(),
        reason: "no response".into(),
    })?;
    let outcome = MoveOutcome {
        status: int(last, tags::STATUS).unwrap_or(0xFFFF) as u16,
        completed: int(last, tags::NUMBER_OF_COMPLETED_SUBOPERATIONS).unwrap_or(0),
        failed: int(last, tags::NUMBER_OF_FAILED_SUBOPERATIONS).unwrap_or(0),
        warning: int(last, tags::NUMBER_OF_WARNING_SUBOPERATIONS).unwrap_or(0),
    };
    // Success, or "warning: some sub-operations failed" (B000) which the counts explain.
    if outcome.status != 0 && outcome.status != 0xB000 {
        return Err(ScuError::Status {
            peer: peer.to_string(),
            status: outcome.status,
            comment: crate::store::text(last, tags::ERROR_COMMENT),
        });
    }
    Ok(outcome)
}

// ---- HTTP ----------------------------------------------------------------------------------

#[derive(Debug)]
struct Peers {
    our_ae: String,
    peers: Vec<DicomPeer>,
}

/// The `/pacs` routes.
pub fn routes(our_ae: String, peers: Vec<DicomPeer>) -> Router {
    Router::new()
        .route("/pacs", get(list))
        .route("/pacs/{ae}/studies", get(find_studies))
        .route("/pacs/{ae}/studies/{study}/series", get(find_series))
        .route("/pacs/{ae}/retrieve", post(retrieve))
        .with_state(Arc::new(Peers { our_ae, peers }))
}

/// A request refused before anything is sent to the peer: the status and why.
type Reject = (StatusCode, String);

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

impl Peers {
    fn get(&self, ae: &str) -> Result<&DicomPeer, Reject> {
        self.peers
            .iter()
            .find(|p| p.ae_title.as_str() == ae)
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("{ae} is not in imaging.peers"),
                )
            })
    }
}

async fn list(State(p): State<Arc<Peers>>) -> Response {
    let peers: Vec<Json> = p
        .peers
        .iter()
        .map(
            |d| json!({ "ae_title": d.ae_title.as_str(), "host": d.host.as_str(), "port": d.port }),
        )
        .collect();
    axum::Json(peers).into_response()
}

/// An identifier from query parameters (`Keyword=value` or `00100020=value`) plus the return
/// keys every answer carries at `level`.
fn identifier(
    level: &str,
    defaults: &[Tag],
    raw: Option<&str>,
) -> Result<InMemDicomObject, Reject> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for &tag in defaults {
        put_key(&mut obj, tag, "");
    }
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let tag = parse_tag(&k).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("{k}: not an attribute keyword or tag"),
            )
        })?;
        put_key(&mut obj, tag, &v);
    }
    Ok(obj)
}

fn put_key(obj: &mut InMemDicomObject, tag: Tag, value: &str) {
    let vr: VR = dictionary_vr(tag).parse().unwrap_or(VR::LO);
    let value = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    obj.put(DataElement::new(tag, vr, value));
}

fn answer(result: Result<Vec<InMemDicomObject>, ScuError>) -> Response {
    match result {
        Ok(found) => {
            let json: Vec<Json> = found
                .iter()
                .map(|o| crate::dicom::json::to_json(o, ""))
                .collect();
            (
                [(axum::http::header::CONTENT_TYPE, "application/dicom+json")],
                Json::Array(json).to_string(),
            )
                .into_response()
        }
        Err(e) => problem(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn find_studies(
    State(p): State<Arc<Peers>>,
    Path(ae): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let peer = match p.get(&ae) {
        Ok(peer) => peer,
        Err((status, why)) => return problem(status, why),
    };
    let id = match identifier(
        "STUDY",
        &[
            tags::STUDY_INSTANCE_UID,
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::STUDY_DATE,
            tags::STUDY_DESCRIPTION,
            tags::ACCESSION_NUMBER,
            tags::MODALITIES_IN_STUDY,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        ],
        q.as_deref(),
    ) {
        Ok(id) => id,
        Err((status, why)) => return problem(status, why),
    };
    answer(find(&p.our_ae, peer, &id).await)
}

async fn find_series(
    State(p): State<Arc<Peers>>,
    Path((ae, study)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let peer = match p.get(&ae) {
        Ok(peer) => peer,
        Err((status, why)) => return problem(status, why),
    };
    let mut id = match identifier(
        "SERIES",
        &[
            tags::SERIES_INSTANCE_UID,
            tags::MODALITY,
            tags::SERIES_NUMBER,
            tags::SERIES_DESCRIPTION,
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        ],
        q.as_deref(),
    ) {
        Ok(id) => id,
        Err((status, why)) => return problem(status, why),
    };
    put_key(&mut id, tags::STUDY_INSTANCE_UID, &study);
    answer(find(&p.our_ae, peer, &id).await)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrieveRequest {
    #[serde(rename = "StudyInstanceUID")]
    study: String,
    #[serde(rename = "SeriesInstanceUID", default)]
    series: Option<String>,
}

async fn retrieve(
    State(p): State<Arc<Peers>>,
    Path(ae): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let peer = match p.get(&ae) {
        Ok(peer) => peer,
        Err((status, why)) => return problem(status, why),
    };
    let req: RetrieveRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "body: {e} (expected {{\"StudyInstanceUID\": \"...\", \"SeriesInstanceUID\": \"...\"}})"
                ),
            );
        }
    };
    for (name, uid) in [
        ("StudyInstanceUID", Some(&req.study)),
        ("SeriesInstanceUID", req.series.as_ref()),
    ] {
        if let Some(uid) = uid
            && !crate::uid::is_valid(uid)
        {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("{name}: {uid:?} is not a UID"),
            );
        }
    }
    let level = if req.series.is_some() {
        "SERIES"
    } else {
        "STUDY"
    };
    let mut id = InMemDicomObject::new_empty();
    id.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    put_key(&mut id, tags::STUDY_INSTANCE_UID, &req.study);
    if let Some(series) = &req.series {
        put_key(&mut id, tags::SERIES_INSTANCE_UID, series);
    }
    tracing::info!(peer = %peer, study = %req.study, "C-MOVE requested");
    match move_to(&p.our_ae, peer, &id, &p.our_ae).await {
        Ok(outcome) => {
            metrics::counter!("dicom_retrieved_instances_total")
                .increment(u64::from(outcome.completed));
            axum::Json(outcome).into_response()
        }
        Err(e) => problem(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
