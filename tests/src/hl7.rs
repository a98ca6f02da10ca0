//! HL7 v2 over MLLP from a test: python's `hl7` library (nobody here wrote it) sends each
//! message on one connection and parses each acknowledgement.

use std::io::Write;

use serde_json::Value;

/// Sends each job (`text`, `encoding`, and `as` to rewrite MSH-3/MSH-4 of a sample) over one
/// MLLP connection with python's hl7 client; prints each ACK's MSA-1, MSA-2, MSA-3 and ERR.
pub const SENDER: &str = r#"
import hl7, hl7.client, json, sys
port = int(sys.argv[1])
jobs = json.load(sys.stdin)
client = hl7.client.MLLPClient("127.0.0.1", port)
out = []
for j in jobs:
    enc = j.get("encoding", "utf-8")
    msg = hl7.parse(j["text"].replace("\r\n", "\r").replace("\n", "\r"))
    if "as" in j:
        for field, value in zip(("MSH.F3", "MSH.F4"), j["as"]):
            try:
                msg[field + ".R1.C1"] = value
            except Exception:
                msg[field] = value
    reply = client.send_message(str(msg).encode(enc))
    reply = reply.strip(b"\x0b\x1c\r").decode(enc)
    ack = hl7.parse(reply)
    msa = ack.segment("MSA")
    try:
        err = str(ack.segment("ERR"))
    except KeyError:
        err = ""
    out.append({"code": str(msa[1]), "id": str(msa[2]), "text": str(msa[3]) if len(msa) > 3 else "", "err": err})
client.close()
print(json.dumps(out))
"#;

pub fn send(port: u16, jobs: &[Value]) -> Vec<Value> {
    let mut child = std::process::Command::new(
        std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .args(["-c", SENDER, &port.to_string()])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("python3 with hl7 (scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::from(jobs.to_vec()).to_string().as_bytes())
        .expect("write jobs");
    let out = child.wait_with_output().expect("sender");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("acks as JSON")
}
