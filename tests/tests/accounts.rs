//! Accounts and the audit trail against the real `appliance` binary and its SQLite file:
//! a user added from the command line gets a one-time password that must be changed before
//! anything else; the policy names what a weak password lacks; five wrong passwords lock the
//! account; logout ends the session; everything survives a restart; and `appliance audit
//! verify` passes on the untouched trail, then names the row someone edited in the file (and the
//! gap where one was deleted), with the table itself refusing both through SQL.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, Response, bin, request, temp_dir};
use serde_json::{Value, json};

fn appliance(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("appliance"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run appliance")
}

fn start(dir: &Path, ports: &Ports) -> Daemon {
    e2e::api::start(dir, ports, &[])
}

fn post(port: u16, path: &str, token: Option<&str>, body: &Value) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    request(port, "POST", path, &headers, body.to_string().as_bytes()).expect("request")
}

fn get_as(port: u16, path: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    request(port, "GET", path, &[("Authorization", &auth)], &[]).expect("request")
}

fn login(port: u16, user: &str, password: &str) -> Response {
    post(
        port,
        "/api/v1/auth/login",
        None,
        &json!({ "login": user, "password": password }),
    )
}

#[test]
fn accounts_lockout_and_a_tamper_evident_audit_trail() {
    let dir = temp_dir();
    let out = appliance(
        dir.path(),
        &["institution", "add", "--name", "市第一人民医院"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = appliance(
        dir.path(),
        &[
            "user",
            "add",
            "--login",
            "zhang.san",
            "--name",
            "张三",
            "--role",
            "doctor",
            "--institution",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let one_time = text
        .lines()
        .find_map(|l| l.split(": ").nth(1).filter(|_| l.contains("one-time")))
        .expect("a one-time password")
        .to_owned();
    // Bad input names its field and adds nothing.
    let bad = appliance(
        dir.path(),
        &[
            "user",
            "add",
            "--login",
            "li",
            "--name",
            "李四",
            "--role",
            "root",
            "--institution",
            "1",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("role"));

    let ports = Ports::free();
    let mut d = start(dir.path(), &ports);
    let port = ports.http;

    // First login: the password must change before anything else.
    let r = login(port, "zhang.san", &one_time);
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["user"]["must_change_password"], true);
    assert_eq!(r.json()["user"]["role"], "doctor");
    let me = get_as(port, "/api/v1/me", &token);
    assert_eq!(me.status, 200);
    let weak = post(
        port,
        "/api/v1/auth/password",
        Some(&token),
        &json!({ "old_password": one_time, "new_password": "password" }),
    );
    assert_eq!(weak.status, 422, "{}", weak.body);
    assert_eq!(weak.json()["field"], "new_password");
    let wrong_old = post(
        port,
        "/api/v1/auth/password",
        Some(&token),
        &json!({ "old_password": "nope", "new_password": "Consult-2026" }),
    );
    assert_eq!(wrong_old.json()["field"], "old_password");
    let ok = post(
        port,
        "/api/v1/auth/password",
        Some(&token),
        &json!({ "old_password": one_time, "new_password": "Consult-2026" }),
    );
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert_eq!(
        get_as(port, "/api/v1/me", &token).json()["must_change_password"],
        false
    );
    // The one-time password is gone; no token, a made-up token: 401.
    assert_eq!(login(port, "zhang.san", &one_time).status, 401);
    assert_eq!(
        request(port, "GET", "/api/v1/me", &[], &[]).unwrap().status,
        401
    );
    assert_eq!(get_as(port, "/api/v1/me", "00ff").status, 401);
    // Malformed bodies are named, never a crash.
    let r = request(
        port,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        b"{\"login\": 3",
    )
    .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["field"], "body");

    // Five wrong passwords lock the account, even against the right one (the stale one-time
    // password above was the first).
    let unknown = login(port, "nobody", "Consult-2026");
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["code"], "bad_credentials");
    for _ in 0..4 {
        assert_eq!(login(port, "zhang.san", "Wrong-2026").status, 401);
    }
    let locked = login(port, "zhang.san", "Consult-2026");
    assert_eq!(locked.status, 423, "{}", locked.body);
    assert_eq!(locked.json()["code"], "locked");

    // Logout ends the session.
    let out = post(port, "/api/v1/auth/logout", Some(&token), &json!({}));
    assert_eq!(out.status, 204);
    assert_eq!(get_as(port, "/api/v1/me", &token).status, 401);

    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
    // Restarted: still locked (the lock is stored), and the trail is intact.
    let mut d = start(dir.path(), &ports);
    assert_eq!(login(port, "zhang.san", "Consult-2026").status, 423);
    // Time, moved in the SQLite file (nobody waits 15 minutes in a test): the lock ends; a
    // session idle past the timeout (30 minutes) ends; a password older than 90 days must change.
    let db = dir.path().join("data/appliance.db");
    let shift = |sql: &str| {
        let out = Command::new("python3")
            .args(["-c", "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10)\nc.execute(sys.argv[2]); c.commit()"])
            .arg(&db)
            .arg(sql)
            .output()
            .expect("python3 sqlite3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    shift("UPDATE users SET locked_until = locked_until - 16 * 60000 WHERE login = 'zhang.san'");
    let r = login(port, "zhang.san", "Consult-2026");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["must_change_password"], false);
    let fresh = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(get_as(port, "/api/v1/me", &fresh).status, 200);
    shift("UPDATE sessions SET last_seen = last_seen - 31 * 60000");
    assert_eq!(
        get_as(port, "/api/v1/me", &fresh).status,
        401,
        "idle past the timeout"
    );
    shift(
        "UPDATE users SET password_changed_at = password_changed_at - 91 * 86400000 WHERE login = 'zhang.san'",
    );
    let r = login(port, "zhang.san", "Consult-2026");
    assert_eq!(
        r.json()["user"]["must_change_password"],
        true,
        "expired after 90 days"
    );
    let expired = r.json()["token"].as_str().unwrap().to_owned();
    let blocked = get_as(port, "/api/v1/consultations", &expired);
    assert_eq!(
        (blocked.status, blocked.json()["code"].clone()),
        (403, json!("password_change_required"))
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let verify = appliance(dir.path(), &["audit", "verify"]);
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{report}");
    assert!(report.contains("intact"), "{report}");
    let records: u64 = report
        .lines()
        .find_map(|l| {
            l.split(" records checked")
                .next()
                .filter(|_| l.contains("records checked"))
        })
        .and_then(|n| n.trim().parse().ok())
        .expect("a record count");
    // login, 2 password changes (1 refused), unknown, 5 failures, locked, logout, locked again.
    assert!(records >= 11, "{report}");

    // The table refuses edits through SQL; behind its back (triggers dropped), the chain
    // names the edited row and the deleted one.
    let db = dir.path().join("data/appliance.db");
    let sql = |script: &str| {
        Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\ntry:\n    c.executescript(sys.argv[2]); c.commit(); print('done')\nexcept Exception as e:\n    print('refused:', e)\n",
            ])
            .arg(&db)
            .arg(script)
            .output()
            .expect("python3 sqlite3")
    };
    let refused = sql("UPDATE audit_log SET result = 'ok' WHERE seq = 3;");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("cannot be changed"),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let done = sql(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
         UPDATE audit_log SET source = '10.9.9.9' WHERE seq = 4; \
         DELETE FROM audit_log WHERE seq = 7;",
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("done"));
    let verify = appliance(dir.path(), &["audit", "verify"]);
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(!verify.status.success(), "{report}");
    assert!(
        report.contains("row 4: its content does not match"),
        "{report}"
    );
    assert!(report.contains("rows 7 to 7 are missing"), "{report}");
    assert!(report.contains("row 8: its link"), "{report}");
}

/// An administrator must set up a TOTP second factor, and from then on logs in with the
/// authenticator's code; a wrong or replayed code is refused and counts as a failure.
#[test]
fn administrators_need_a_second_factor() {
    let dir = temp_dir();
    assert!(
        appliance(dir.path(), &["institution", "add", "--name", "市医院"])
            .status
            .success()
    );
    let out = appliance(
        dir.path(),
        &[
            "user",
            "add",
            "--login",
            "sec.admin",
            "--name",
            "安全管理员",
            "--role",
            "security_admin",
            "--institution",
            "1",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let one_time = text
        .lines()
        .find_map(|l| l.split(": ").nth(1).filter(|_| l.contains("one-time")))
        .expect("a one-time password")
        .to_owned();
    let ports = Ports::free();
    let mut d = start(dir.path(), &ports);
    let port = ports.http;

    let r = login(port, "sec.admin", &one_time);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["must_enroll_totp"], true);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let r = post(
        port,
        "/api/v1/auth/password",
        Some(&token),
        &json!({ "old_password": one_time, "new_password": "Security-2026" }),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let confirm = |code: &str| {
        post(
            port,
            "/api/v1/auth/totp/confirm",
            Some(&token),
            &json!({ "code": code }),
        )
    };
    assert_eq!(confirm("123456").json()["field"], "code", "before setup");
    let setup = post(port, "/api/v1/auth/totp/setup", Some(&token), &json!({}));
    assert_eq!(setup.status, 200, "{}", setup.body);
    let secret = setup.json()["secret"].as_str().unwrap().to_owned();
    assert!(
        setup.json()["otpauth_uri"]
            .as_str()
            .unwrap()
            .contains(&format!("secret={secret}"))
    );
    let good = e2e::totp::code(&secret, 0);
    let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
    let r = confirm(&wrong);
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["field"], "code");
    assert_eq!(confirm(&good).status, 204);
    let me = get_as(port, "/api/v1/me", &token).json();
    assert_eq!(
        (me["totp_enabled"].clone(), me["must_enroll_totp"].clone()),
        (json!(true), json!(false))
    );

    let with = |code: Option<&str>| {
        post(
            port,
            "/api/v1/auth/login",
            None,
            &json!({ "login": "sec.admin", "password": "Security-2026", "totp": code }),
        )
    };
    let r = with(None);
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (401, json!("totp_required"))
    );
    let r = with(Some(&wrong));
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (401, json!("bad_totp"))
    );
    assert_eq!(r.json()["field"], "totp");
    // The next step's code (within the one-step drift allowed), then the same code again.
    let next = e2e::totp::code(&secret, 1);
    let r = with(Some(&next));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = with(Some(&next));
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (401, json!("bad_totp")),
        "replayed"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
