//! The consultation journey over HTTP against the real `appliance` binary and its SQLite file:
//! a clinic doctor registers a patient and applies; quality control rejects, the doctor fixes
//! and resubmits; two reviewers act at once (one wins, the other gets 409 with the current
//! state); the centre schedules an expert, who joins, reports and signs; the centre closes it.
//! Scoping: another clinic's doctor cannot see the patient or the consultation. Notices arrive
//! in-app and by SMS through a local gateway stub that records what it receives: while the
//! gateway is down they wait in the outbox, across a restart, and arrive once it is back.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::api::{activate, admin as cli, call, new_user as person};
use e2e::sms::SmsStub;
use e2e::{Daemon, Ports, request, temp_dir};
use serde_json::{Value, json};

fn start(dir: &Path, ports: &Ports, sms: u16) -> Daemon {
    let url = format!("notifications.sms_url=http://127.0.0.1:{sms}/sms");
    e2e::api::start(
        dir,
        ports,
        &[
            "--set",
            "notifications.sms_gateway=http-json",
            "--set",
            &url,
        ],
    )
}

#[test]
fn the_consultation_journey_with_scoping_concurrency_and_notices() {
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
    cli(
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
        person(d, "doctor.a", "doctor", "2", "13800000001"),
        person(d, "doctor.b", "doctor", "3", ""),
        person(d, "qc.one", "qc_reviewer", "1", ""),
        person(d, "qc.two", "qc_reviewer", "1", ""),
        person(d, "centre", "coordinator", "1", ""),
        person(d, "expert.w", "expert", "1", "13900000009"),
    ];
    let sms = SmsStub::start();
    let ports = Ports::free();
    let mut daemon = start(d, &ports, sms.port);
    let port = ports.http;
    let tokens: Vec<String> = people.iter().map(|p| activate(port, p)).collect();
    let [doctor_a, doctor_b, qc1, qc2, centre, expert] =
        [0, 1, 2, 3, 4, 5].map(|i| tokens[i].clone());
    let expert_id = call(port, "GET", "/api/v1/me", &expert, &[], None).json()["id"]
        .as_i64()
        .unwrap();

    // The patient, with field errors named first.
    let bad = call(
        port,
        "POST",
        "/api/v1/patients",
        &doctor_a,
        &[],
        Some(json!({
        "name": "王五", "sex": "X", "birth_date": "1960-05-01" })),
    );
    assert_eq!(
        (bad.status, bad.json()["field"].clone()),
        (422, json!("sex"))
    );
    let bad = call(
        port,
        "POST",
        "/api/v1/patients",
        &doctor_a,
        &[],
        Some(json!({
        "name": "王五", "sex": "M", "birth_date": "1960-02-30" })),
    );
    assert_eq!(bad.json()["field"], "birth_date");
    let p = call(
        port,
        "POST",
        "/api/v1/patients",
        &doctor_a,
        &[],
        Some(json!({
        "name": "王五", "sex": "M", "birth_date": "1960-05-01", "phone": "13700000007" })),
    );
    assert_eq!(p.status, 201, "{}", p.body);
    let patient = p.json()["id"].as_i64().unwrap();
    let path = format!("/api/v1/patients/{patient}");
    assert_eq!(
        call(port, "GET", &path, &doctor_a, &[], None).json()["name"],
        "王五"
    );
    assert_eq!(
        call(port, "GET", &path, &doctor_b, &[], None).status,
        404,
        "another clinic"
    );
    assert_eq!(
        call(port, "GET", &path, &expert, &[], None).status,
        404,
        "not yet involved"
    );

    let c = call(
        port,
        "POST",
        "/api/v1/consultations",
        &doctor_a,
        &[],
        Some(json!({
        "patient": patient, "kind": "remote", "mode": "appointment",
        "reason": "反复头痛两周，CT 提示低密度灶", "question": "是否需要溶栓或手术？",
        "diagnosis": "headache" })),
    );
    assert_eq!(
        (c.status, c.json()["field"].clone()),
        (422, json!("diagnosis"))
    );
    let c = call(
        port,
        "POST",
        "/api/v1/consultations",
        &doctor_a,
        &[],
        Some(json!({
        "patient": patient, "kind": "remote", "mode": "appointment",
        "reason": "反复头痛两周，CT 提示低密度灶", "question": "是否需要溶栓或手术？" })),
    );
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.json()["id"].as_i64().unwrap();
    assert_eq!(c.header("etag"), Some("\"1\""));
    let url = format!("/api/v1/consultations/{id}");
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
    assert_eq!(call(port, "GET", &url, &doctor_b, &[], None).status, 404);

    // Submission names the missing diagnosis; this draft is withdrawn.
    let r = act(&doctor_a, 1, json!({ "action": "submit" }));
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (422, json!("diagnosis"))
    );
    let r = act(
        &doctor_a,
        1,
        json!({ "action": "cancel", "reason": "诊断未填写" }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = call(
        port,
        "POST",
        "/api/v1/consultations",
        &doctor_a,
        &[],
        Some(json!({
        "patient": patient, "kind": "remote", "mode": "appointment",
        "reason": "反复头痛两周，CT 提示低密度灶", "question": "是否需要溶栓或手术？",
        "diagnosis": "I63.9" })),
    );
    let id = c.json()["id"].as_i64().unwrap();
    let url = format!("/api/v1/consultations/{id}");
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

    assert_eq!(act(&doctor_a, 1, json!({ "action": "submit" })).status, 200);
    assert_eq!(
        act(
            &qc1,
            2,
            json!({ "action": "qc_reject", "reasons": ["缺少影像资料"] })
        )
        .status,
        200
    );
    // A stale version is a conflict, with the current state in the answer.
    let stale = act(&doctor_a, 2, json!({ "action": "submit" }));
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["current"]["state"], "rejected");
    assert_eq!(stale.json()["current"]["version"], 3);
    // The applicant fixes the application (stale versions refused here too), then resubmits.
    let revise = |version: i64, fields: Value| {
        let tag = format!("\"{version}\"");
        call(
            port,
            "PUT",
            &url,
            &doctor_a,
            &[("If-Match", &tag)],
            Some(fields),
        )
    };
    let fix = json!({ "urgency": "urgent", "speciality": "imaging",
        "attachments": [{ "kind": "study", "reference": "1.2.840.99.1", "title": "头颅 CT" }] });
    assert_eq!(revise(2, fix.clone()).status, 409);
    assert_eq!(
        revise(3, json!({ "speciality": "astrology" })).json()["field"],
        "speciality"
    );
    assert_eq!(
        call(port, "PUT", &url, &qc1, &[], Some(fix.clone())).status,
        403
    );
    let r = revise(3, fix);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["urgency"], "urgent");
    assert_eq!(
        r.json()["history"].as_array().unwrap().last().unwrap()["action"],
        "revise"
    );
    assert_eq!(act(&doctor_a, 4, json!({ "action": "submit" })).status, 200);
    assert_eq!(
        revise(5, json!({ "reason": "x" })).status,
        409,
        "submitted: no revisions"
    );

    // Two reviewers at once on version 5: one wins, the other gets 409 and the current state.
    let (a, b) = std::thread::scope(|s| {
        let one = s.spawn(|| act(&qc1, 5, json!({ "action": "qc_pass" })));
        let two = s.spawn(|| {
            act(
                &qc2,
                5,
                json!({ "action": "qc_reject", "reasons": ["图像不清"] }),
            )
        });
        (one.join().unwrap(), two.join().unwrap())
    });
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.body, b.body);
    let loser = if a.status == 409 { &a } else { &b };
    assert_eq!(loser.json()["current"]["version"], 6);
    let winner_state = call(port, "GET", &url, &centre, &[], None).json()["state"].clone();
    if winner_state == "rejected" {
        assert_eq!(act(&doctor_a, 6, json!({ "action": "submit" })).status, 200);
        assert_eq!(act(&qc1, 7, json!({ "action": "qc_pass" })).status, 200);
    }
    let mut version = call(port, "GET", &url, &centre, &[], None).json()["version"]
        .as_i64()
        .unwrap();
    assert_eq!(
        call(port, "GET", &url, &centre, &[], None).json()["state"],
        "qc_passed"
    );

    // Scheduled ten minutes from now: within the check-in window.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 600_000;
    // The expert's notification socket: the unread list now, the schedule when it happens.
    let expert_token = expert.clone();
    let (status, socket) = e2e::WebSocket::connect(
        port,
        &format!("/api/v1/notifications/ws?token={expert_token}"),
    );
    let mut socket = socket.unwrap_or_else(|| panic!("{status}"));
    let first: Value = serde_json::from_str(
        &socket
            .next_text(Duration::from_secs(10))
            .expect("the unread list"),
    )
    .unwrap();
    assert_eq!(first["type"], "unread");
    assert_eq!(
        e2e::WebSocket::connect(port, "/api/v1/notifications/ws?token=nope")
            .0
            .split_whitespace()
            .nth(1),
        Some("401")
    );
    let wrong_role = act(
        &doctor_a,
        version,
        json!({ "action": "schedule", "at": at, "experts": [expert_id], "room": "会诊室1" }),
    );
    assert_eq!(wrong_role.status, 403);
    let r = act(
        &centre,
        version,
        json!({ "action": "schedule", "at": at, "experts": [expert_id], "room": "会诊室1" }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    version += 1;
    let pushed: Value = serde_json::from_str(
        &socket
            .next_text(Duration::from_secs(10))
            .expect("a pushed notification"),
    )
    .unwrap();
    assert_eq!(
        (pushed["type"].clone(), pushed["event"].clone()),
        (json!("notification"), json!("consultation_scheduled")),
        "{pushed}"
    );
    // The video room: tokens the SFU will check with the appliance's public key.
    let public = e2e::get(port, "/api/v1/token-key").unwrap().json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = sfu::token::key(&public).expect("an Ed25519 key");
    let room =
        |token: &str| call(port, "POST", &format!("{url}/room-token"), token, &[], None).json();
    let now_secs = at as u64 / 1000;
    let claims = sfu::token::verify(room(&expert)["token"].as_str().unwrap(), &key, now_secs)
        .expect("verifies");
    assert_eq!(
        (claims.room.as_str(), claims.name.as_str(), claims.publish),
        (format!("consultation-{id}").as_str(), "expert.w", true)
    );
    let watcher = sfu::token::verify(room(&qc1)["token"].as_str().unwrap(), &key, now_secs)
        .expect("verifies");
    assert!(
        !watcher.publish && watcher.subscribe,
        "quality control only watches"
    );
    // The stack's SFU takes the appliance's room token: the expert joins the room. The link
    // opens the room page on the SFU.
    let answer = room(&expert);
    let room_token = answer["token"].as_str().unwrap().to_owned();
    let link = answer["room_url"].as_str().expect("room_url");
    let page_path = link
        .split_once("/room?")
        .map(|(_, q)| format!("/room?{q}"))
        .expect("a /room link");
    let page = e2e::get(ports.sfu_signalling, &page_path).expect("room page");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("视频会诊"), "the room page");
    let (status, joined) = e2e::WebSocket::connect(
        ports.sfu_signalling,
        &format!("/rooms/ws?token={room_token}"),
    );
    let welcome: Value = serde_json::from_str(
        &joined
            .unwrap_or_else(|| panic!("{status}"))
            .next_text(Duration::from_secs(10))
            .expect("welcome"),
    )
    .unwrap();
    assert_eq!(
        (welcome["type"].as_str(), welcome["room"].as_str()),
        (Some("joined"), Some(format!("consultation-{id}").as_str()))
    );
    assert_eq!(
        call(
            port,
            "POST",
            &format!("{url}/room-token"),
            &doctor_b,
            &[],
            None
        )
        .status,
        404
    );
    // Now the expert is involved: the patient and the consultation are visible to them.
    assert_eq!(call(port, "GET", &path, &expert, &[], None).status, 200);
    let unread = call(port, "GET", "/api/v1/notifications", &expert, &[], None).json();
    let note = unread["unread"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "consultation_scheduled")
        .expect("the expert is told in-app")
        .clone();
    assert!(
        note["message"].as_str().unwrap().contains("已安排"),
        "{note}"
    );
    let read = call(
        port,
        "POST",
        &format!("/api/v1/notifications/{}/read", note["id"]),
        &expert,
        &[],
        None,
    );
    assert_eq!(read.status, 204);
    let r = act(&expert, version, json!({ "action": "check_in" }));
    assert_eq!(r.status, 200, "{}", r.body);
    version += 1;
    // The report: written from a template, signed only through its endpoint, which needs
    // every section and the expert's signature image.
    let direct = act(&expert, version, json!({ "action": "sign" }));
    assert_eq!(direct.json()["code"], "use_endpoint");
    // Templates are configurable by the centre: a stroke MDT template joins the built-in ones.
    let template = json!({ "key": "stroke_mdt", "title": "卒中多学科会诊报告",
        "sections": [{ "key": "imaging", "title": "影像评估" }, { "key": "plan", "title": "治疗方案" }] });
    assert_eq!(
        call(
            port,
            "POST",
            "/api/v1/report-templates",
            &doctor_a,
            &[],
            Some(template.clone())
        )
        .status,
        403
    );
    assert_eq!(
        call(
            port,
            "POST",
            "/api/v1/report-templates",
            &centre,
            &[],
            Some(template.clone())
        )
        .status,
        201
    );
    assert_eq!(
        call(
            port,
            "POST",
            "/api/v1/report-templates",
            &centre,
            &[],
            Some(template)
        )
        .status,
        409
    );
    let listed = call(port, "GET", "/api/v1/report-templates", &expert, &[], None).json();
    assert!(
        listed["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "stroke_mdt" && t["sections"][1]["title"] == "治疗方案"),
        "{listed}"
    );
    let report = format!("{url}/report");
    let save = |sections: Value| {
        call(
            port,
            "PUT",
            &report,
            &expert,
            &[],
            Some(json!({ "template": "imaging", "sections": sections })),
        )
    };
    assert_eq!(save(json!({ "colour": "x" })).json()["field"], "sections");
    let r = save(json!({ "findings": "左侧基底节区低密度灶", "impression": "急性脑梗死" }));
    assert_eq!(r.status, 200, "{}", r.body);
    version += 1;
    let sign = || call(port, "POST", &format!("{report}/sign"), &expert, &[], None);
    assert_eq!(sign().json()["field"], "sections", "advice is empty");
    assert_eq!(save(json!({ "advice": "建议溶栓评估" })).status, 200);
    version += 1;
    assert_eq!(sign().json()["field"], "signature");
    let png = Command::new("python3")
        .args(["-c", "import io, sys, PIL.Image as I\nb = io.BytesIO(); I.new('L', (160, 48), 255).save(b, 'PNG'); sys.stdout.buffer.write(b.getvalue())"])
        .output()
        .expect("python3 pillow");
    let auth = format!("Bearer {expert}");
    let up = request(
        port,
        "PUT",
        "/api/v1/me/signature",
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        &png.stdout,
    )
    .expect("upload");
    assert_eq!(up.status, 204, "{}", up.body);
    let gif = request(
        port,
        "PUT",
        "/api/v1/me/signature",
        &[("Authorization", &auth), ("Content-Type", "image/gif")],
        b"GIF89a",
    )
    .expect("upload");
    assert_eq!(gif.json()["field"], "signature");
    let r = sign();
    assert_eq!(r.status, 200, "{}", r.body);
    version += 1;
    let first = call(port, "GET", &report, &doctor_a, &[], None).json();
    assert_eq!(first["signed"]["by"], expert_id);
    assert_eq!(first["sections"]["impression"], "急性脑梗死");
    let v = call(
        port,
        "GET",
        &format!("{report}/verify"),
        &doctor_a,
        &[],
        None,
    )
    .json();
    assert_eq!(
        (&v["intact"], &v["sm2_signature_valid"], &v["seal_alg"]),
        (&json!(true), &json!(true), &json!("sm3")),
        "{v}"
    );
    // The signed report as a bundle anyone checks without the appliance: openssl verifies its
    // SM2 signature and certificate, and `appliance report verify` agrees.
    let zip = call(
        port,
        "GET",
        &format!("{report}/signed.zip"),
        &doctor_a,
        &[],
        None,
    );
    assert_eq!(zip.status, 200, "{}", zip.body);
    check_signed_bundle(d, &zip.bytes);
    // Amending starts version 2 from version 1's text; version 1 stays as signed.
    assert_eq!(
        act(
            &expert,
            version,
            json!({ "action": "amend", "reason": "补充随访建议" })
        )
        .status,
        200
    );
    version += 1;
    assert_eq!(
        save(json!({ "advice": "建议溶栓评估，一周后复查 MRI" })).status,
        200
    );
    version += 1;
    assert_eq!(sign().status, 200);
    version += 1;
    let second = call(port, "GET", &report, &doctor_a, &[], None).json();
    assert_eq!(
        (second["version"].clone(), second["versions"].clone()),
        (json!(2), json!([1, 2]))
    );
    assert_eq!(second["sections"]["findings"], "左侧基底节区低密度灶");
    let old = call(
        port,
        "GET",
        &format!("{report}?version=1"),
        &doctor_a,
        &[],
        None,
    )
    .json();
    assert_eq!(old["sections"]["advice"], "建议溶栓评估");
    assert_ne!(
        old["signed"]["content_sha256"],
        second["signed"]["content_sha256"]
    );
    // Printed: the PDF carries the Chinese text, the signer and the hashes, version by version.
    let pdf = call(
        port,
        "GET",
        &format!("{url}/report.pdf"),
        &doctor_a,
        &[],
        None,
    );
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert!(pdf.bytes.starts_with(b"%PDF-"));
    assert!(
        pdf.bytes.len() < 400_000,
        "the font is subset: {} bytes",
        pdf.bytes.len()
    );
    let text = e2e::pdf_text(&pdf.bytes);
    for wanted in [
        "远程影像会诊报告",
        "王五",
        "急性脑梗死",
        "一周后复查",
        "签名专家",
        "expert.w",
    ] {
        assert!(text.contains(wanted), "{wanted} in:\n{text}");
    }
    let compact: String = text.split_whitespace().collect();
    assert!(
        compact.contains(second["signed"]["content_sha256"].as_str().unwrap()),
        "{text}"
    );
    // The signature image is embedded (pdfimages lists it: 160 x 48, as uploaded).
    let pdf_file = d.join("report.pdf");
    std::fs::write(&pdf_file, &pdf.bytes).unwrap();
    let images = Command::new("pdfimages")
        .arg("-list")
        .arg(&pdf_file)
        .output()
        .expect("pdfimages");
    let listing = String::from_utf8_lossy(&images.stdout).into_owned();
    assert!(
        listing
            .lines()
            .skip(2)
            .any(|l| l.split_whitespace().nth(3) == Some("160")
                && l.split_whitespace().nth(4) == Some("48")),
        "{listing}"
    );
    let v1 = e2e::pdf_text(
        &call(
            port,
            "GET",
            &format!("{url}/report.pdf?version=1"),
            &doctor_a,
            &[],
            None,
        )
        .bytes,
    );
    assert!(
        v1.contains("建议溶栓评估") && !v1.contains("一周后复查"),
        "{v1}"
    );
    assert_eq!(
        call(
            port,
            "GET",
            &format!("{url}/report.pdf"),
            &doctor_b,
            &[],
            None
        )
        .status,
        404
    );
    // Behind the application's back: a signed version edited in the file no longer verifies.
    let db = d.join("data/appliance.db");
    let tamper = Command::new("python3")
        .args(["-c", "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10)\nc.execute('DROP TRIGGER reports_signed_are_final')\nc.execute(\"UPDATE reports SET content = replace(content, '急性', '陈旧性') WHERE version = 1\")\nc.commit()"])
        .arg(&db)
        .output()
        .expect("python3 sqlite3");
    assert!(
        tamper.status.success(),
        "{}",
        String::from_utf8_lossy(&tamper.stderr)
    );
    let v = call(
        port,
        "GET",
        &format!("{report}/verify?version=1"),
        &doctor_a,
        &[],
        None,
    )
    .json();
    assert_eq!(
        (v["intact"].clone(), v["content_matches"].clone()),
        (json!(false), json!(false)),
        "{v}"
    );
    assert_eq!(
        act(&centre, version, json!({ "action": "close" })).status,
        200
    );
    let done = call(port, "GET", &url, &doctor_a, &[], None).json();
    assert_eq!(done["state"], "closed");
    let history: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(history.last(), Some(&"closed"));
    // Lists are scoped too.
    let mine = call(port, "GET", "/api/v1/consultations", &doctor_b, &[], None).json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 0);
    let all = call(
        port,
        "GET",
        "/api/v1/consultations?state=closed",
        &centre,
        &[],
        None,
    )
    .json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    // Statistics: the centre counts by institution and outcome, as JSON, CSV and XLSX (read
    // back by openpyxl); a doctor may not.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let date = |days: u64| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import datetime,sys; print(datetime.date.fromordinal(719163 + int(sys.argv[1])))",
                &days.to_string(),
            ])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let range = format!("from={}&to={}", date(today - 1), date(today + 1));
    let stats = |token: &str, format: &str| {
        call(
            port,
            "GET",
            &format!(
                "/api/v1/statistics?kind=consultation&by=institution,outcome&{range}&format={format}"
            ),
            token,
            &[],
            None,
        )
    };
    assert_eq!(stats(&doctor_a, "json").status, 403);
    let j = stats(&centre, "json").json();
    assert_eq!(j["total"], 2, "{j}");
    assert_eq!(
        j["rows"],
        json!([
            { "key": ["城东社区卫生服务中心", "cancelled"], "count": 1 },
            { "key": ["城东社区卫生服务中心", "closed"], "count": 1 },
        ])
    );
    let c = stats(&centre, "csv");
    assert!(
        c.header("content-type")
            .is_some_and(|t| t.starts_with("text/csv"))
    );
    assert!(
        c.body.contains("城东社区卫生服务中心,closed,1"),
        "{}",
        c.body
    );
    let x = stats(&centre, "xlsx");
    assert_eq!(x.status, 200);
    let xlsx = d.join("stats.xlsx");
    std::fs::write(&xlsx, &x.bytes).unwrap();
    let read = Command::new("python3")
        .args(["-c", "import openpyxl, sys\nws = openpyxl.load_workbook(sys.argv[1]).active\nfor row in ws.iter_rows(values_only=True): print('|'.join(str(v) for v in row))"])
        .arg(&xlsx)
        .output()
        .expect("python3 openpyxl");
    let sheet = String::from_utf8_lossy(&read.stdout).into_owned();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(
        sheet.lines().collect::<Vec<_>>(),
        [
            "institution|outcome|count",
            "城东社区卫生服务中心|cancelled|1",
            "城东社区卫生服务中心|closed|1",
        ]
    );

    // The gateway has been down all along: nothing was delivered, everything waits. A restart
    // keeps it; once the gateway is back, every message arrives.
    assert!(sms.received.lock().unwrap().is_empty());
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
    sms.down.store(false, Ordering::SeqCst);
    let mut daemon = start(d, &ports, sms.port);
    assert_eq!(
        call(port, "GET", &url, &centre, &[], None).json()["state"],
        "closed",
        "kept across the restart"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = |got: &[Value]| {
        let to = |phone: &str, text: &str| {
            got.iter().any(|m| {
                m["phone"] == phone && m["message"].as_str().is_some_and(|t| t.contains(text))
            })
        };
        // The expert and the patient are told of the schedule; the applicant of the
        // rejection and of the signed report.
        to("13900000009", "已安排")
            && to("13700000007", "已安排")
            && to("13800000001", "未通过审核")
            && to("13800000001", "报告已签发")
    };
    while !wanted(&sms.received.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "delivered: {:?}",
            sms.received.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = sms.received.lock().unwrap().clone();
    assert!(
        got.iter()
            .all(|m| m["message"].as_str().unwrap().starts_with('【')),
        "the template: {got:?}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let verify = cli(d, &["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");
}

/// Checks a signed-report bundle as an outside party would (docs/security.md): unzipped by
/// Python, the content's SM3 and the SM2 signature by openssl, the certificate against the
/// appliance's CA by `openssl verify`; then `appliance report verify` accepts it and refuses
/// copies with a changed content or signature.
fn check_signed_bundle(dir: &Path, zip: &[u8]) {
    let out = dir.join("bundle");
    std::fs::create_dir_all(&out).expect("bundle file");
    let bundle = out.join("report-signed.zip");
    std::fs::write(&bundle, zip).expect("bundle file");
    let run = |program: &str, args: &[&str]| {
        let o = Command::new(program)
            .current_dir(&out)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, text) = run(
        "python3",
        &["-m", "zipfile", "-e", "report-signed.zip", "."],
    );
    assert!(ok, "{text}");
    let statement = std::fs::read_to_string(out.join("statement.txt")).expect("bundle file");
    let (ok, digest) = run("openssl", &["dgst", "-sm3", "-r", "content.json"]);
    assert!(ok, "{digest}");
    let sm3 = digest.split_whitespace().next().expect("bundle file");
    assert!(
        statement.contains(&format!("content-sm3: {sm3}\n")),
        "{statement} vs {digest}"
    );
    let (ok, pubkey) = run(
        "openssl",
        &["x509", "-in", "signer.pem", "-pubkey", "-noout"],
    );
    assert!(ok, "{pubkey}");
    std::fs::write(out.join("signer-pub.pem"), pubkey).expect("bundle file");
    let verify = [
        "dgst",
        "-sm3",
        "-verify",
        "signer-pub.pem",
        "-sigopt",
        "distid:1234567812345678",
        "-signature",
        "statement.sig",
        "statement.txt",
    ];
    let (ok, text) = run("openssl", &verify);
    assert!(ok && text.contains("Verified OK"), "{text}");
    let ca = dir.join("data/tls/ca.pem");
    let ca = ca.to_str().expect("bundle file");
    let (ok, text) = run("openssl", &["verify", "-CAfile", ca, "signer.pem"]);
    assert!(ok && text.contains("signer.pem: OK"), "{text}");
    // A changed statement fails openssl's check.
    std::fs::write(
        out.join("statement.txt"),
        statement.replace("version: 1", "version: 9"),
    )
    .expect("bundle file");
    let (ok, text) = run("openssl", &verify);
    assert!(!ok && !text.contains("Verified OK"), "{text}");

    let appliance = e2e::bin("appliance");
    let appliance = appliance.to_str().expect("bundle file");
    let bundle_arg = bundle.to_str().expect("bundle file");
    let (ok, text) = run(appliance, &["report", "verify", bundle_arg, "--ca", ca]);
    assert!(
        ok && text.contains("certificate issued by the given CA"),
        "{text}"
    );
    assert!(text.contains(&format!("content-sm3: {sm3}")), "{text}");
    // Copies with one file changed are refused, each naming what failed.
    for (file, change, why) in [
        (
            "content.json",
            "{\"sections\":{}}",
            "content.json does not match",
        ),
        ("statement.sig", "0", "not a valid SM2 signature"),
    ] {
        let script = format!(
            "import zipfile\nsrc = zipfile.ZipFile('report-signed.zip')\n\
             dst = zipfile.ZipFile('changed.zip', 'w')\n\
             for n in src.namelist():\n    \
             dst.writestr(n, {change:?} if n == {file:?} else src.read(n))\ndst.close()\n"
        );
        let (ok, text) = run("python3", &["-c", &script]);
        assert!(ok, "{text}");
        let (ok, text) = run(appliance, &["report", "verify", "changed.zip"]);
        assert!(!ok && text.contains(why), "{file}: {text}");
    }
}

/// The status line imaging answers to a WebSocket handshake on `path`.
fn websocket_status(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect imaging");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("status line");
    line.trim().to_owned()
}

/// The appliance signs viewer tokens with its own key, which the stack hands to imaging: a
/// token for a consultation's studies opens imaging's viewer session; an altered one does not.
#[test]
fn view_tokens_from_the_appliance_open_imaging_sessions() {
    let dir = temp_dir();
    let d = dir.path();
    cli(
        d,
        &[
            "institution",
            "add",
            "--name",
            "城东社区卫生服务中心",
            "--kind",
            "clinic",
        ],
    );
    cli(
        d,
        &[
            "institution",
            "add",
            "--name",
            "城西乡镇卫生院",
            "--kind",
            "clinic",
        ],
    );
    let a = person(d, "doctor.a", "doctor", "1", "");
    let b = person(d, "doctor.b", "doctor", "2", "");
    let sms = SmsStub::start();
    let ports = Ports::free();
    let mut daemon = start(d, &ports, sms.port);
    let port = ports.http;
    let (doctor_a, doctor_b) = (activate(port, &a), activate(port, &b));
    let patient = call(
        port,
        "POST",
        "/api/v1/patients",
        &doctor_a,
        &[],
        Some(json!({
        "name": "赵六", "sex": "F", "birth_date": "1975-11-02" })),
    )
    .json()["id"]
        .clone();
    let new = |studies: Value| {
        call(
            port,
            "POST",
            "/api/v1/consultations",
            &doctor_a,
            &[],
            Some(json!({
            "patient": patient, "kind": "remote", "mode": "appointment", "studies": studies })),
        )
    };
    assert_eq!(new(json!(["1.2.x"])).json()["field"], "studies");
    let with = new(json!(["1.3.6.1.4.1.5962.99.1.1"])).json()["id"]
        .as_i64()
        .unwrap();
    let without = new(json!([])).json()["id"].as_i64().unwrap();
    let token = |id: i64, who: &str| {
        call(
            port,
            "POST",
            &format!("/api/v1/consultations/{id}/view-token"),
            who,
            &[],
            None,
        )
    };
    assert_eq!(token(without, &doctor_a).json()["code"], "no_studies");
    let early = call(
        port,
        "POST",
        &format!("/api/v1/consultations/{without}/room-token"),
        &doctor_a,
        &[],
        None,
    );
    assert_eq!(
        (early.status, early.json()["code"].clone()),
        (409, json!("no_room"))
    );
    assert_eq!(token(with, &doctor_b).status, 404, "another clinic");
    let r = token(with, &doctor_a);
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json()["token"].as_str().unwrap().to_owned();
    assert!(r.json()["viewer_url"].as_str().unwrap().contains(&t));
    let path = |t: &str| format!("/view/ws?token={t}&session=consultation-{with}");
    assert!(
        websocket_status(ports.imaging_http, &path(&t)).contains(" 101 "),
        "the signed token opens a session"
    );
    let mut forged = t.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(websocket_status(ports.imaging_http, &path(&forged)).contains(" 401 "));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
    // The key is kept, private, for the next start.
    let key = d.join("data/keys/token-signing.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
