//! The three separated administrators against the real `appliance` binary: the security
//! administrator manages accounts (create, unlock, reset, disable) but reads no patient and no
//! audit record; an institution administrator manages only its own institution's
//! non-administrators; the audit administrator reads and verifies the trail, in which every one
//! of those actions appears, and creates no account.

use std::time::Duration;

use e2e::api::{activate, admin, call, new_user};
use e2e::{Ports, request, temp_dir};
use serde_json::{Value, json};

fn login(port: u16, user: &str, password: &str) -> u16 {
    request(
        port,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        json!({ "login": user, "password": password })
            .to_string()
            .as_bytes(),
    )
    .expect("login")
    .status
}

#[test]
fn separated_administrators() {
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
    let people = [
        new_user(d, "sec.admin", "security_admin", "1", ""),
        new_user(d, "audit.admin", "audit_admin", "1", ""),
        new_user(d, "clinic.admin", "institution_admin", "2", ""),
        new_user(d, "clinic.doc", "doctor", "2", ""),
        new_user(d, "sys.admin", "system_admin", "1", ""),
    ];
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let t: Vec<String> = people.iter().map(|p| activate(port, p)).collect();
    let (sec, aud, inst, doc, sys) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
    // Administrators work only after setting up a second factor.
    let blocked = call(port, "GET", "/api/v1/users", sec, &[], None);
    assert_eq!(
        (blocked.status, blocked.json()["code"].clone()),
        (403, json!("totp_enrollment_required"))
    );
    for token in [sec, aud, inst, sys] {
        e2e::totp::enroll(port, token);
    }
    // The SFU's admin API is the system administrator's: its token verifies as one.
    assert_eq!(
        call(port, "POST", "/api/v1/sfu/admin-token", sec, &[], None).status,
        403
    );
    let sfu_admin = call(port, "POST", "/api/v1/sfu/admin-token", sys, &[], None);
    assert_eq!(sfu_admin.status, 200, "{}", sfu_admin.body);
    let public = e2e::get(port, "/api/v1/token-key").unwrap().json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = sfu::token::key(&public).unwrap();
    let claims = sfu::token::verify_admin(sfu_admin.json()["token"].as_str().unwrap(), &key, 1)
        .expect("an SFU admin token");
    assert_eq!(claims.sub, "sys.admin");
    let listed = request(
        ports.sfu_signalling,
        "GET",
        "/admin/rooms",
        &[(
            "Authorization",
            &format!("Bearer {}", sfu_admin.json()["token"].as_str().unwrap()),
        )],
        &[],
    )
    .unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);

    let create = |token: &str, login: &str, role: &str, institution: i64| {
        call(
            port,
            "POST",
            "/api/v1/users",
            token,
            &[],
            Some(json!({ "login": login, "display_name": login, "role": role,
                         "institution": institution })),
        )
    };
    let r = create(sec, "new.doc", "doctor", 2);
    assert_eq!(r.status, 201, "{}", r.body);
    let new_doc_id = r.json()["id"].as_i64().expect("id");
    assert_eq!(create(inst, "clinic.nurse", "doctor", 2).status, 201);
    assert_eq!(
        create(inst, "hospital.doc", "doctor", 1).status,
        403,
        "another institution"
    );
    assert_eq!(
        create(inst, "rogue.admin", "security_admin", 2).status,
        403,
        "an administrator"
    );
    assert_eq!(create(doc, "friend", "doctor", 2).status, 403);
    assert_eq!(create(aud, "friend", "doctor", 2).status, 403);
    assert_eq!(create(sec, "new.doc", "doctor", 2).status, 409, "taken");
    let bad = create(sec, "x", "doctor", 2);
    assert_eq!(bad.json()["field"], "login");
    // The institution administrator lists only its institution.
    let listed = call(port, "GET", "/api/v1/users", inst, &[], None).json();
    let institutions: Vec<i64> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["institution"].as_i64())
        .collect();
    assert!(
        !institutions.is_empty() && institutions.iter().all(|&i| i == 2),
        "{listed}"
    );

    // Lockout, then the security administrator unlocks.
    for _ in 0..5 {
        assert_eq!(login(port, "clinic.doc", "Wrong-2026"), 401);
    }
    assert_eq!(login(port, "clinic.doc", "Consult-2026"), 423);
    let doc_id = call(port, "GET", "/api/v1/users?institution=2", sec, &[], None).json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|u| u["login"] == "clinic.doc")
        .and_then(|u| u["id"].as_i64())
        .expect("clinic.doc");
    assert_eq!(
        call(
            port,
            "POST",
            &format!("/api/v1/users/{doc_id}/unlock"),
            aud,
            &[],
            None
        )
        .status,
        403
    );
    assert_eq!(
        call(
            port,
            "POST",
            &format!("/api/v1/users/{doc_id}/unlock"),
            sec,
            &[],
            None
        )
        .status,
        204
    );
    assert_eq!(login(port, "clinic.doc", "Consult-2026"), 200);

    // Administrators read no patients.
    let patient = call(
        port,
        "POST",
        "/api/v1/patients",
        doc,
        &[],
        Some(json!({ "name": "周八", "sex": "M", "birth_date": "1990-07-07" })),
    )
    .json()["id"]
        .clone();
    for token in [sec, aud, inst] {
        assert_eq!(
            call(
                port,
                "GET",
                &format!("/api/v1/patients/{patient}"),
                token,
                &[],
                None
            )
            .status,
            404
        );
    }

    // A reset ends the user's sessions; the new one-time password works once changed.
    let reset = call(
        port,
        "POST",
        &format!("/api/v1/users/{new_doc_id}/reset-password"),
        sec,
        &[],
        None,
    );
    assert_eq!(reset.status, 200, "{}", reset.body);
    let one_time = reset.json()["one_time_password"]
        .as_str()
        .expect("password")
        .to_owned();
    let token = activate(port, &("new.doc".to_owned(), one_time));
    assert_eq!(
        call(
            port,
            "POST",
            &format!("/api/v1/users/{new_doc_id}/disable"),
            sec,
            &[],
            None
        )
        .status,
        204
    );
    assert_eq!(
        call(port, "GET", "/api/v1/me", &token, &[], None).status,
        401
    );
    assert_eq!(login(port, "new.doc", "Consult-2026"), 401);

    // Lists of patient data are audited too.
    assert_eq!(
        call(port, "GET", "/api/v1/consultations", doc, &[], None).status,
        200
    );
    // The audit administrator, and only they, read the trail; it holds all of the above.
    assert_eq!(
        call(port, "GET", "/api/v1/audit", sec, &[], None).status,
        403
    );
    let trail = call(port, "GET", "/api/v1/audit?limit=1000", aud, &[], None).json();
    let actions: Vec<String> = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["action"].as_str().unwrap_or(""),
                r["result"].as_str().unwrap_or("")
            )
        })
        .collect();
    for wanted in [
        "create_user:ok",
        "create_user:denied",
        "unlock:ok",
        "reset_password:ok",
        "disable:ok",
        "login_failed:locked",
        "totp_enabled:ok",
        "list:ok",
    ] {
        assert!(
            actions.iter().any(|a| a == wanted),
            "{wanted} in {actions:?}"
        );
    }
    let unlocks = call(port, "GET", "/api/v1/audit?action=unlock", aud, &[], None).json();
    assert_eq!(unlocks["items"].as_array().map(Vec::len), Some(1));
    let v: Value = call(port, "GET", "/api/v1/audit/verify", aud, &[], None).json();
    assert_eq!(v["intact"], true, "{v}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
