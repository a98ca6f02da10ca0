//! The record a consultation shares, item by item: on `appliance demo-data`, 赵医生 attaches two
//! items of 王建国's clinical record (the glucose series and the head CT report) to the stroke
//! consultation; once the centre schedules 李主任, he reads those items and nothing else of the
//! record (the rest answers 404, a trend of another analyte too, the FHIR facade refuses the
//! record types), while the clinic's doctor still reads all of it. A malformed item is refused
//! naming the field. A shared analyte stays whole after the clinic's LIS sends more than
//! the record's 500 newest values of other analytes.

use e2e::api::{activate, call, demo_data, demo_password};
use e2e::{Ports, temp_dir};
use serde_json::{Value, json};

#[test]
fn a_consultation_shares_the_record_item_by_item() {
    let dir = temp_dir();
    let printed = demo_data(dir.path());
    let ports = Ports::free();
    let _stack = e2e::api::start(
        dir.path(),
        &ports,
        &[
            "--set",
            "integration.hl7_sources=[\"LIS^DEMO-EAST@127.0.0.1=城东社区卫生服务中心\"]",
        ],
    );
    let port = ports.http;
    let login = |name: &str| activate(port, &(name.to_owned(), demo_password(&printed, name)));
    let (zhao, qc, centre, li) = (
        login("doctor.zhao"),
        login("qc.wu"),
        login("centre.zhou"),
        login("expert.li"),
    );
    let get = |token: &str, path: &str| call(port, "GET", path, token, &[], None);

    let wang = get(&zhao, "/api/v1/patients?q=王建国").json()["items"][0]["id"]
        .as_i64()
        .expect("王建国");
    let record_path = format!("/api/v1/patients/{wang}/record");
    let full = get(&zhao, &record_path).json();
    assert_eq!(full["shared_only"], false);
    let glucose = full["labs"]
        .as_array()
        .expect("labs")
        .iter()
        .find(|l| l["name"].as_str().is_some_and(|n| n.contains("葡萄糖")))
        .expect("a glucose result")["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let other_lab = full["labs"]
        .as_array()
        .expect("labs")
        .iter()
        .map(|l| l["code"].as_str().unwrap_or_default().to_owned())
        .find(|c| *c != glucose)
        .expect("another analyte");
    let report = full["exam_reports"][0]["id"].as_i64().expect("a report");
    let document = full["documents"][0]["id"].as_i64().expect("a document");
    assert!(!full["diagnoses"].as_array().expect("diagnoses").is_empty());

    // The stroke draft (the demo's first consultation): the items go with the application.
    let consultations = get(&zhao, "/api/v1/consultations").json();
    let stroke = consultations["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["patient"] == wang)
        .expect("the stroke draft")
        .clone();
    let id = stroke["id"].as_i64().expect("id");
    let url = format!("/api/v1/consultations/{id}");
    let version = |token: &str| {
        get(token, &url).json()["version"]
            .as_i64()
            .expect("version")
    };
    let put = |records: Value| {
        let tag = format!("\"{}\"", version(&zhao));
        call(
            port,
            "PUT",
            &url,
            &zhao,
            &[("If-Match", &tag)],
            Some(json!({ "records": records })),
        )
    };
    let bad = put(json!(["lab"]));
    assert_eq!(
        (bad.status, bad.json()["field"].clone()),
        (422, json!("records")),
        "{}",
        bad.body
    );
    let ok = put(json!([
        format!("lab:{glucose}"),
        format!("exam_report:{report}")
    ]));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        get(&zhao, &url).json()["records"],
        json!([format!("lab:{glucose}"), format!("exam_report:{report}")])
    );

    // Not yet involved: the expert sees nothing of the patient.
    assert_eq!(get(&li, &record_path).status, 404);
    let act = |token: &str, action: Value| {
        let tag = format!("\"{}\"", version(&centre));
        let r = call(
            port,
            "POST",
            &format!("{url}/actions"),
            token,
            &[("If-Match", &tag)],
            Some(action.clone()),
        );
        assert_eq!(r.status, 200, "{action}: {}", r.body);
    };
    act(&zhao, json!({ "action": "submit" }));
    act(&qc, json!({ "action": "qc_pass" }));
    let li_id = get(&li, "/api/v1/me").json()["id"].as_i64().expect("id");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + 3_600_000;
    act(
        &centre,
        json!({ "action": "schedule", "at": at, "experts": [li_id], "room": "会诊室1" }),
    );

    // The expert reads what was shared, and only that.
    let shared = get(&li, &record_path);
    assert_eq!(shared.status, 200, "{}", shared.body);
    let shared = shared.json();
    assert_eq!(shared["shared_only"], true);
    let labs = shared["labs"].as_array().expect("labs");
    assert!(!labs.is_empty());
    assert!(
        labs.iter().all(|l| l["code"] == glucose.as_str()),
        "{labs:?}"
    );
    assert_eq!(
        shared["labs"].as_array().map(Vec::len),
        full["labs"]
            .as_array()
            .map(|a| a.iter().filter(|l| l["code"] == glucose.as_str()).count()),
        "the whole glucose series"
    );
    assert_eq!(shared["exam_reports"].as_array().map(Vec::len), Some(1));
    assert_eq!(shared["exam_reports"][0]["id"], report);
    for kind in ["encounters", "orders", "documents", "diagnoses"] {
        assert_eq!(shared[kind], json!([]), "{kind}");
    }
    let trend = |token: &str, code: &str| {
        get(
            token,
            &format!("/api/v1/patients/{wang}/labs/trend?code={code}"),
        )
    };
    assert_eq!(trend(&li, &glucose).status, 200);
    assert_eq!(trend(&li, &other_lab).status, 404);
    assert_eq!(trend(&zhao, &other_lab).status, 200);
    let doc_path = format!("/api/v1/patients/{wang}/documents/{document}");
    assert_eq!(get(&li, &doc_path).status, 404);
    assert_eq!(get(&zhao, &doc_path).status, 200);
    // The FHIR facade serves the whole record only: the expert is pointed to the API.
    let fhir = get(&li, &format!("/fhir/Observation?patient={wang}"));
    assert_eq!(fhir.status, 403, "{}", fhir.body);
    assert_eq!(fhir.json()["issue"][0]["code"], "forbidden");
    assert_eq!(
        get(&zhao, &format!("/fhir/Observation?patient={wang}")).status,
        200
    );
    // And the clinic's doctor still reads the whole record.
    assert_eq!(get(&zhao, &record_path).json(), full);

    // 26 newer panels of 20 other analytes: 520 values, more than the record lists of a kind.
    // What the consultation shares is chosen before that limit: the glucose series stays whole.
    let jobs: Vec<Value> = (1..=26)
        .map(|n| {
            let mut m = format!(
                "MSH|^~\\&|LIS|DEMO-EAST|||20261208||ORU^R01|BULK{n}|P|2.5\r\
                 PID|1||DEMO0001^^^DEMO-EAST^MR||王^建国||19560314|M\r\
                 ORC|RE|PB{n}|FB{n}\rOBR|1|PB{n}|FB{n}|PANEL^生化^L"
            );
            for k in 1..=20 {
                m.push_str(&format!(
                    "\rOBX|{k}|NM|Z{k}^项目{k}^L||{k}|mmol/L|1-100||||F"
                ));
            }
            json!({ "text": m })
        })
        .collect();
    let acks = e2e::hl7::send(ports.hl7, &jobs);
    assert!(acks.iter().all(|a| a["code"] == "AA"), "{acks:?}");
    let after = get(&zhao, &record_path).json();
    assert_eq!(after["labs"].as_array().map(Vec::len), Some(500));
    assert!(
        after["labs"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["code"] != glucose.as_str())),
        "the whole record lists the newest 500"
    );
    let shared_after = get(&li, &record_path).json();
    assert_eq!(shared_after["labs"], shared["labs"]);
}
