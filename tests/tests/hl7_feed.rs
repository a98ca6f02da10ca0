//! The HL7 v2 feed end to end: python's `hl7` library (nobody here wrote it) sends messages
//! over a real MLLP socket to the `appliance` binary — a GB 18030 admission with the identity
//! card in PID-3, lab results with ranges and flags, a report PDF, a document, a merge, every
//! result sample of the shared test data — and reads the acknowledgements. Bad input (a
//! truncated frame, an oversized one, bad fields, an unknown sender or character set) gets AE
//! or AR naming the place, stores nothing, and the connection goes on. What was acknowledged
//! survives a kill; the record, the lab trend and the merge are read back over the API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use e2e::api::{activate, admin as cli, call, new_user as person};
use e2e::hl7::send;
use e2e::imaging::python;
use e2e::{Ports, temp_dir};
use serde_json::{Value, json};

fn msg(text: &str) -> Value {
    json!({ "text": text })
}

const ADMIT: &str = "MSH|^~\\&|HIS|CITY01|APPL|DC|20260301081500||ADT^A01^ADT_A01|ADT-1|P|2.5|||||CHN|GB 18030-2000\r\
EVN|A01|20260301081500\r\
PID|1||110101195603140011^^^NNCHN^NNCHN~ZY000123^^^CITY01^MR||张^三丰||19560314|M|||||13800000001\r\
PV1|1|I|心内科病区^301^2||||D01^李^四|||心内科|||||||||V001|||||||||||||||||||||||||20260301080000\r\
DG1|1||I21.9^急性心肌梗死^I10||20260301|A";

/// An ORU^R01 with 20 OBX: glucose on `day` (high from day 3), potassium low, 18 more.
fn labs(control: &str, day: u32, glucose: f64) -> String {
    let mut m = format!(
        "MSH|^~\\&|LIS|CITY01|||202603{day:02}100000||ORU^R01|{control}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||ZY000123^^^CITY01^MR||张^三丰||19560314|M\r\
ORC|RE|P-{control}|F-{control}\r\
OBR|1|P-{control}|F-{control}|BMP^生化^L|||202603{day:02}070000|||||||||||||||202603{day:02}093000|||F\r\
OBX|1|NM|2345-7^葡萄糖^LN||{glucose}|mmol/L|3.9-6.1||||F\r\
OBX|2|NM|2823-3^钾^LN||3.1|mmol/L|3.5-5.5|L|||F\r"
    );
    for i in 3..=20 {
        m.push_str(&format!(
            "OBX|{i}|NM|T{i}^项目{i}^L||{}.5|U/L|1-100|N|||F\r",
            i
        ));
    }
    m.push_str("SPM|1|||BLD^全血");
    m
}

fn pdf_report() -> String {
    use base64::Engine;
    let pdf = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4\n% a CT report\n");
    format!(
        "MSH|^~\\&|RIS|CITY01|||20260303||ORU^R01|RIS-1|P|2.4\r\
PID|1||ZY000123^^^^MR\r\
OBR|1|A1|B1|CT001^胸部CT平扫^L|||20260303090000|||||||||||||||||CT|F\r\
OBX|1|TX|IMP^印象||右肺上叶结节，建议随访。||||||F\r\
OBX|2|ED|PDF^报告||^AP^PDF^Base64^{pdf}||||||F"
    )
}

const DOCUMENT: &str = "MSH|^~\\&|EMR|CITY01|||20260304||MDM^T02|MDM-1|P|2.5\r\
PID|1||ZY000123^^^^MR\r\
TXA|1|DS^出院小结|TX|20260304120000||||||||DOC-9|||||LA\r\
OBX|1|TX|||患者好转出院。\r\
OBX|2|TX|||嘱低盐饮食。";

fn start(d: &Path, ports: &Ports) -> e2e::Daemon {
    e2e::api::start(
        d,
        ports,
        &[
            "--set",
            "integration.hl7_sources=[\"HIS^CITY01@127.0.0.1=市第一人民医院\",\"*^CITY01@127.0.0.1=市第一人民医院\",\"*^CLINIC1@*=城东社区卫生服务中心\"]",
            "--set",
            "integration.hl7_max_message_bytes=512KiB",
        ],
    )
}

/// Sends raw bytes on a fresh connection and reads `n` framed replies.
fn raw(port: u16, bytes: &[u8], n: usize) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(bytes).expect("send");
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < n {
        let k = s.read(&mut chunk).expect("an acknowledgement");
        assert!(k > 0, "closed after {got:?}");
        buf.extend_from_slice(&chunk[..k]);
        while let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            got.push(String::from_utf8_lossy(&frame[1..frame.len() - 2]).into_owned());
        }
    }
    got
}

fn framed(m: &str) -> Vec<u8> {
    [&[0x0b][..], m.as_bytes(), &[0x1c, 0x0d]].concat()
}

#[test]
fn the_hl7_feed_fills_the_clinical_record() {
    let dir = temp_dir();
    let d = dir.path();
    cli(d, &["institution", "add", "--name", "市第一人民医院"]);
    cli(
        d,
        &[
            "institution",
            "add",
            "--name",
            "城东社区卫生服务中心",
            "--kind",
            "clinic",
            "--parent",
            "1",
        ],
    );
    let doctor = person(d, "doctor.h", "doctor", "1", "");
    let other = person(d, "doctor.c", "doctor", "2", "");
    let ports = Ports::free();
    let mut daemon = start(d, &ports);
    let hl7 = ports.hl7;

    // The admission in GB 18030, twice (stored once), then labs over 5 days, a report with a
    // PDF, a document, and a second registration merged into the first.
    let mut jobs = vec![
        json!({ "text": ADMIT, "encoding": "gb18030" }),
        json!({ "text": ADMIT, "encoding": "gb18030" }),
    ];
    for day in 1..=5 {
        jobs.push(msg(&labs(&format!("LAB-{day}"), day, 4.0 + f64::from(day))));
    }
    jobs.push(msg(&pdf_report()));
    jobs.push(msg(DOCUMENT));
    jobs.push(msg("MSH|^~\\&|HIS|CITY01|||20260305||ADT^A04|ADT-2|P|2.5\rPID|1||ZY000999^^^^MR||张^三丰||19560314|M\rPV1|1|O|||||||||||||||||V002"));
    jobs.push(msg(&labs("LAB-OLD", 6, 5.0).replace("ZY000123", "ZY000999")));
    jobs.push(msg("MSH|^~\\&|HIS|CITY01|||20260306||ADT^A40|ADT-3|P|2.5\rPID|1||ZY000123^^^^MR\rMRG|ZY000999^^^^MR"));
    let acks = send(hl7, &jobs);
    for (i, a) in acks.iter().enumerate() {
        assert_eq!(a["code"], "AA", "job {i}: {a}");
    }
    assert_eq!(acks[0]["id"], "ADT-1");
    assert_eq!(acks[1]["text"], "duplicate: stored before", "{}", acks[1]);
    // What was acknowledged is committed: it survives a kill.
    daemon.signal("KILL");
    let _ = daemon.wait_exit(Duration::from_secs(10));
    let daemon = start(d, &ports);

    // Bad input: each refused with the place named; the connection goes on.
    let bad = send(
        hl7,
        &[
            msg(
                "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A01|B1|P|2.5\rPID|1||ZY5^^^^MR||王^五||19561340",
            ),
            msg("MSH|^~\\&|HIS|CITY01|||20260301||ADT^A01|B2|P|2.5\rPID|1||||王^五"),
            msg(&labs("B3", 1, 5.0).replace("|5|mmol", "|high|mmol")),
            msg("MSH|^~\\&|HIS|EVIL|||20260301||ADT^A01|B4|P|2.5\rPID|1||ZY1^^^^MR"),
            msg("MSH|^~\\&|HIS|CITY01|||20260301||ADT^A99|B5|P|2.5\rPID|1||ZY1^^^^MR"),
            msg(
                "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A01|B6|P|2.5\rPID|1||110101195603140013^^^NNCHN^NNCHN||王^五||19560314",
            ),
            msg(
                "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A01|B7|P|2.5|||||CHN|KOI8-R\rPID|1||ZY1^^^^MR",
            ),
            msg(
                "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A01|B8|P|2.5\rPID|1||110101195603140011^^^NNCHN^NNCHN~ZY000777^^^^MR||张^三丰||19560314",
            ),
            msg(ADMIT),
        ],
    );
    let expect = [
        ("AE", "PID^1^7"),
        ("AE", "PID^1^3"),
        ("AE", "OBX^1^5"),
        ("AR", "MSH^1^4"),
        ("AR", "MSH^1^9"),
        ("AE", "PID^1^3"),
        ("AE", "MSH^1^18"),
        ("AE", "PID^1^3"),
        ("AA", ""),
    ];
    for (a, (code, place)) in bad.iter().zip(expect) {
        assert_eq!(a["code"], code, "{a}");
        assert!(
            a["err"].as_str().unwrap_or_default().contains(place),
            "{a} should name {place}"
        );
    }
    assert!(
        bad[3]["text"]
            .as_str()
            .unwrap()
            .contains("integration.hl7_sources"),
        "{}",
        bad[3]
    );
    // The last is the admission's control id again: a duplicate, acknowledged.
    assert_eq!(bad[8]["text"], "duplicate: stored before");

    // Broken frames on a raw socket: answered, and the same connection goes on.
    let ok = "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A08|RAW-1|P|2.5\rPID|1||ZY000123^^^^MR||张^三丰";
    let big = format!(
        "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A08|RAW-BIG|P|2.5\rNTE|{}",
        "x".repeat(600_000)
    );
    let stream = [
        &[0x0b][..],
        b"MSH|^~\\&|HIS|CITY01|||20260301||ADT^A08|RAW-CUT|P|2.5\rPID|1",
        &framed(&big),
        &framed("PID|1||ZY1"),
        &framed(ok),
        &framed(&format!(
            "BHS|^~\\&|HIS|CITY01\r{}\r{}\rBTS|2",
            ok.replace("RAW-1", "BAT-1"),
            ok.replace("RAW-1", "BAT-2").replace("ZY000123", "")
        )),
    ]
    .concat();
    let replies = raw(hl7, &stream, 5);
    assert!(
        replies[0].contains("MSA|AR|RAW-CUT|") && replies[0].contains("truncated"),
        "{}",
        replies[0]
    );
    assert!(
        replies[1].contains("MSA|AR|RAW-BIG|") && replies[1].contains("larger than 524288"),
        "{}",
        replies[1]
    );
    assert!(
        replies[2].contains("MSA|AR||") && replies[2].contains("MSH"),
        "{}",
        replies[2]
    );
    assert!(replies[3].contains("MSA|AA|RAW-1|"), "{}", replies[3]);
    // A batch: one reply holding both ACKs; the second message, without PID-3, alone refused.
    let batch = &replies[4];
    assert!(
        batch.starts_with("BHS|") && batch.ends_with("BTS|2\r"),
        "{batch}"
    );
    assert!(
        batch.contains("MSA|AA|BAT-1|") && batch.contains("MSA|AE|BAT-2|"),
        "{batch}"
    );

    // Every result sample of the shared test data, sent as the clinic's LIS.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/hl7v2/cdcgov-trusted-intermediary-examples");
    let mut samples: Vec<Value> = e2e::files_under(&root)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n.contains("ORU_R01") && n.ends_with(".hl7") && !n.contains("annotated")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("sample");
            json!({ "text": text, "as": ["LIS", "CLINIC1"] })
        })
        .collect();
    samples.sort_by_key(|s| s["text"].as_str().map(str::len));
    assert!(samples.len() >= 20, "found {}", samples.len());
    let acks = send(hl7, &samples);
    let accepted = acks.iter().filter(|a| a["code"] == "AA").count();
    for a in acks.iter().filter(|a| a["code"] != "AA") {
        assert!(
            a["err"].as_str().is_some_and(|e| e.starts_with("ERR|")),
            "{a}"
        );
    }
    // The ones refused are the samples' own faults: processing id N, a 29 February 2017,
    // "DOB" as a birth date, identifiers or birth dates missing, and one record number sent
    // with two birth dates (two people: refused, never merged).
    assert!(
        accepted * 5 >= acks.len() * 3,
        "only {accepted} of {} samples taken: {acks:?}",
        acks.len()
    );

    // Reading it back: the doctor of the hospital finds the patient by identity card.
    let port = ports.http;
    let token = activate(port, &doctor);
    let found = call(
        port,
        "GET",
        "/api/v1/patients?q=110101195603140011",
        &token,
        &[],
        None,
    )
    .json();
    let items = found["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one person, the merged one hidden: {found}");
    assert_eq!(items[0]["name"], "张三丰");
    let id = items[0]["id"].as_i64().expect("id");
    let record = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/record"),
        &token,
        &[],
        None,
    );
    assert_eq!(record.status, 200);
    let record = record.json();
    assert_eq!(
        record["encounters"].as_array().unwrap().len(),
        2,
        "V001 and the merged V002"
    );
    assert_eq!(
        record["encounters"][1]["department"], "心内科",
        "{}",
        record["encounters"]
    );
    assert_eq!(record["diagnoses"][0]["code"], "I21.9");
    assert_eq!(record["diagnoses"][0]["provenance"]["source"], "HIS^CITY01");
    assert_eq!(
        record["labs"].as_array().unwrap().len(),
        6 * 20,
        "5 days and the merged day"
    );
    let potassium = record["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["code"] == "2823-3")
        .unwrap();
    assert_eq!(
        (
            potassium["abnormal"].as_str(),
            potassium["specimen"].as_str()
        ),
        (Some("L"), Some("全血"))
    );
    let reports = record["exam_reports"].as_array().unwrap();
    let ct = reports
        .iter()
        .find(|r| r["kind"] == "radiology")
        .expect("the CT report");
    assert_eq!(ct["text"], "右肺上叶结节，建议随访。");
    let pdf = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/exam-reports/{}/pdf", ct["id"]),
        &token,
        &[],
        None,
    );
    assert_eq!(pdf.status, 200);
    assert!(pdf.bytes.starts_with(b"%PDF-1.4\n% a CT report"));
    let doc = &record["documents"][0];
    assert_eq!(
        (doc["kind"].as_str(), doc["title"].as_str()),
        (Some("discharge"), Some("出院小结"))
    );
    let text = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/documents/{}", doc["id"]),
        &token,
        &[],
        None,
    );
    assert_eq!(text.body, "患者好转出院。\n嘱低盐饮食。");
    assert!(
        text.header("content-security-policy")
            .is_some_and(|c| c.contains("sandbox"))
    );

    // The glucose trend: oldest first, with its range, high from day 3 on (5+day > 6.1).
    let trend = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/labs/trend?code=2345-7"),
        &token,
        &[],
        None,
    )
    .json();
    let points = trend["points"].as_array().expect("points");
    let values: Vec<f64> = points
        .iter()
        .filter_map(|p| p["numeric"].as_f64())
        .collect();
    assert_eq!(values, [5.0, 6.0, 7.0, 8.0, 9.0, 5.0]);
    let abnormal: Vec<&str> = points
        .iter()
        .map(|p| p["abnormal"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(abnormal, ["", "", "H", "H", "H", ""]);
    assert_eq!(trend["range"]["low"], 3.9);
    assert_eq!(trend["range"]["high"], 6.1);
    assert_eq!(trend["unit"], "mmol/L");
    let bad = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/labs/trend"),
        &token,
        &[],
        None,
    );
    assert_eq!(
        (bad.status, bad.json()["field"].as_str()),
        (422, Some("code"))
    );

    // Scoping: the clinic's doctor cannot read the hospital's patient.
    let clinic = activate(port, &other);
    let denied = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/record"),
        &clinic,
        &[],
        None,
    );
    assert_eq!(denied.status, 404);

    // The merge and the integration's patient creations are in the audit trail, and each
    // message is kept once.
    drop(daemon);
    let audit = python(
        r#"
import sqlite3, sys, json
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = db.execute("SELECT login, action, target FROM audit_log WHERE login LIKE 'hl7:%'").fetchall()
messages = db.execute("SELECT count(*) FROM hl7_messages WHERE control_id = 'ADT-1'").fetchone()[0]
merges = db.execute("SELECT moved FROM patient_merges").fetchall()
print(json.dumps({"rows": rows, "messages": messages, "merges": [json.loads(m[0]) for m in merges]}))
"#,
        [d.join("data/appliance.db")],
    );
    let audit: Value = serde_json::from_slice(&audit).expect("json");
    assert_eq!(audit["messages"], 1);
    let rows = audit["rows"].as_array().expect("rows");
    assert!(
        rows.iter().any(|r| r[1] == "merge"
            && r[2]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!("->patient:{id}")))),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r[1] == "create"), "{rows:?}");
    assert_eq!(audit["merges"][0]["lab_results"], 20);
    assert_eq!(audit["merges"][0]["encounters"], 1);
}
