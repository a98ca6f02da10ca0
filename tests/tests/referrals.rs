//! An up referral against the real `appliance` binary: a township clinic refers a patient to
//! the city hospital; the referral centre checks and assigns it to a doctor, who refuses with
//! feedback; the centre reassigns it; the new doctor reads the shared records (the grant),
//! accepts, records the arrival and closes it. Another clinic sees nothing; a named receiver is
//! the only one who may answer; a stale version gets 409.

use std::time::Duration;

use e2e::api::{activate, admin, call, new_user};
use e2e::{Ports, temp_dir};
use serde_json::{Value, json};

#[test]
fn an_up_referral_with_a_refusal_and_a_reassignment() {
    let dir = temp_dir();
    let d = dir.path();
    admin(d, &["institution", "add", "--name", "市第一人民医院"]);
    admin(
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
    admin(
        d,
        &[
            "institution",
            "add",
            "--name",
            "城西乡镇卫生院",
            "--kind",
            "clinic",
            "--parent",
            "1",
        ],
    );
    let people = [
        new_user(d, "clinic.doc", "doctor", "2", ""),
        new_user(d, "other.clinic", "doctor", "3", ""),
        new_user(d, "referral.desk", "referral_staff", "1", ""),
        new_user(d, "hosp.one", "doctor", "1", ""),
        new_user(d, "hosp.two", "doctor", "1", ""),
    ];
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let t: Vec<String> = people.iter().map(|p| activate(port, p)).collect();
    let (clinic, other, desk, h1, h2) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
    let id_of = |token: &str| {
        call(port, "GET", "/api/v1/me", token, &[], None).json()["id"]
            .as_i64()
            .expect("an id")
    };
    let (h1_id, h2_id) = (id_of(h1), id_of(h2));

    let patient = call(
        port,
        "POST",
        "/api/v1/patients",
        clinic,
        &[],
        Some(json!({ "name": "孙七", "sex": "F", "birth_date": "1948-03-12" })),
    )
    .json()["id"]
        .as_i64()
        .expect("patient id");
    let new = |grant_hours: i64| {
        call(
            port,
            "POST",
            "/api/v1/referrals",
            clinic,
            &[],
            Some(
                json!({ "patient": patient, "direction": "up", "reason": "慢阻肺急性加重，需上级医院住院治疗",
                "diagnosis": "J44.1", "grant_hours": grant_hours, "studies": ["1.2.840.99.7.1"] }),
            ),
        )
    };
    assert_eq!(new(0).json()["field"], "grant_hours");
    let r = new(72);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_i64().expect("referral id");
    let url = format!("/api/v1/referrals/{id}");
    let actions = format!("{url}/actions");
    let act = |token: &str, version: i64, action: Value| {
        let tag = format!("\"{version}\"");
        call(
            port,
            "POST",
            &actions,
            token,
            &[("If-Match", &tag)],
            Some(action),
        )
    };
    let patient_url = format!("/api/v1/patients/{patient}");

    assert_eq!(act(clinic, 1, json!({ "action": "submit" })).status, 200);
    assert_eq!(act(desk, 2, json!({ "action": "qc_pass" })).status, 200);
    // Before assignment the hospital's doctors see neither the referral nor the patient.
    assert_eq!(call(port, "GET", &url, h1, &[], None).status, 404);
    assert_eq!(call(port, "GET", &patient_url, h1, &[], None).status, 404);
    let assign = |doctor: i64, version: i64| {
        act(
            desk,
            version,
            json!({ "action": "assign", "institution": 1, "department": 7, "doctor": doctor }),
        )
    };
    assert_eq!(assign(h2_id, 3).status, 200);
    // Named: only hosp.two answers; hosp.one may look (same institution) but not accept.
    assert_eq!(call(port, "GET", &url, h1, &[], None).status, 200);
    assert_eq!(act(h1, 4, json!({ "action": "accept" })).status, 403);
    let refused = act(
        h2,
        4,
        json!({ "action": "refuse", "feedback": "本科室床位已满" }),
    );
    assert_eq!(refused.status, 200, "{}", refused.body);
    let stale = assign(h1_id, 4);
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["current"]["state"], "refused");
    let slip = format!("{url}/admission-slip.pdf");
    assert_eq!(
        call(port, "GET", &slip, desk, &[], None).json()["code"],
        "not_accepted"
    );
    assert_eq!(assign(h1_id, 5).status, 200);
    // The grant: the receiving doctor reads the patient's record; another clinic never does.
    assert_eq!(
        call(port, "GET", &patient_url, h1, &[], None).json()["name"],
        "孙七"
    );
    assert_eq!(
        call(port, "GET", &patient_url, other, &[], None).status,
        404
    );
    assert_eq!(call(port, "GET", &url, other, &[], None).status, 404);
    // The shared images: a viewer token for the receiving doctor, ending with the grant.
    let token_url = format!("{url}/view-token");
    let t1 = call(port, "POST", &token_url, h1, &[], None);
    assert_eq!(t1.status, 200, "{}", t1.body);
    let submitted_at =
        done_history_at(&call(port, "GET", &url, clinic, &[], None).json(), "submit");
    assert!(t1.json()["expires_at"].as_i64().unwrap() * 1000 <= submitted_at + 72 * 3_600_000);
    assert_eq!(call(port, "POST", &token_url, other, &[], None).status, 404);
    for (version, action) in [(6, "accept"), (7, "arrive"), (8, "close")] {
        let r = act(h1, version, json!({ "action": action }));
        assert_eq!(r.status, 200, "{action}: {}", r.body);
    }
    let pdf = call(port, "GET", &slip, clinic, &[], None);
    assert_eq!(pdf.status, 200, "{}", pdf.body);
    let text = e2e::pdf_text(&pdf.bytes);
    for wanted in [
        "双向转诊入院通知单",
        "孙七",
        "城东社区卫生服务中心",
        "市第一人民医院",
        "hosp.one",
        "J44.1",
    ] {
        assert!(text.contains(wanted), "{wanted} in:\n{text}");
    }
    let done = call(port, "GET", &url, clinic, &[], None).json();
    assert_eq!(done["state"], "closed");
    let feedback = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|e| e["action"] == "refuse")
        .expect("the refusal is kept")
        .clone();
    assert_eq!(feedback["why"], "本科室床位已满");
    // The clinic doctor was told of the refusal and the acceptance, in-app.
    let unread = call(port, "GET", "/api/v1/notifications", clinic, &[], None).json();
    let events: Vec<&str> = unread["unread"]
        .as_array()
        .expect("unread")
        .iter()
        .filter_map(|n| n["event"].as_str())
        .collect();
    assert!(
        events.contains(&"referral_refused") && events.contains(&"referral_accepted"),
        "{events:?}"
    );
    let lists = |token: &str| {
        call(port, "GET", "/api/v1/referrals", token, &[], None).json()["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(
        (lists(clinic), lists(h1), lists(desk), lists(other)),
        (1, 1, 1, 0)
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// When the action `name` happened, from a record's history.
fn done_history_at(record: &Value, name: &str) -> i64 {
    record["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["action"] == name))
        .and_then(|e| e["at"].as_i64())
        .expect("the action in the history")
}
