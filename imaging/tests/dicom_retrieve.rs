//! Others retrieve from us: dcmtk's getscu (C-GET, the instances come back on its own
//! association) and movescu (C-MOVE, we send them to dcmtk's storescp, a configured peer).
//! What arrives is compared with what was sent to us by pydicom: the same instances and the
//! same pixels, in the transfer syntax the receiver accepted (re-encoded between uncompressed
//! syntaxes; a JPEG 2000 instance only to a receiver that takes JPEG 2000). A Move Destination
//! that is not a configured peer is refused, and nothing is sent; one that is down is refused
//! as out of resources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, bin, temp_dir};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

fn run(program: &str, args: &[&str]) -> String {
    let (ok, text) = try_run(program, args);
    assert!(ok, "{program} {args:?}:\n{text}");
    text
}

/// Runs a dcmtk tool that may report a refusal (a non-zero exit): whether it succeeded, and
/// its log.
fn try_run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (scripts/test installs dcmtk): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// getscu (study root) with these options and keys into `out`; its log.
fn getscu(port: u16, out: &Path, options: &[&str], keys: &[&str]) -> String {
    let (ok, log) = try_getscu(port, out, options, keys);
    assert!(ok, "{log}");
    log
}

fn try_getscu(port: u16, out: &Path, options: &[&str], keys: &[&str]) -> (bool, String) {
    std::fs::create_dir_all(out).expect("make the output folder");
    let mut args = vec!["-v", "-S", "-aet", "GETSCU", "-aec", "APPLIANCE"];
    args.extend_from_slice(options);
    for k in keys {
        args.extend(["-k", k]);
    }
    let out_dir = out.to_str().expect("a UTF-8 temp path");
    let port = port.to_string();
    args.extend(["-od", out_dir, "127.0.0.1", &port]);
    try_run("getscu", &args)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    e2e::files_under(dir)
}

/// For every received file: whether an original with its SOP Instance UID exists and has the
/// same pixels (decoded for uncompressed data, the same encapsulated bytes otherwise). Prints
/// "matched/received" and the received transfer syntaxes.
const COMPARE: &str = r#"
import sys, pathlib, pydicom, numpy
originals = {}
for p in sys.argv[2:]:
    ds = pydicom.dcmread(p)
    originals[ds.SOPInstanceUID] = ds
matched, syntaxes, received = 0, set(), list(pathlib.Path(sys.argv[1]).rglob('*'))
received = [p for p in received if p.is_file()]
for p in received:
    ds = pydicom.dcmread(p)
    ts = ds.file_meta.TransferSyntaxUID
    syntaxes.add(str(ts))
    o = originals.get(ds.SOPInstanceUID)
    if o is None:
        continue
    if ts.is_compressed:
        same = ds.PixelData == o.PixelData
    else:
        same = numpy.array_equal(ds.pixel_array, o.pixel_array)
    matched += bool(same)
print(f"{matched}/{len(received)} {','.join(sorted(syntaxes))}")
"#;

fn compare(received: &Path, originals: &[PathBuf]) -> String {
    let mut args = vec![received.to_path_buf()];
    args.extend(originals.iter().cloned());
    String::from_utf8(e2e::imaging::python(COMPARE, &args))
        .expect("the comparison prints text")
        .trim()
        .to_owned()
}

#[test]
fn getscu_and_movescu_retrieve_what_we_keep() {
    let dir = temp_dir();
    let ports = Ports::free();
    let dest_port = Ports::free().dicom;
    // A configured destination that is not listening.
    let down_port = Ports::free().dicom;
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(e2e::imaging_key_args())
        .args(["--set", "imaging.gpu=off"])
        .args([
            "--set",
            &format!(
                "imaging.peers=[\"STORESCP@127.0.0.1:{dest_port}\", \"DOWN@127.0.0.1:{down_port}\"]"
            ),
        ]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(60));
    let port = ports.dicom.to_string();

    // What we keep: the 140-slice CT, and an MR slice stored in JPEG 2000 lossless.
    let ct = e2e::ct_series_files();
    let series_dir = testdata("series/ct-philips-headphantom-140");
    run(
        "storescu",
        &[
            "-nh",
            "+sd",
            "+r",
            "-aec",
            "APPLIANCE",
            "127.0.0.1",
            &port,
            series_dir.to_str().unwrap(),
        ],
    );
    let j2k = testdata("dicom/pydicom-3.0.2-wheel-test_files/MR_small_jp2klossless.dcm");
    run(
        "storescu",
        &[
            "-xv",
            "-aec",
            "APPLIANCE",
            "127.0.0.1",
            &port,
            j2k.to_str().unwrap(),
        ],
    );
    let instances = e2e::as_service::get(ports.imaging_http, "/dicomweb/instances?limit=1000")
        .unwrap()
        .json();
    let study_of = |sop: &str| {
        instances
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["00080018"]["Value"][0] == sop)
            .map(|i| i["0020000D"]["Value"][0].as_str().unwrap().to_owned())
    };
    let mr_sop = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457";
    let mr_study = study_of(mr_sop).expect("the MR slice is kept");
    let ct_study = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["0020000D"]["Value"][0].as_str().unwrap().to_owned())
        .find(|s| *s != mr_study)
        .expect("the CT study is kept");

    // C-GET of the whole study: 140 instances, each with its own pixels.
    let got = dir.path().join("get-study");
    let log = getscu(
        ports.dicom,
        &got,
        &[],
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={ct_study}"),
        ],
    );
    assert_eq!(files(&got).len(), 140, "{log}");
    assert!(
        compare(&got, &ct).starts_with("140/140 "),
        "{}",
        compare(&got, &ct)
    );

    // One instance to a receiver that prefers big endian: re-encoded, the same pixels.
    let one = dir.path().join("get-big-endian");
    let sop = instances
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["0020000D"]["Value"][0] == ct_study.as_str())
        .map(|i| i["00080018"]["Value"][0].as_str().unwrap().to_owned())
        .unwrap();
    let series = instances
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["00080018"]["Value"][0] == sop.as_str())
        .map(|i| i["0020000E"]["Value"][0].as_str().unwrap().to_owned())
        .unwrap();
    let log = getscu(
        ports.dicom,
        &one,
        &["+xb"],
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={ct_study}"),
            &format!("SeriesInstanceUID={series}"),
            &format!("SOPInstanceUID={sop}"),
        ],
    );
    assert_eq!(compare(&one, &ct), "1/1 1.2.840.10008.1.2.2", "{log}");

    // JPEG 2000 is not decoded to be sent: a receiver without it hears which instance failed;
    // one that takes it gets the same encapsulated pixels.
    let keys = [
        "QueryRetrieveLevel=STUDY".to_owned(),
        format!("StudyInstanceUID={mr_study}"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let refused = dir.path().join("get-j2k-refused");
    let log = getscu(ports.dicom, &refused, &["-d"], &keys);
    assert!(files(&refused).is_empty(), "{log}");
    assert!(
        log.contains("Number of Failed Suboperations    : 1"),
        "{log}"
    );
    // The final response carries the Failed SOP Instance UID List (getscu does not print it).
    let last = log
        .rsplit("Received C-GET Response")
        .next()
        .unwrap_or_default();
    assert!(
        last.contains("Data Set                      : present"),
        "{log}"
    );
    let taken = dir.path().join("get-j2k");
    getscu(ports.dicom, &taken, &["+xv"], &keys);
    assert_eq!(
        compare(&taken, std::slice::from_ref(&j2k)),
        "1/1 1.2.840.10008.1.2.4.90"
    );

    // C-MOVE to storescp, the configured peer.
    let moved = dir.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    let mut scp = Command::new("storescp");
    scp.args(["-aet", "STORESCP", "-od"])
        .arg(&moved)
        .arg(dest_port.to_string());
    let _storescp = Daemon::spawn(scp);
    e2e::wait_listening(dest_port, "storescp");
    let study_key = format!("StudyInstanceUID={ct_study}");
    let movescu = |destination: &str| {
        try_run(
            "movescu",
            &[
                "-v",
                "-S",
                "-aet",
                "MOVESCU",
                "-aec",
                "APPLIANCE",
                "-aem",
                destination,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                &study_key,
                "127.0.0.1",
                &port,
            ],
        )
    };
    let (ok, log) = movescu("STORESCP");
    assert!(ok, "{log}");
    assert_eq!(files(&moved).len(), 140, "{log}");
    assert!(compare(&moved, &ct).starts_with("140/140 "));

    // A destination nobody configured: refused, nothing sent anywhere.
    let (_, log) = movescu("ELSEWHERE");
    assert!(log.contains("MoveDestinationUnknown"), "{log}");
    // A configured destination that cannot be reached: refused as out of resources.
    let (_, log) = movescu("DOWN");
    assert!(log.contains("OutOfResources"), "{log}");
    assert_eq!(files(&moved).len(), 140);

    // An identifier without its level's key is refused with a status, and the listener goes on.
    let bad = dir.path().join("get-bad");
    let (_, log) = try_getscu(ports.dicom, &bad, &["-d"], &["QueryRetrieveLevel=SERIES"]);
    assert!(log.contains("DataSetDoesNotMatchSOPClass"), "{log}");
    assert!(
        log.contains("SeriesInstanceUID (0020,000E) is required"),
        "the Error Comment names the key:\n{log}"
    );
    assert!(files(&bad).is_empty());
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
