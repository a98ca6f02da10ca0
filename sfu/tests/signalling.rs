//! Room signalling against the real `sfu` binary: joining needs a room token signed by the key
//! in `sfu.token_key` (a forged or expired one gets 401); members hear of joins, mute changes,
//! drops ("reconnecting"), returns within the grace ("resumed") and leaves; a dropped member
//! who does not come back in time has left; a full room refuses with the reason; malformed
//! messages get an error, never a crash.

use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, WebSocket};
use serde_json::Value;
use sfu::token::{RoomClaims, public_key_base64, sign};

fn token(key: &ed25519_dalek::SigningKey, room: &str, who: &str, exp: u64) -> String {
    sign(
        &RoomClaims {
            room: room.into(),
            sub: who.into(),
            name: format!("{who} 医生"),
            publish: true,
            subscribe: true,
            exp,
        },
        key,
    )
}

fn sign_admin(key: &ed25519_dalek::SigningKey, exp: u64) -> String {
    firmware_runtime::token::sign(
        &sfu::token::AdminClaims {
            sub: "sys.admin".into(),
            scope: sfu::token::ADMIN_SCOPE.into(),
            exp,
        },
        key,
    )
}

fn next(ws: &mut WebSocket) -> Value {
    let text = ws
        .next_text(Duration::from_secs(10))
        .expect("a message within 10 s");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn rooms_joins_drops_returns_and_limits() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let ports = Ports::free();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfu"));
    cmd.args(ports.args())
        .args([
            "--set",
            &format!("sfu.token_key={}", public_key_base64(&key)),
        ])
        .args(["--set", "sfu.max_participants_per_room=2"])
        .args(["--set", "sfu.rejoin_grace_secs=2"])
        .args([
            "--set",
            r#"sfu.ice_servers=[{ urls = ["turn:turn.hospital.local:3478"], username = "u", credential = "c" }]"#,
        ]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.sfu_signalling, "/readyz", Duration::from_secs(30));
    let port = ports.sfu_signalling;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let open = |t: &str| WebSocket::connect(port, &format!("/rooms/ws?token={t}"));

    // Refused before any upgrade: a forged signature, an expired token.
    let other = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    assert!(open(&token(&other, "c-1", "a", exp)).0.contains(" 401 "));
    assert!(open(&token(&key, "c-1", "a", 1)).0.contains(" 401 "));

    let (_, a) = open(&token(&key, "c-1", "doctor.a", exp));
    let mut a = a.expect("a joins");
    let welcome = next(&mut a);
    assert_eq!(welcome["type"], "joined");
    assert_eq!(welcome["participants"], serde_json::json!([]));
    // The STUN/TURN servers from the configuration, with their credentials, for the client.
    assert_eq!(
        welcome["ice_servers"],
        serde_json::json!([{ "urls": ["turn:turn.hospital.local:3478"], "username": "u", "credential": "c" }])
    );
    let b_token = token(&key, "c-1", "expert.b", exp);
    let (_, b) = open(&b_token);
    let mut b = b.expect("b joins");
    assert_eq!(next(&mut b)["participants"][0]["name"], "doctor.a 医生");
    let joined = next(&mut a);
    assert_eq!(
        (joined["event"].as_str(), joined["name"].as_str()),
        (Some("joined"), Some("expert.b 医生"))
    );

    // Full: a third is refused with the reason.
    let (_, c) = open(&token(&key, "c-1", "third", exp));
    let refused = next(&mut c.expect("upgraded, then refused"));
    assert_eq!(refused["type"], "error");
    assert!(
        refused["message"].as_str().unwrap().contains("full"),
        "{refused}"
    );

    // Mute, and a malformed message.
    b.send_text(r#"{"type":"mute","kind":"audio","muted":true}"#);
    let muted = next(&mut a);
    assert_eq!(
        (muted["type"].as_str(), muted["muted"].as_bool()),
        (Some("mute"), Some(true))
    );
    b.send_text("not json");
    assert_eq!(next(&mut b)["code"], "malformed");
    b.send_text(r#"{"type":"dance"}"#);
    assert_eq!(next(&mut b)["field"], "type");

    // The admin API: an administration token lists the rooms; a room token does not pass.
    let admin = sign_admin(&key, exp);
    let auth = format!("Bearer {admin}");
    let listed = e2e::request(
        port,
        "GET",
        "/admin/rooms",
        &[("Authorization", &auth)],
        &[],
    )
    .unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    let people = listed.json()["rooms"][0]["participants"]
        .as_array()
        .map(Vec::len);
    assert_eq!(people, Some(2), "{}", listed.body);
    let room_auth = format!("Bearer {b_token}");
    assert_eq!(
        e2e::request(
            port,
            "GET",
            "/admin/rooms",
            &[("Authorization", &room_auth)],
            &[]
        )
        .unwrap()
        .status,
        401
    );
    assert_eq!(
        e2e::request(port, "GET", "/admin/rooms", &[], &[])
            .unwrap()
            .status,
        401
    );
    // B's connection drops: A sees "reconnecting", then "resumed" when B returns in time.
    drop(b);
    assert_eq!(next(&mut a)["event"], "reconnecting");
    let (_, b) = open(&b_token);
    let mut b = b.expect("b returns");
    let back = next(&mut b);
    assert_eq!(
        (
            back["resumed"].as_bool(),
            back["participants"][0]["name"].as_str()
        ),
        (Some(true), Some("doctor.a 医生"))
    );
    assert_eq!(next(&mut a)["event"], "resumed");

    // Dropped again and not back within the 2 s grace: left.
    drop(b);
    assert_eq!(next(&mut a)["event"], "reconnecting");
    let gone = next(&mut a);
    assert_eq!(gone["event"], "left");
    // An administrator removes a member, then closes the room.
    let (_, c) = open(&token(&key, "c-1", "third", exp));
    let mut c = c.expect("a new member");
    let c_id = next(&mut c)["you"].as_u64().unwrap();
    assert_eq!(next(&mut a)["event"], "joined");
    let removed = e2e::request(
        port,
        "DELETE",
        &format!("/admin/rooms/c-1/participants/{c_id}"),
        &[("Authorization", &auth)],
        &[],
    )
    .unwrap();
    assert_eq!(removed.status, 204);
    assert_eq!(next(&mut c)["type"], "removed");
    assert_eq!(next(&mut a)["event"], "left");
    assert_eq!(
        e2e::request(
            port,
            "DELETE",
            "/admin/rooms/c-1",
            &[("Authorization", &auth)],
            &[]
        )
        .unwrap()
        .status,
        204
    );
    assert_eq!(next(&mut a)["type"], "closed");
    assert_eq!(
        e2e::request(
            port,
            "DELETE",
            "/admin/rooms/c-1",
            &[("Authorization", &auth)],
            &[]
        )
        .unwrap()
        .status,
        404
    );
    // A new member finds the room empty.
    let (_, fresh) = open(&token(&key, "c-1", "late", exp));
    assert_eq!(
        next(&mut fresh.expect("joins"))["participants"],
        serde_json::json!([])
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
