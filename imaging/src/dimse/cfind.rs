//! C-FIND as an SCP (PS3.4 C.4.1): a request identifier read as a [`Query`] on the index
//! (Study Root and Patient Root; levels PATIENT, STUDY, SERIES, IMAGE), and each result written
//! back as an identifier holding exactly the keys asked for.

use std::collections::HashSet;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::Value as Json;
use sqlx::SqlitePool;

use crate::dicom::json::tag_key;
use crate::store::query::{Include, Level, Query, QueryError};

/// What a C-FIND request asks: the query, the keys to return, and whether results are patients.
#[derive(Debug, Clone)]
pub struct Find {
    query: Query,
    keys: Vec<(Tag, VR)>,
    level_text: String,
    patients: bool,
}

/// Reads a C-FIND identifier. Keys with a value match; empty keys are returned. A key the
/// index cannot match on is returned as stored, not used to filter (the standard lets an SCP
/// support matching on a subset of the optional keys).
pub fn read_identifier(identifier: &InMemDicomObject) -> Result<Find, QueryError> {
    let level_text = crate::store::text(identifier, tags::QUERY_RETRIEVE_LEVEL).unwrap_or_default();
    let (level, patients) = match level_text.as_str() {
        "PATIENT" => (Level::Study, true),
        "STUDY" => (Level::Study, false),
        "SERIES" => (Level::Series, false),
        "IMAGE" => (Level::Instance, false),
        other => {
            return Err(QueryError::Param {
                param: "QueryRetrieveLevel (0008,0052)".into(),
                reason: format!("{other:?} is not PATIENT, STUDY, SERIES or IMAGE"),
            });
        }
    };
    let mut query = Query::new(level);
    query.limit = crate::store::query::MAX_LIMIT;
    let mut keys = Vec::new();
    let mut extra = Vec::new();
    for elem in identifier {
        let tag = elem.header().tag;
        if tag == tags::QUERY_RETRIEVE_LEVEL || tag == tags::SPECIFIC_CHARACTER_SET || tag.1 == 0 {
            continue;
        }
        keys.push((tag, elem.header().vr));
        let value = elem
            .to_str()
            .map(|s| s.trim_matches(['\0', ' ']).to_owned())
            .unwrap_or_default();
        if elem.header().vr == VR::SQ || query.key(&tag_key(tag), tag, &value).is_err() {
            extra.push(tag);
        }
    }
    query.include = Include::Tags(extra);
    Ok(Find {
        query,
        keys,
        level_text,
        patients,
    })
}

impl Find {
    /// Runs the query: one identifier per result.
    pub async fn run(&self, pool: &SqlitePool) -> Result<Vec<InMemDicomObject>, QueryError> {
        let (results, _) = self.query.run(pool).await?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in &results {
            if self.patients {
                let id = r["00100020"]["Value"][0].as_str().unwrap_or_default();
                if !seen.insert(id.to_owned()) {
                    continue;
                }
            }
            let mut obj = InMemDicomObject::new_empty();
            obj.put(DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from(self.level_text.as_str()),
            ));
            for &(tag, vr) in &self.keys {
                obj.put(element(tag, vr, r.get(tag_key(tag)).unwrap_or(&Json::Null)));
            }
            out.push(obj);
        }
        Ok(out)
    }
}

/// One returned key from a DICOM JSON entry (absent or null: an empty value).
fn element(tag: Tag, asked_vr: VR, entry: &Json) -> DataElement<InMemDicomObject> {
    let vr = entry["vr"]
        .as_str()
        .and_then(|v| v.parse::<VR>().ok())
        .unwrap_or(asked_vr);
    let values: Vec<String> = entry["Value"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| match v {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    Json::Object(name) => {
                        let part = |k: &str| name.get(k).and_then(Json::as_str).unwrap_or("");
                        let groups = [part("Alphabetic"), part("Ideographic"), part("Phonetic")];
                        let used = groups
                            .iter()
                            .rposition(|g| !g.is_empty())
                            .map_or(0, |i| i + 1);
                        groups[..used].join("=")
                    }
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    if vr == VR::SQ || values.is_empty() {
        return DataElement::new(tag, vr, PrimitiveValue::Empty);
    }
    let value = match vr {
        VR::US => values
            .iter()
            .map(|v| v.parse::<u16>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::U16(v.into())),
        VR::UL => values
            .iter()
            .map(|v| v.parse::<u32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::U32(v.into())),
        VR::SS => values
            .iter()
            .map(|v| v.parse::<i16>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::I16(v.into())),
        VR::SL => values
            .iter()
            .map(|v| v.parse::<i32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::I32(v.into())),
        VR::FL => values
            .iter()
            .map(|v| v.parse::<f32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::F32(v.into())),
        VR::FD => values
            .iter()
            .map(|v| v.parse::<f64>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::F64(v.into())),
        _ => Some(PrimitiveValue::from(values.join("\\"))),
    };
    DataElement::new(tag, vr, value.unwrap_or(PrimitiveValue::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_become_queries_and_levels_are_checked() {
        let id = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from("STUDY"),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("Wang*")),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
            DataElement::new(tags::PATIENT_AGE, VR::AS, PrimitiveValue::Empty),
        ]);
        let f = read_identifier(&id).unwrap();
        assert_eq!(f.keys.len(), 3);
        assert_eq!(f.query.include, Include::Tags(vec![tags::PATIENT_AGE]));
        let mut bad = id.clone();
        bad.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("FRAME"),
        ));
        assert!(
            read_identifier(&bad)
                .unwrap_err()
                .to_string()
                .contains("FRAME")
        );
    }

    #[test]
    fn json_entries_become_elements() {
        let pn = element(
            tags::PATIENT_NAME,
            VR::PN,
            &json!({"vr": "PN", "Value": [{"Alphabetic": "Wang^Fang", "Ideographic": "王^芳"}]}),
        );
        assert_eq!(pn.to_str().unwrap(), "Wang^Fang=王^芳");
        let rows = element(tags::ROWS, VR::US, &json!({"vr": "US", "Value": [512]}));
        assert_eq!(rows.to_int::<u16>().unwrap(), 512);
        let missing = element(tags::PATIENT_AGE, VR::AS, &Json::Null);
        assert!(matches!(
            missing.value(),
            dicom_core::value::Value::Primitive(PrimitiveValue::Empty)
        ));
    }
}
