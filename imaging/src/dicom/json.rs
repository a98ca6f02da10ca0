//! DICOM JSON (PS3.18 F.2): one data set as the JSON object DICOMweb answers with. Binary values
//! (pixel data, and any other binary element over [`INLINE_LIMIT`] bytes) are not inlined but
//! referenced by a `BulkDataURI` under the instance's WADO-RS path, so metadata stays small.

use base64::Engine;
use dicom_core::value::Value;
use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{Map, Value as Json, json};

/// Binary values up to this size are inlined (base64); larger ones become bulk data.
pub const INLINE_LIMIT: usize = 256;

/// The tag as DICOM JSON names it: eight upper-case hex digits.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.0, tag.1)
}

/// The data set as a DICOM JSON object. `bulk_base` is the instance's WADO-RS path; bulk data
/// elements get `{bulk_base}/bulk/{TAG}` (with `/{item}/{TAG}` steps inside sequences).
pub fn to_json(obj: &InMemDicomObject, bulk_base: &str) -> Json {
    Json::Object(object(obj, &format!("{bulk_base}/bulk")))
}

fn object(obj: &InMemDicomObject, bulk_path: &str) -> Map<String, Json> {
    let mut out = Map::new();
    for elem in obj {
        let tag = elem.header().tag;
        // Group lengths are an encoding detail, not an attribute.
        if tag.1 == 0 {
            continue;
        }
        let key = tag_key(tag);
        let vr = elem.header().vr;
        let mut entry = Map::new();
        entry.insert("vr".into(), Json::String(vr.to_string().to_owned()));
        let path = format!("{bulk_path}/{key}");
        match elem.value() {
            Value::Sequence(seq) => {
                let items: Vec<Json> = seq
                    .items()
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Json::Object(object(item, &format!("{path}/{i}"))))
                    .collect();
                if !items.is_empty() {
                    entry.insert("Value".into(), Json::Array(items));
                }
            }
            Value::PixelSequence(_) => {
                entry.insert("BulkDataURI".into(), Json::String(path));
            }
            Value::Primitive(v) => primitive(&mut entry, tag, vr, v, path),
        }
        out.insert(key, Json::Object(entry));
    }
    out
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

fn primitive(entry: &mut Map<String, Json>, tag: Tag, vr: VR, v: &PrimitiveValue, path: String) {
    if matches!(v, PrimitiveValue::Empty) {
        return;
    }
    if is_binary(vr) {
        let bytes = v.to_bytes();
        if tag == tags::PIXEL_DATA || bytes.len() > INLINE_LIMIT {
            entry.insert("BulkDataURI".into(), Json::String(path));
        } else {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            entry.insert("InlineBinary".into(), Json::String(b64));
        }
        return;
    }
    let values: Vec<Json> = match vr {
        VR::PN => strings(v)
            .into_iter()
            .map(|name| {
                let mut groups = Map::new();
                for (label, part) in ["Alphabetic", "Ideographic", "Phonetic"]
                    .iter()
                    .zip(name.split('='))
                {
                    if !part.is_empty() {
                        groups.insert((*label).to_owned(), Json::String(part.to_owned()));
                    }
                }
                Json::Object(groups)
            })
            .collect(),
        VR::AT => match v {
            PrimitiveValue::Tags(t) => t.iter().map(|t| Json::String(tag_key(*t))).collect(),
            _ => strings(v).into_iter().map(Json::String).collect(),
        },
        VR::IS => strings(v)
            .into_iter()
            .map(|s| match s.trim().parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => Json::String(s),
            })
            .collect(),
        VR::DS => strings(v)
            .into_iter()
            .map(|s| match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => json!(n),
                _ => Json::String(s),
            })
            .collect(),
        VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV => match v.to_multi_int::<i64>() {
            Ok(ns) => ns.into_iter().map(|n| json!(n)).collect(),
            Err(_) => strings(v).into_iter().map(Json::String).collect(),
        },
        VR::FL | VR::FD => match v.to_multi_float64() {
            Ok(ns) => ns
                .into_iter()
                .map(|n| if n.is_finite() { json!(n) } else { Json::Null })
                .collect(),
            Err(_) => strings(v).into_iter().map(Json::String).collect(),
        },
        // Text that is one value by definition (backslash is not a separator in these).
        VR::LT | VR::ST | VR::UT | VR::UR => {
            vec![Json::String(trimmed(&v.to_str()).to_owned())]
        }
        _ => strings(v).into_iter().map(Json::String).collect(),
    };
    if !values.is_empty() {
        entry.insert("Value".into(), Json::Array(values));
    }
}

fn trimmed(s: &str) -> &str {
    s.trim_end_matches(['\0', ' '])
}

/// Multi-valued text, each value without padding. DICOM pads with spaces (or NUL for UIDs).
fn strings(v: &PrimitiveValue) -> Vec<String> {
    v.to_multi_str()
        .iter()
        .flat_map(|s| s.split('\\'))
        .map(|s| trimmed(s.trim_start_matches(' ')).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::DataElement;
    use dicom_core::value::DataSetSequence;

    #[test]
    fn values_follow_the_dicom_json_rules() {
        let item = InMemDicomObject::from_element_iter([DataElement::new(
            Tag(0x0008, 0x0100),
            VR::SH,
            PrimitiveValue::from("T-D1100"),
        )]);
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::PATIENT_NAME,
                VR::PN,
                PrimitiveValue::from("Wang^Fang=王^芳"),
            ),
            DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                PrimitiveValue::from("ORIGINAL\\PRIMARY "),
            ),
            DataElement::new(
                tags::PIXEL_SPACING,
                VR::DS,
                PrimitiveValue::from("0.488281\\0.5 "),
            ),
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from(" 12")),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512u16)),
            DataElement::new(tags::STUDY_DESCRIPTION, VR::LO, PrimitiveValue::Empty),
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8(vec![0; 8].into()),
            ),
            DataElement::new(
                Tag(0x0029, 0x1010),
                VR::OB,
                PrimitiveValue::U8(vec![1, 2, 3].into()),
            ),
        ]);
        let j = to_json(&obj, "/dicomweb/studies/1/series/2/instances/3");
        assert_eq!(
            j["00100010"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "Wang^Fang", "Ideographic": "王^芳"}]})
        );
        assert_eq!(j["00080008"]["Value"], json!(["ORIGINAL", "PRIMARY"]));
        assert_eq!(j["00280030"]["Value"], json!([0.488281, 0.5]));
        assert_eq!(j["00200013"]["Value"], json!([12]));
        assert_eq!(j["00280010"], json!({"vr": "US", "Value": [512]}));
        assert_eq!(j["00081030"], json!({"vr": "LO"}), "empty: no Value");
        assert_eq!(
            j["00082218"]["Value"][0]["00080100"]["Value"],
            json!(["T-D1100"])
        );
        assert_eq!(
            j["7FE00010"]["BulkDataURI"],
            "/dicomweb/studies/1/series/2/instances/3/bulk/7FE00010"
        );
        assert_eq!(j["00291010"]["InlineBinary"], "AQID");
    }
}
