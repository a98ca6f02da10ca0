//! National cryptography at rest, against the real binaries: identity card numbers and phones
//! sealed with SM4-GCM in the database file and still found through the blind index, and the
//! audit chain moving from SHA-256 to SM3 while every earlier record keeps verifying.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::api::{activate, call};
use e2e::{Ports, bin, temp_dir};
use serde_json::json;

fn login_of(text: &str, name: &str) -> (String, String) {
    (name.to_owned(), e2e::api::demo_password(text, name))
}

/// Every byte of the appliance database's files (the WAL too).
fn database_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["appliance.db", "appliance.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(name)) {
            all.extend(b);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn identity_cards_and_phones_are_sealed_at_rest_and_still_found() {
    let dir = temp_dir();
    let d = dir.path();
    let logins = e2e::api::demo_data(d);
    let data = d.join("data");
    // A phone written in clear (as before sealing existed) is sealed at the next start.
    let planted = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"UPDATE users SET phone='13912345678' WHERE login='doctor.sun'\"); c.commit()",
        )
        .arg(data.join("appliance.db"))
        .output()
        .expect("python3");
    assert!(planted.status.success(), "{planted:?}");
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let zhao = activate(port, &login_of(&logins, "doctor.zhao"));
    let card = "11010519491231002X";
    let made = call(
        port,
        "POST",
        "/api/v1/patients",
        &zhao,
        &[],
        Some(
            json!({ "name": "周秘", "sex": "M", "birth_date": "1949-12-31",
                     "phone": "13566667777", "id_number": card }),
        ),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()["id"].as_i64().expect("id");
    // Found by the card (blind index), shown masked in lists and in full where it was before.
    let found = call(
        port,
        "GET",
        &format!("/api/v1/patients?q={card}"),
        &zhao,
        &[],
        None,
    )
    .json();
    assert_eq!(found["items"][0]["id"].as_i64(), Some(id), "{found}");
    assert_eq!(
        found["items"][0]["id_number_masked"], "110105********002X",
        "{found}"
    );
    let one = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}"),
        &zhao,
        &[],
        None,
    )
    .json();
    assert_eq!(one["phone"], "13566667777", "{one}");
    // The same card again is the same person (one master record).
    let again = call(
        port,
        "POST",
        "/api/v1/patients",
        &zhao,
        &[],
        Some(json!({ "name": "周秘", "sex": "M", "birth_date": "1949-12-31", "id_number": card })),
    );
    assert_eq!(again.status, 201, "{}", again.body);
    let linked = call(
        port,
        "GET",
        &format!("/api/v1/patients/{id}/linked"),
        &zhao,
        &[],
        None,
    );
    assert!(
        linked.body.contains(&again.json()["id"].to_string()),
        "{}",
        linked.body
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let bytes = database_bytes(&data);
    for secret in [card, "13566667777", "13912345678", "330102195603140019"] {
        assert!(!contains(&bytes, secret), "{secret} is stored in clear");
    }
    assert!(contains(&bytes, "sm4gcm:"));
    // Without the key nothing opens: a database copied alone leaks no number.
    let key = std::fs::read_to_string(data.join("keys/data.key")).expect("the data key");
    assert_eq!(key.trim().len(), 44, "32 bytes in base64");
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nfor r in c.execute(sys.argv[2]): print(*r)\nc.commit()",
        )
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_audit_chain_moves_to_sm3_and_keeps_verifying() {
    let dir = temp_dir();
    let d = dir.path();
    e2e::api::admin(d, &["institution", "add", "--name", "市第一人民医院"]);
    let people = [
        e2e::api::new_user(d, "a.doc", "doctor", "1", ""),
        e2e::api::new_user(d, "b.doc", "doctor", "1", ""),
    ];
    // Written with SHA-256 first, as installations before SM3 were; then with SM3.
    for (i, hash) in ["sha256", "sm3"].into_iter().enumerate() {
        let ports = Ports::free();
        let set = format!("security.audit_hash={hash}");
        let mut daemon = e2e::api::start(d, &ports, &["--set", &set]);
        activate(ports.http, &people[i]);
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
    }
    let db = d.join("data/appliance.db");
    let algs = sqlite(
        &db,
        "SELECT alg, count(*) FROM audit_log GROUP BY alg ORDER BY alg",
    );
    assert!(algs.contains("sha256") && algs.contains("sm3"), "{algs}");
    let verify = e2e::api::admin(d, &["audit", "verify"]);
    assert!(verify.contains("the audit chain is intact"), "{verify}");
    // An SM3 record edited behind the application's back is named (the trigger is dropped
    // first, as someone with the file would).
    let last: i64 = sqlite(&db, "SELECT max(seq) FROM audit_log WHERE alg = 'sm3'")
        .trim()
        .parse()
        .expect("a sequence number");
    sqlite(&db, "DROP TRIGGER audit_log_no_update");
    sqlite(
        &db,
        &format!("UPDATE audit_log SET source = '6.6.6.6' WHERE seq = {last}"),
    );
    let out = Command::new(bin("appliance"))
        .current_dir(d)
        .args(["audit", "verify"])
        .output()
        .expect("audit verify");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("row {last}: its content does not match")),
        "{text}"
    );
}

/// Every stored DICOM file under `data`, with its bytes.
fn stored_files(data: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![data.join("dicom")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "dcm") {
                let bytes = std::fs::read(&p).expect("read file");
                out.push((p, bytes));
            }
        }
    }
    out
}

/// STOW-RS of one file with a writing service token; the stored instance's WADO-RS path.
fn stow(port: u16, auth: &str, file: &[u8]) -> String {
    let boundary = "at-rest-boundary";
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = e2e::request(
        port,
        "POST",
        "/dicomweb/studies",
        &[("Authorization", auth), ("Content-Type", &ct)],
        &body,
    )
    .expect("STOW");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        .as_str()
        .expect("a retrieve URL")
        .to_owned()
}

#[test]
fn dicom_files_are_encrypted_at_rest_when_asked_and_still_served() {
    let dir = temp_dir();
    let d = dir.path();
    let on = ["--set", "imaging.encrypt_at_rest=true"];
    let out = Command::new(bin("appliance"))
        .current_dir(d)
        .args(on)
        .arg("demo-data")
        .env_remove("RUST_LOG")
        .output()
        .expect("demo-data");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &on);
    let data = d.join("data");
    let auth = format!(
        "Bearer {}",
        e2e::service_token(&e2e::stack_signer(&data), true)
    );
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/dicom/pydicom-3.0.2-wheel-test_files");
    let ct = std::fs::read(testdata.join("CT_small.dcm")).expect("CT_small");
    let ct_path = stow(ports.imaging_http, &auth, &ct);

    // On disk: every file sealed, no patient's name in the clear (the demo's, and CT_small's
    // "CompressedSamples^CT1"), no Part 10 marker.
    let files = stored_files(&data);
    assert!(files.len() > 3, "{} files", files.len());
    for (path, bytes) in &files {
        assert!(
            bytes.starts_with(b"SM4GCM-DICOM-v1\n"),
            "{}",
            path.display()
        );
        for needle in ["王^建国".as_bytes(), b"CompressedSamples", b"DICM"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    // Served as stored: WADO-RS gives back exactly the bytes sent, and images render.
    let wado = e2e::request(
        ports.imaging_http,
        "GET",
        &ct_path,
        &[
            ("Authorization", &auth),
            ("Accept", "multipart/related; type=\"application/dicom\""),
        ],
        b"",
    )
    .expect("WADO");
    assert_eq!(wado.status, 200, "{}", wado.body);
    assert!(
        wado.bytes.windows(ct.len()).any(|w| w == ct.as_slice()),
        "the instance comes back byte for byte"
    );
    let rendered = |port: u16| {
        e2e::request(
            port,
            "GET",
            &format!("{ct_path}/rendered"),
            &[("Authorization", &auth), ("Accept", "image/png")],
            b"",
        )
        .expect("rendered")
    };
    let r = rendered(ports.imaging_http);
    assert_eq!(r.status, 200, "{}", r.body);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));

    // Turned off: what was sealed still opens (the start-up check indexes nothing anew and
    // reports nothing unreadable), and new files are stored plain.
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    assert_eq!(rendered(ports.imaging_http).status, 200);
    let mr = std::fs::read(testdata.join("MR_small.dcm")).expect("MR_small");
    stow(ports.imaging_http, &auth, &mr);
    let plain: Vec<_> = stored_files(&data)
        .into_iter()
        .filter(|(_, b)| b.get(128..132) == Some(b"DICM".as_slice()))
        .collect();
    assert_eq!(plain.len(), 1, "only MR_small is stored plain");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let log = daemon.stderr();
    assert!(!log.contains("unreadable file"), "{log}");
}

#[test]
fn an_operator_supplied_data_key_is_used_and_never_made() {
    let dir = temp_dir();
    let d = dir.path();
    let key_file = d.join("secrets/data.key");
    let set = format!("security.data_key_file={}", key_file.display());
    let run = |args: &[&str]| {
        Command::new(bin("appliance"))
            .current_dir(d)
            .args(["--set", &set])
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("appliance")
    };
    // Missing, it is refused by field, and nothing is made in its place.
    let refused = run(&["demo-data"]);
    assert_eq!(refused.status.code(), Some(2));
    let text = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(text.contains("security.data_key_file"), "{text}");
    assert!(!key_file.exists());
    // Supplied (as a key-management tool would write it), it seals the columns; the data
    // directory gets no key of its own.
    std::fs::create_dir_all(key_file.parent().expect("folder")).expect("folder");
    std::fs::write(&key_file, "Ryd6jCcnmqA2s3/uIP7xvqVtcr0nBAvtX1v0pK5c4ig=\n").expect("key");
    let demo = run(&["demo-data"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let logins = String::from_utf8_lossy(&demo.stdout).into_owned();
    assert!(!d.join("data/keys/data.key").exists());
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &["--set", &set]);
    let zhao = activate(ports.http, &login_of(&logins, "doctor.zhao"));
    let found = call(
        ports.http,
        "GET",
        "/api/v1/patients?q=330102195603140019",
        &zhao,
        &[],
        None,
    );
    assert_eq!(
        found.json()["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        found.body
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));
    // The columns are sealed under the operator's key: with another key they do not open.
    std::fs::write(&key_file, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("key");
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &["--set", &set]);
    let zhao = e2e::request(
        ports.http,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        json!({ "login": "doctor.zhao", "password": "Consult-2026" })
            .to_string()
            .as_bytes(),
    )
    .expect("login");
    let token = zhao.json()["token"].as_str().expect("token").to_owned();
    let found = call(
        ports.http,
        "GET",
        "/api/v1/patients?q=330102195603140019",
        &token,
        &[],
        None,
    );
    assert_eq!(
        found.json()["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        found.body
    );
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(30));
}
