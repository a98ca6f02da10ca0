//! The FHIR R4 facade against the real `appliance`: a record fed over HL7 (python's `hl7`
//! library on MLLP) and a consultation made over the API, read back as FHIR resources, every
//! one of them validated by `fhir.resources` (nobody here wrote it); search parameters (patient,
//! code, date ranges, `_count` with paging, `_sort`, `_include`), scoping (another
//! institution's doctor sees nothing), and OperationOutcome errors naming the parameter.

use std::io::Write;

use e2e::api::{activate, admin as cli, call, new_user as person};
use e2e::hl7::send;
use e2e::{Ports, temp_dir};
use serde_json::{Value, json};

/// Validates each resource with fhir.resources' R4B models (R4B corrects R4 4.0.1; the twelve
/// types served here are the same in both); prints the errors.
const VALIDATE: &str = r#"
import json, sys
from fhir.resources.R4B import get_fhir_model_class
errors = []
for r in json.load(sys.stdin):
    try:
        get_fhir_model_class(r["resourceType"]).model_validate(r)
    except Exception as e:
        errors.append({"resource": r.get("resourceType") + "/" + str(r.get("id")), "error": str(e)[:600]})
print(json.dumps(errors))
"#;

fn validate(resources: &[Value]) -> Vec<Value> {
    let mut child = std::process::Command::new(
        std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .args(["-c", VALIDATE])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("python3 with fhir.resources (scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::from(resources.to_vec()).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("validator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("errors as JSON")
}

fn glucose(day: u32, value: f64) -> Value {
    json!({ "text": format!(
        "MSH|^~\\&|LIS|CITY01|||202603{day:02}100000||ORU^R01|G{day}|P|2.5.1\r\
PID|1||110101195603140011^^^NNCHN^NNCHN~ZY1^^^^MR||张^三丰||19560314|M\r\
ORC|RE|P{day}|F{day}\r\
OBR|1|P{day}|F{day}|GLU^血糖^L|||202603{day:02}070000||||||||||||||||||F\r\
OBX|1|NM|2345-7^葡萄糖^LN||{value}|mmol/L|3.9-6.1||||F\r\
OBX|2|NM|2823-3^钾^LN||4.1|mmol/L|3.5-5.5|N|||F{}",
        if day == 5 { "\rOBX|3|ED|PDF^检验报告单||^AP^PDF^Base64^JVBERi0xLjQK||||||F" } else { "" }
    ) })
}

#[test]
fn the_fhir_facade_serves_valid_r4_resources_with_scoping() {
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
    let doctor = person(d, "doctor.f", "doctor", "1", "");
    let other = person(d, "doctor.o", "doctor", "2", "");
    let ports = Ports::free();
    let _daemon = e2e::api::start(
        d,
        &ports,
        &[
            "--set",
            "integration.hl7_sources=[\"*^CITY01@127.0.0.1=市第一人民医院\"]",
        ],
    );
    let mut jobs: Vec<Value> = (1..=5)
        .map(|day| glucose(day, 4.0 + f64::from(day)))
        .collect();
    jobs.push(json!({ "text": "MSH|^~\\&|HIS|CITY01|||20260301||ADT^A01|A1|P|2.5\rPID|1||ZY1^^^^MR||张^三丰||19560314|M\rPV1|1|I|W1^1^1|||||||心内科|||||||||V1|||||||||||||||||||||||||20260301080000\rDG1|1||I21.9^急性心肌梗死^I10||20260301|A" }));
    jobs.push(json!({ "text": "MSH|^~\\&|RIS|CITY01|||20260303||ORU^R01|R1|P|2.4\rPID|1||ZY1^^^^MR\rOBR|1|A1|B1|CT001^胸部CT^L|||20260303090000|||||||||||||||||CT|F\rOBX|1|TX|IMP^印象||未见异常。||||||F" }));
    jobs.push(json!({ "text": "MSH|^~\\&|EMR|CITY01|||20260304||MDM^T02|D1|P|2.5\rPID|1||ZY1^^^^MR\rTXA|1|DS^出院小结|TX|20260304120000||||||||DOC-1|||||LA\rOBX|1|TX|||好转出院。" }));
    let acks = send(ports.hl7, &jobs);
    assert!(acks.iter().all(|a| a["code"] == "AA"), "{acks:?}");

    let port = ports.http;
    let token = activate(port, &doctor);
    let id =
        call(port, "GET", "/api/v1/patients?q=ZY1", &token, &[], None).json()["items"][0]["id"]
            .as_i64()
            .expect("the patient");
    let created = call(
        port,
        "POST",
        "/api/v1/consultations",
        &token,
        &[],
        Some(json!({ "patient": id, "kind": "remote", "mode": "appointment" })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let consultation = created.json()["id"].as_i64().expect("id");

    let fhir =
        |path: &str, token: &str| call(port, "GET", &format!("/fhir/{path}"), token, &[], None);
    let mut everything: Vec<Value> = Vec::new();

    let meta = fhir("metadata", &token);
    assert_eq!(meta.status, 200);
    assert!(
        meta.header("content-type")
            .is_some_and(|c| c.starts_with("application/fhir+json"))
    );
    let meta = meta.json();
    assert_eq!(meta["fhirVersion"], "4.0.1");
    assert_eq!(
        meta["rest"][0]["resource"].as_array().map(Vec::len),
        Some(13)
    );
    everything.push(meta.clone());

    let patient = fhir(&format!("Patient/{id}"), &token).json();
    assert_eq!(
        (
            patient["name"][0]["text"].as_str(),
            patient["gender"].as_str()
        ),
        (Some("张三丰"), Some("male"))
    );
    assert_eq!(patient["birthDate"], "1956-03-14");
    everything.push(patient.clone());
    let by_card = fhir("Patient?identifier=110101195603140011", &token).json();
    assert_eq!(by_card["total"], 1, "{by_card}");
    everything.push(by_card.clone());

    // Glucose by patient and code, oldest first, two a page: five in all, a next link.
    let first = fhir(
        &format!("Observation?patient={id}&code=http://loinc.org|2345-7&_sort=date&_count=2"),
        &token,
    )
    .json();
    assert_eq!(first["total"], 5, "{first}");
    let values: Vec<f64> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["valueQuantity"]["value"].as_f64())
        .collect();
    assert_eq!(values, [5.0, 6.0]);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next link")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let next_path = next.split("/fhir/").nth(1).expect("a facade URL");
    let second = fhir(next_path, &token).json();
    let values: Vec<f64> = second["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["valueQuantity"]["value"].as_f64())
        .collect();
    assert_eq!(values, [7.0, 8.0]);
    everything.push(first.clone());
    everything.push(second.clone());
    // A date range: day 3 to day 4, and the high ones flagged.
    let range = fhir(
        &format!("Observation?patient={id}&code=2345-7&date=ge2026-03-03&date=lt2026-03-05"),
        &token,
    )
    .json();
    assert_eq!(range["total"], 2, "{range}");
    for e in range["entry"].as_array().unwrap() {
        assert_eq!(e["resource"]["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(e["resource"]["referenceRange"][0]["high"]["value"], 6.1);
    }
    everything.push(range.clone());
    let with_patient = fhir(
        &format!("Observation?patient={id}&code=2823-3&_include=Observation:patient"),
        &token,
    )
    .json();
    let modes: Vec<&str> = with_patient["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["search"]["mode"].as_str())
        .collect();
    assert_eq!(
        modes.iter().filter(|m| **m == "include").count(),
        1,
        "{modes:?}"
    );
    everything.push(with_patient.clone());

    let reports = fhir(
        &format!("DiagnosticReport?patient={id}&_include=DiagnosticReport:result"),
        &token,
    )
    .json();
    // The CT report and day 5's lab report (its PDF), with that order's two results included.
    assert_eq!(reports["total"], 2, "{reports}");
    let entries = reports["entry"].as_array().unwrap();
    let lab = entries
        .iter()
        .find(|e| e["resource"]["category"][0]["coding"][0]["code"] == "LAB")
        .expect("the lab report");
    assert_eq!(
        lab["resource"]["result"].as_array().map(Vec::len),
        Some(2),
        "{lab}"
    );
    assert!(
        lab["resource"]["presentedForm"][0]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/pdf"))
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .count(),
        2
    );
    everything.push(reports.clone());
    for path in [
        format!("DiagnosticReport?patient={id}&category=RAD"),
        format!("Encounter?patient={id}"),
        format!("Condition?patient={id}&code=I21.9"),
        format!("ServiceRequest?patient={id}"),
        format!("ServiceRequest?patient={id}&category=consultation"),
        format!("Task?patient={id}"),
        format!("DocumentReference?patient={id}"),
        format!("ImagingStudy?patient={id}"),
        format!("Appointment?patient={id}"),
        "Organization".to_owned(),
        "Practitioner?name=doctor".to_owned(),
        "PractitionerRole?organization=1".to_owned(),
        format!("Task/c{consultation}"),
        format!("ServiceRequest/c{consultation}"),
    ] {
        let r = fhir(&path, &token);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        everything.push(r.json());
    }
    let ct = fhir(
        &format!("DiagnosticReport?patient={id}&category=RAD"),
        &token,
    )
    .json();
    assert_eq!(ct["total"], 1);
    assert_eq!(ct["entry"][0]["resource"]["conclusion"], "未见异常。");
    let task = fhir(&format!("Task?patient={id}"), &token).json();
    assert_eq!(task["entry"][0]["resource"]["status"], "draft");
    let enc = fhir(&format!("Encounter?patient={id}"), &token).json();
    assert_eq!(enc["entry"][0]["resource"]["class"]["code"], "IMP");
    assert_eq!(
        enc["entry"][0]["resource"]["period"]["start"],
        "2026-03-01T08:00:00+08:00"
    );
    let dx = fhir(&format!("Condition?patient={id}"), &token).json();
    assert_eq!(dx["total"], 1);
    let condition = &dx["entry"][0]["resource"];
    assert_eq!(
        condition["code"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/icd-10"
    );
    assert_eq!(condition["code"]["coding"][0]["code"], "I21.9");
    assert_eq!(
        condition["verificationStatus"]["coding"][0]["code"],
        "provisional"
    );
    let docs = fhir(&format!("DocumentReference?patient={id}"), &token).json();
    assert_eq!(
        docs["entry"][0]["resource"]["type"]["coding"][0]["code"],
        "18842-5"
    );

    let errors = validate(&everything);
    assert!(errors.is_empty(), "{errors:#?}");

    // Errors are OperationOutcomes naming the parameter.
    for (path, status, expression) in [
        ("Observation?patient=abc".to_owned(), 400, Some("patient")),
        (
            format!("Observation?patient={id}&colour=red"),
            400,
            Some("colour"),
        ),
        (
            format!("Observation?patient={id}&date=ge2026-13-01"),
            400,
            Some("date"),
        ),
        (
            format!("Observation?patient={id}&_count=0"),
            400,
            Some("_count"),
        ),
        ("Medication".to_owned(), 404, None),
        ("Observation/999999".to_owned(), 404, None),
    ] {
        let r = fhir(&path, &token);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        let o = r.json();
        assert_eq!(o["resourceType"], "OperationOutcome", "{path}");
        if let Some(x) = expression {
            assert_eq!(o["issue"][0]["expression"][0], x, "{path}: {o}");
        }
        everything.push(o.clone());
    }
    let anonymous = call(port, "GET", "/fhir/Patient", "", &[], None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["issue"][0]["code"], "login");

    // Scoping: the clinic's doctor gets 404 for the patient and an empty search.
    let clinic = activate(port, &other);
    assert_eq!(
        fhir(&format!("Observation?patient={id}"), &clinic).status,
        404
    );
    assert_eq!(fhir(&format!("Patient/{id}"), &clinic).status, 404);
    assert_eq!(fhir("Observation?code=2345-7", &clinic).json()["total"], 0);
    assert_eq!(fhir("Observation?code=2345-7", &token).json()["total"], 5);
    let errors = validate(&everything);
    assert!(errors.is_empty(), "{errors:#?}");
}
