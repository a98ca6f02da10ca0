//! The clinical content read from messages written here for the Chinese cases (GB 18030
//! names, the identity card in PID-3), and from every sample message in the shared test data.

use hl7v2::charset::Charset;
use hl7v2::content::{Content, parse_content};
use hl7v2::message::{ErrorCode, Message, split_batch};

const BEIJING: i32 = 480;

fn parse(text: &str) -> Result<hl7v2::Parsed, hl7v2::Hl7Error> {
    parse_content(&Message::parse(text.as_bytes())?, BEIJING)
}

#[test]
fn a_gb18030_admission_with_identity_card_and_record_number() {
    let text = "MSH|^~\\&|HIS|CITY01|APPL|DC|20260301081500||ADT^A01^ADT_A01|M0001|P|2.5|||||CHN|GB 18030-2000\r\
EVN|A01|20260301081500\r\
PID|1||110101195603140012^^^NNCHN^NNCHN~ZY000123^^^CITY01^MR||张^三丰||19560314|M|||||13800000001\r\
PV1|1|I|心内科病区^301^2||||D01^李^四|||心内科|||||||||V20260301001|||||||||||||||||||||||||20260301080000\r\
DG1|1||I21.9^急性心肌梗死^I10||20260301|A\r";
    let bytes = Charset::Gb18030.encode(text);
    let p = parse_content(&Message::parse(&bytes).unwrap(), BEIJING).unwrap();
    assert_eq!(p.person.name, "张三丰");
    assert_eq!(p.person.ids.id_card.as_deref(), Some("110101195603140012"));
    assert_eq!(p.person.ids.record_number.as_deref(), Some("ZY000123"));
    assert_eq!(p.person.birth_date.as_deref(), Some("1956-03-14"));
    assert_eq!(p.person.phone, "13800000001");
    let v = p.visit.unwrap();
    assert_eq!((v.class.as_str(), v.number.as_str()), ("I", "V20260301001"));
    assert_eq!(v.location, "心内科病区 301 2");
    assert_eq!(v.department, "心内科");
    assert_eq!(v.attending, "李四");
    // 08:00 Beijing time is 00:00 UTC.
    assert_eq!(v.admitted_at, Some(1_772_323_200_000));
    assert_eq!(p.diagnoses[0].item.code, "I21.9");
    assert_eq!(p.diagnoses[0].item.text, "急性心肌梗死");
    assert_eq!(p.content, Content::Person);
    // The same bytes read as UTF-8 are refused, naming MSH-18.
    let e =
        Message::parse(&Charset::Gb18030.encode(&text.replace("GB 18030-2000", "UNICODE UTF-8")))
            .unwrap_err();
    assert_eq!(e.location.unwrap().field, 18);
}

#[test]
fn lab_results_with_ranges_flags_and_a_pdf() {
    let pdf = base64_pdf();
    let text = format!(
        "MSH|^~\\&|LIS|CITY01|||20260302100000||ORU^R01|L77|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||ZY000123^^^CITY01^MR||张^三丰\r\
ORC|RE|P100|F200\r\
OBR|1|P100|F200|BMP^基础代谢^L|||20260302070000|||||||||||||||20260302093000|||F\r\
OBX|1|NM|2345-7^葡萄糖^LN||7.8|mmol/L|3.9-6.1|H|||F\r\
OBX|2|NM|2823-3^钾^LN||3.1|mmol/L|3.5～5.5|↓|||F|||20260302071500\r\
OBX|3|ST|^^^5778-6^尿液颜色^LN||淡黄||||||F\r\
OBX|4|SN|33762-6^NT-proBNP^LN||>^125|pg/mL|<125|A|||F\r\
OBX|5|ED|PDF^检验报告单||^AP^PDF^Base64^{pdf}||||||F\r\
SPM|1|||BLD^全血\r"
    );
    let p = parse(&text).unwrap();
    let Content::Results(groups) = p.content else {
        panic!("{:?}", p.content)
    };
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(
        (g.order.placer.as_str(), g.order.filler.as_str()),
        ("P100", "F200")
    );
    let r = &g.results;
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].numeric, Some(7.8));
    assert_eq!((r[0].low, r[0].high), (Some(3.9), Some(6.1)));
    assert_eq!(r[0].flag, "H");
    assert_eq!(r[0].specimen, "全血");
    assert_eq!(
        r[0].observed_at,
        Some(1_772_406_000_000),
        "OBR-7, 07:00 Beijing"
    );
    assert_eq!(r[1].flag, "L");
    assert_eq!((r[1].low, r[1].high), (Some(3.5), Some(5.5)));
    assert_eq!(r[1].observed_at, Some(1_772_406_900_000), "OBX-14");
    assert_eq!(r[2].value, "淡黄");
    assert_eq!(
        (r[2].item.code.as_str(), r[2].item.system.as_str()),
        ("5778-6", "LN"),
        "the alternate identifier"
    );
    assert_eq!(r[3].value, ">125");
    assert_eq!((r[3].low, r[3].high), (None, Some(125.0)));
    let report = g.report.as_ref().unwrap();
    assert_eq!(report.kind, "lab");
    assert!(report.pdf.as_ref().unwrap().starts_with(b"%PDF"));
}

fn base64_pdf() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4\n%test\n")
}

#[test]
fn an_exam_report_and_a_document() {
    let p = parse(
        "MSH|^~\\&|RIS|CITY01|||20260303||ORU^R01|R1|P|2.4\r\
PID|1||ZY9^^^^MR\r\
OBR|1|A1|B1|CT001^胸部CT平扫^L|||20260303090000|||||||||||||||||CT|F\r\
OBX|1|TX|IMP^印象||右肺上叶结节，建议随访。\\.br\\余未见异常。||||||F\r\
OBX|2|TX|FIND^所见||双肺纹理清晰。||||||F\r",
    )
    .unwrap();
    let Content::Results(groups) = p.content else {
        panic!()
    };
    let rep = groups[0].report.as_ref().unwrap();
    assert_eq!(rep.kind, "radiology");
    assert_eq!(
        rep.text,
        "右肺上叶结节，建议随访。\n余未见异常。\n双肺纹理清晰。"
    );
    assert!(groups[0].results.is_empty());
    let p = parse(
        "MSH|^~\\&|EMR|CITY01|||20260304||MDM^T02|D1|P|2.5\r\
PID|1||ZY9^^^^MR\r\
TXA|1|DS^出院小结|TX|20260304120000||||||||DOC-9|||||LA\r\
OBX|1|TX|||患者好转出院。\r\
OBX|2|TX|||嘱低盐饮食。\r",
    )
    .unwrap();
    let Content::Document(d) = p.content else {
        panic!()
    };
    assert_eq!(
        (d.kind, d.number.as_str(), d.title.as_str()),
        ("discharge", "DOC-9", "出院小结")
    );
    assert_eq!(d.mime, "text/plain");
    assert_eq!(
        String::from_utf8(d.content).unwrap(),
        "患者好转出院。\n嘱低盐饮食。"
    );
}

#[test]
fn a_merge_and_orders() {
    let p = parse(
        "MSH|^~\\&|HIS|CITY01|||20260305||ADT^A40|G1|P|2.5\r\
PID|1||ZY1^^^^MR\r\
MRG|ZY2^^^^MR\r",
    )
    .unwrap();
    assert_eq!(
        p.content,
        Content::Merge {
            prior: hl7v2::content::Ids {
                id_card: None,
                record_number: Some("ZY2".into())
            }
        }
    );
    let p = parse(
        "MSH|^~\\&|HIS|CITY01|||20260305||ORM^O01|O1|P|2.3\r\
PID|1||ZY1^^^^MR\r\
ORC|NW|ORD1|||||||20260305101000|||D9^王^医生\r\
OBR|1|ORD1||US01^腹部彩超^L||||||||||||||||||||US\r\
ORC|NW|ORD2\r\
RXO|ASP100^阿司匹林肠溶片\r",
    )
    .unwrap();
    let Content::Orders(o) = p.content else {
        panic!()
    };
    assert_eq!(o.len(), 2);
    assert_eq!(
        (o[0].kind, o[0].item.text.as_str(), o[0].provider.as_str()),
        ("exam", "腹部彩超", "王医生")
    );
    assert_eq!(
        (o[1].kind, o[1].item.code.as_str()),
        ("medication", "ASP100")
    );
}

#[test]
fn bad_input_names_segment_and_field() {
    let cases = [
        (
            "MSH|^~\\&|A|B|||2026||ADT^A01|1|P|2.5\rPID|1||ZY1^^^^MR||x||1956133",
            "PID-7",
            ErrorCode::DataType,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A01|1|P|2.5\rPID|1||||x",
            "PID-3",
            ErrorCode::RequiredMissing,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A01||P|2.5\rPID|1||1",
            "MSH-10",
            ErrorCode::RequiredMissing,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A99|1|P|2.5\rPID|1||1",
            "MSH-9",
            ErrorCode::UnsupportedEvent,
        ),
        (
            "MSH|^~\\&|A|B|||2026||QRY^Q01|1|P|2.5",
            "MSH-9",
            ErrorCode::UnsupportedMessageType,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A01|1|P|3.0\rPID|1||1",
            "MSH-12",
            ErrorCode::UnsupportedVersion,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A01|1|P|2.5",
            "PID",
            ErrorCode::SegmentSequence,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A01|1|P|2.5\rPID|1||1||x|||Q",
            "PID-8",
            ErrorCode::TableValue,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ORU^R01|1|P|2.5\rPID|1||1\rOBR|1|P1||GLU\rOBX|1|NM|GLU||high",
            "OBX-5",
            ErrorCode::DataType,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ORU^R01|1|P|2.5\rPID|1||1\rOBX|1|NM|GLU||1",
            "OBX",
            ErrorCode::SegmentSequence,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ORU^R01|1|P|2.5\rPID|1||1\rOBR|1|P1||X\rOBX|1|ED|R||^AP^PDF^Base64^!!!",
            "OBX-5",
            ErrorCode::DataType,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A03|1|P|2.5\rPID|1||1\rPV1|1|I",
            "PV1-19",
            ErrorCode::RequiredMissing,
        ),
        (
            "MSH|^~\\&|A|B|||2026||MDM^T02|1|P|2.5\rPID|1||1\rTXA|1|DS",
            "TXA-12",
            ErrorCode::RequiredMissing,
        ),
        (
            "MSH|^~\\&|A|B|||2026||ADT^A40|1|P|2.5\rPID|1||1",
            "MRG",
            ErrorCode::SegmentSequence,
        ),
    ];
    for (text, place, code) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.code, code, "{text}: {e}");
        assert!(
            e.to_string().starts_with(place),
            "{text}: {e} should name {place}"
        );
    }
}

/// Every sample message in the shared test data is read, or refused with a located reason;
/// none panics, and the ORU samples yield lab values.
#[test]
fn every_shared_sample_is_read_or_refused_with_a_place() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/hl7v2");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hl7") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 100, "found {}", files.len());
    let (mut read, mut values) = (0, 0);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let messages = split_batch(&bytes).unwrap_or_else(|| vec![bytes.clone()]);
        for m in messages {
            match Message::parse(&m).and_then(|m| parse_content(&m, BEIJING)) {
                Ok(p) => {
                    read += 1;
                    if let Content::Results(g) = p.content {
                        values += g.iter().map(|g| g.results.len()).sum::<usize>();
                    }
                }
                Err(e) => assert!(!e.text.is_empty(), "{}: {e:?}", f.display()),
            }
        }
    }
    assert!(read > 60, "only {read} of the samples were read");
    assert!(values > 100, "only {values} lab values");
}
