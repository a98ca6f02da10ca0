//! The registry against the real `appliance` binary: departments by the institution's
//! administrator, expert profiles and specialties, bookable slots and booking one for an
//! appointment-mode consultation (a slot is booked once), patients at two clinics linked by
//! their identity card number into one master record (each clinic still sees only its own),
//! and favourite patients.

use std::time::Duration;

use e2e::api::{activate, admin, call, new_user};
use e2e::{Ports, temp_dir};
use serde_json::{Value, json};

#[test]
fn departments_experts_slots_masters_and_favourites() {
    let dir = temp_dir();
    let d = dir.path();
    admin(d, &["institution", "add", "--name", "市第一人民医院"]);
    for clinic in ["城东社区卫生服务中心", "城西乡镇卫生院"] {
        admin(
            d,
            &[
                "institution",
                "add",
                "--name",
                clinic,
                "--kind",
                "clinic",
                "--parent",
                "1",
            ],
        );
    }
    let people = [
        new_user(d, "hosp.admin", "institution_admin", "1", ""),
        new_user(d, "expert.li", "expert", "1", ""),
        new_user(d, "centre", "coordinator", "1", ""),
        new_user(d, "doctor.a", "doctor", "2", ""),
        new_user(d, "doctor.b", "doctor", "3", ""),
    ];
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let t: Vec<String> = people.iter().map(|p| activate(port, p)).collect();
    let (inst, expert, centre, doc_a, doc_b) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
    e2e::totp::enroll(port, inst);
    let go = |method: &str, path: &str, token: &str, body: Option<Value>| {
        call(port, method, path, token, &[], body)
    };
    let expert_id = go("GET", "/api/v1/me", expert, None).json()["id"]
        .as_i64()
        .unwrap();

    // The tree, and departments.
    let tree = go("GET", "/api/v1/institutions", doc_a, None).json();
    assert_eq!(tree["items"][2]["parent"], 1, "{tree}");
    let dept = go(
        "POST",
        "/api/v1/institutions/1/departments",
        inst,
        Some(json!({ "name": "神经内科" })),
    );
    assert_eq!(dept.status, 201, "{}", dept.body);
    let dept = dept.json()["id"].as_i64().unwrap();
    assert_eq!(
        go(
            "POST",
            "/api/v1/institutions/1/departments",
            inst,
            Some(json!({ "name": "神经内科" }))
        )
        .status,
        409
    );
    assert_eq!(
        go(
            "POST",
            "/api/v1/institutions/2/departments",
            inst,
            Some(json!({ "name": "全科" }))
        )
        .status,
        403
    );

    // The expert's profile: by the institution's administrator, then by the expert.
    let profile = json!({ "department": dept, "title": "主任医师", "specialties": ["卒中", "神经影像"],
                          "profile": "从事脑血管病诊治二十年" });
    assert_eq!(
        go(
            "PUT",
            &format!("/api/v1/experts/{expert_id}"),
            doc_a,
            Some(profile.clone())
        )
        .status,
        403
    );
    assert_eq!(
        go(
            "PUT",
            &format!("/api/v1/experts/{expert_id}"),
            inst,
            Some(profile.clone())
        )
        .status,
        204
    );
    let mut own = profile.clone();
    own["profile"] = json!("擅长急性缺血性卒中的影像评估");
    assert_eq!(
        go(
            "PUT",
            &format!("/api/v1/experts/{expert_id}"),
            expert,
            Some(own)
        )
        .status,
        204
    );
    let found = go("GET", "/api/v1/experts?specialty=卒中", doc_a, None).json();
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found["items"][0]["title"], "主任医师");
    assert_eq!(
        go("GET", "/api/v1/experts?specialty=骨科", doc_a, None).json()["items"],
        json!([])
    );

    // Slots: three half hours an hour from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let slots_url = format!("/api/v1/experts/{expert_id}/slots");
    let r = go(
        "POST",
        &slots_url,
        expert,
        Some(json!({ "starts_at": now + 3_600_000, "minutes": 30, "count": 3 })),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first_slot = r.json()["ids"][0].as_i64().unwrap();
    let last_slot = r.json()["ids"][2].as_i64().unwrap();
    assert_eq!(
        go(
            "POST",
            &slots_url,
            doc_a,
            Some(json!({ "starts_at": now + 7_200_000, "minutes": 30 }))
        )
        .status,
        403
    );
    assert_eq!(
        go(
            "POST",
            &slots_url,
            expert,
            Some(json!({ "starts_at": now - 1000, "minutes": 30 }))
        )
        .json()["field"],
        "starts_at"
    );
    assert_eq!(
        go("GET", &format!("{slots_url}?free=true"), doc_a, None).json()["items"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // The same person registered at both clinics: one master record.
    let patient = |token: &str, id_number: &str, birth: &str| {
        go(
            "POST",
            "/api/v1/patients",
            token,
            Some(json!({ "name": "郑十", "sex": "F",
            "birth_date": birth, "id_number": id_number, "record_number": "MZ-0001" })),
        )
    };
    assert_eq!(
        patient(doc_a, "110105194912310021", "1949-12-31").json()["field"],
        "id_number"
    );
    assert_eq!(
        patient(doc_a, "11010519491231002X", "1950-01-01").json()["field"],
        "id_number"
    );
    let pa = patient(doc_a, "11010519491231002x", "1949-12-31").json();
    let pb = patient(doc_b, "11010519491231002X", "1949-12-31").json();
    assert_eq!(pa["master"], pb["master"], "{pa} {pb}");
    let (pa, pb) = (pa["id"].as_i64().unwrap(), pb["id"].as_i64().unwrap());
    let linked =
        |token: &str, p: i64| go("GET", &format!("/api/v1/patients/{p}/linked"), token, None);
    assert_eq!(
        linked(doc_a, pa).json()["items"],
        json!([]),
        "clinic B's record stays hidden"
    );
    assert_eq!(linked(doc_a, pb).status, 404);
    let seen = linked(centre, pa).json();
    assert_eq!(seen["items"][0]["id"], pb, "{seen}");

    // Booking: an appointment-mode consultation takes the slot and is scheduled by it.
    let new_consultation = || {
        let c = go(
            "POST",
            "/api/v1/consultations",
            doc_a,
            Some(json!({ "patient": pa, "kind": "remote",
            "mode": "appointment", "reason": "言语不清三小时", "question": "是否溶栓？", "diagnosis": "I63.9" })),
        );
        let id = c.json()["id"].as_i64().unwrap();
        let act = |token: &str, action: Value| {
            go(
                "POST",
                &format!("/api/v1/consultations/{id}/actions"),
                token,
                Some(action),
            )
        };
        assert_eq!(act(doc_a, json!({ "action": "submit" })).status, 200);
        assert_eq!(act(centre, json!({ "action": "qc_pass" })).status, 200);
        id
    };
    let (one, two) = (new_consultation(), new_consultation());
    let book = |id: i64| {
        go(
            "POST",
            &format!("/api/v1/consultations/{id}/book"),
            centre,
            Some(json!({ "slot": first_slot, "room": "会诊室2" })),
        )
    };
    let r = book(one);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "scheduled");
    assert_eq!(r.json()["experts"], json!([expert_id]));
    assert_eq!(r.json()["scheduled_at"], now + 3_600_000);
    let again = book(two);
    assert_eq!(
        (again.status, again.json()["field"].clone()),
        (409, json!("slot"))
    );
    assert_eq!(
        go("GET", &format!("{slots_url}?free=true"), doc_a, None).json()["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // The expert now sees the consultation and its patient.
    assert_eq!(
        go("GET", &format!("/api/v1/patients/{pa}"), expert, None).status,
        200
    );

    // Search: by part of a name, identity card or record number, within what the user may
    // read; identity card numbers masked.
    let search = |token: &str, q: &str| {
        let q: String = url_encode(q);
        go("GET", &format!("/api/v1/patients?q={q}"), token, None)
    };
    let found = search(doc_a, "郑").json();
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found["items"][0]["id"], pa);
    assert_eq!(found["items"][0]["id_number_masked"], "110105********002X");
    assert_eq!(
        found["items"][0]["institution_name"],
        "城东社区卫生服务中心"
    );
    let by_card = search(doc_b, "11010519491231002x").json();
    assert_eq!(by_card["items"][0]["id"], pb, "{by_card}");
    assert_eq!(by_card["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        search(centre, "MZ-0001").json()["items"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "centre staff search the alliance"
    );
    assert_eq!(search(expert, "郑").json()["items"], json!([]));
    assert_eq!(
        search(doc_a, "%").json()["items"],
        json!([]),
        "% is a character"
    );
    assert_eq!(search(doc_a, " ").json()["field"], "q");
    assert_eq!(search(inst, "郑").status, 403);
    // Without imaging data, no studies (and no error).
    assert_eq!(
        go(
            "GET",
            &format!("/api/v1/patients/{pa}/studies"),
            doc_a,
            None
        )
        .json()["items"],
        json!([])
    );
    assert_eq!(
        go(
            "GET",
            &format!("/api/v1/patients/{pb}/studies"),
            doc_a,
            None
        )
        .status,
        404
    );
    let icd = go(
        "GET",
        &format!("/api/v1/icd10?q={}", url_encode("脑梗")),
        doc_a,
        None,
    )
    .json();
    assert_eq!(icd["items"][0]["code"], "I63.9", "{icd}");

    // A requested slot: free, the requested expert's, appointment mode only.
    let apply = |mode: &str, slot: i64| {
        go(
            "POST",
            "/api/v1/consultations",
            doc_a,
            Some(json!({ "patient": pa, "kind": "remote", "mode": mode,
                "requested_experts": [expert_id], "requested_slot": slot })),
        )
    };
    assert_eq!(
        apply("appointment", first_slot).json()["field"],
        "requested_slot"
    );
    assert_eq!(apply("named", last_slot).json()["field"], "requested_slot");
    assert_eq!(
        apply("appointment", 999_999).json()["field"],
        "requested_slot"
    );
    let r = apply("appointment", last_slot);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["requested_slot"], last_slot);

    // A referral may propose where it goes: a department of another institution.
    let refer = |proposal: Value| {
        let mut b = json!({ "patient": pa, "direction": "up", "reason": "需上级医院诊治" });
        if let (Some(b), Some(p)) = (b.as_object_mut(), proposal.as_object()) {
            b.extend(p.clone());
        }
        go("POST", "/api/v1/referrals", doc_a, Some(b))
    };
    let r = refer(json!({ "proposed_institution": 1, "proposed_department": dept }));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["proposed"], json!([1, dept]));
    for (proposal, field) in [
        (
            json!({ "proposed_institution": 2, "proposed_department": dept }),
            "proposed_institution",
        ),
        (
            json!({ "proposed_institution": 3, "proposed_department": dept }),
            "proposed_department",
        ),
        (
            json!({ "proposed_department": dept }),
            "proposed_institution",
        ),
        (json!({ "proposed_institution": 1 }), "proposed_department"),
    ] {
        assert_eq!(refer(proposal.clone()).json()["field"], field, "{proposal}");
    }

    // Favourites: only patients the user may read.
    assert_eq!(
        go("PUT", &format!("/api/v1/me/favourites/{pa}"), doc_a, None).status,
        204
    );
    assert_eq!(
        go("PUT", &format!("/api/v1/me/favourites/{pb}"), doc_a, None).status,
        404
    );
    assert_eq!(
        go("GET", "/api/v1/me/favourites", doc_a, None).json()["items"],
        json!([{ "id": pa, "name": "郑十" }])
    );
    assert_eq!(
        go(
            "DELETE",
            &format!("/api/v1/me/favourites/{pa}"),
            doc_a,
            None
        )
        .status,
        204
    );
    assert_eq!(
        go("GET", "/api/v1/me/favourites", doc_a, None).json()["items"],
        json!([])
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// `q` percent-encoded for a query string.
fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
