//! Pulling a clinic's cloud HIS over FHIR: one `appliance` (the clinic's cloud, its record
//! imported from the official FHIR R4 examples with `appliance fhir-import`) serves `/fhir`;
//! a second, configured with it in `integration.fhir_sources`, pulls the record in on its own
//! schedule: the patients with their observations (provenance naming the source and the
//! resource), nothing twice on the next pull, and what the cloud adds later on the pull after.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::api::{activate, admin as cli, call, new_user as person};
use e2e::{Ports, temp_dir};
use serde_json::{Value, json};

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/fhir/hl7.fhir.r4.examples-4.0.1");
    let mut files: Vec<String> = e2e::files_under(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

/// Polls `f` every 500 ms until it gives Some, for at most `secs`.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_clinic_cloud_his_is_pulled_over_fhir() {
    // The cloud: the R4 examples imported, a service login for the puller.
    let cloud = temp_dir();
    let c = cloud.path();
    cli(c, &["institution", "add", "--name", "云HIS诊所"]);
    let files = examples();
    assert!(files.len() > 200, "found {}", files.len());
    let mut args = vec![
        "fhir-import",
        "--institution",
        "云HIS诊所",
        "--source",
        "r4-examples",
    ];
    args.extend(files.iter().map(String::as_str));
    let imported = cli(c, &args);
    assert!(imported.starts_with("stored "), "{imported}");
    let puller = person(c, "pull.clinic", "coordinator", "1", "");
    let cloud_ports = Ports::free();
    let _cloud = e2e::api::start(c, &cloud_ports, &[]);
    let token = activate(cloud_ports.http, &puller);
    let fhir = |path: &str| {
        call(
            cloud_ports.http,
            "GET",
            &format!("/fhir/{path}"),
            &token,
            &[],
            None,
        )
        .json()
    };
    let chalmers = fhir("Patient?identifier=12345")["entry"][0]["resource"]["id"]
        .as_str()
        .expect("Patient 12345")
        .to_owned();
    let cloud_labs = fhir(&format!("Observation?patient={chalmers}&_count=1"))["total"]
        .as_i64()
        .expect("total");
    assert!(cloud_labs > 20, "{cloud_labs} observations in the cloud");

    // The data centre: pulls every 10 s with that token.
    let centre = temp_dir();
    let d = centre.path();
    cli(d, &["institution", "add", "--name", "城东社区卫生服务中心"]);
    let doctor = person(d, "doctor.e", "doctor", "1", "");
    let token_file = d.join("cloud.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let base = format!("http://127.0.0.1:{}/fhir", cloud_ports.http);
    let source = format!(
        "integration.fhir_sources=[\"{base}=城东社区卫生服务中心;token_file={};every=10\"]",
        token_file.display()
    );
    let ports = Ports::free();
    let _centre = e2e::api::start(d, &ports, &["--set", &source]);
    let me = activate(ports.http, &doctor);
    let record_of = |q: &str| -> Option<Value> {
        let found = call(
            ports.http,
            "GET",
            &format!("/api/v1/patients?q={q}"),
            &me,
            &[],
            None,
        )
        .json();
        let id = found["items"][0]["id"].as_i64()?;
        Some(
            call(
                ports.http,
                "GET",
                &format!("/api/v1/patients/{id}/record"),
                &me,
                &[],
                None,
            )
            .json(),
        )
    };
    let labs = |r: &Value| r["labs"].as_array().map(Vec::len).unwrap_or(0) as i64;
    let record = until(60, "the first pull", || {
        record_of("12345").filter(|r| labs(r) == cloud_labs)
    });
    let lab = &record["labs"][0];
    assert_eq!(lab["provenance"]["source"], base.as_str());
    assert!(
        lab["provenance"]["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("Observation/")),
        "{lab}"
    );
    let glucose = record["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["numeric"].is_number() && l["range"] != "")
        .expect("a value with a range");
    assert!(glucose["abnormal"].is_string());

    // The next pull (10 s on) takes nothing twice.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        labs(&record_of("12345").expect("record")),
        cloud_labs,
        "nothing duplicated"
    );

    // The cloud adds an observation; the pull after brings it, and only it.
    let new = cloud.path().join("new.json");
    std::fs::write(
        &new,
        json!({
            "resourceType": "Observation", "id": "glucose-today", "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "15074-8", "display": "Glucose" }] },
            "subject": { "reference": "Patient/example" },
            "effectiveDateTime": "2026-12-07T08:00:00+08:00",
            "valueQuantity": { "value": 7.9, "unit": "mmol/L" },
            "referenceRange": [{ "low": { "value": 3.1 }, "high": { "value": 6.2 } }],
        })
        .to_string(),
    )
    .expect("write");
    let out = cli(
        c,
        &[
            "fhir-import",
            "--institution",
            "云HIS诊所",
            "--source",
            "r4-examples",
            "/dev/null",
        ]
        .map(|a| {
            if a == "/dev/null" {
                new.to_str().unwrap()
            } else {
                a
            }
        }),
    );
    assert!(out.starts_with("stored 1,"), "{out}");
    let record = until(40, "the new observation", || {
        record_of("12345").filter(|r| labs(r) == cloud_labs + 1)
    });
    let today = record["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["value"] == "7.9")
        .expect("the new value");
    assert_eq!(today["abnormal"], "H", "7.9 is above 6.2: {today}");
}
