//! `appliance demo-data`'s clinical record for 王建国 (DEMO0001 at 城东社区卫生服务中心): an
//! admission with diagnoses, a week of lab panels (glucose rising above its range, potassium
//! dipping below), a head CT report, a lab report PDF and a discharge summary, written as the
//! HIS, LIS, RIS and EMR would send them over HL7 v2 and taken through the same intake as
//! the MLLP listener's messages.

use std::net::{IpAddr, Ipv4Addr};

use firmware_config::Hl7Source;
use sqlx::SqlitePool;

use crate::ingest::{Intake, Outcome};

/// The demo's sending systems, all at the clinic.
const SOURCE: &str = "*^DEMO-EAST@*=城东社区卫生服务中心";

fn dtm(day: u32, hour: u32) -> String {
    format!("202612{day:02}{hour:02}0000")
}

/// The messages, in the order the systems would send them.
pub fn messages() -> Vec<String> {
    let pid =
        "PID|1||330102195603140019^^^NNCHN^NNCHN~DEMO0001^^^DEMO-EAST^MR||王^建国||19560314|M";
    let mut m = vec![format!(
        "MSH|^~\\&|HIS|DEMO-EAST|||{}||ADT^A01|DEMO-ADT-1|P|2.5\r{pid}\r\
PV1|1|I|内科病区^12^3||||D001^赵^医生|||内科|||||||||ZY20261201|||||||||||||||||||||||||{}\r\
DG1|1||I63.9^脑梗死^I10||{}|A\r\
DG1|2||E11.9^2型糖尿病^I10||{}|A",
        dtm(1, 9),
        dtm(1, 9),
        dtm(1, 9),
        dtm(1, 9)
    )];
    let glucose = [6.2, 7.4, 8.9, 9.6, 8.1, 7.0, 6.0];
    let potassium = [4.2, 3.9, 3.3, 3.1, 3.6, 4.0, 4.1];
    let creatinine = [78.0, 82.0, 91.0, 88.0, 80.0, 76.0, 74.0];
    for (i, ((g, k), c)) in glucose.iter().zip(potassium).zip(creatinine).enumerate() {
        let day = 1 + i as u32;
        let at = dtm(day, 7);
        let flag = |v: f64, lo: f64, hi: f64| {
            if v > hi {
                "H"
            } else if v < lo {
                "L"
            } else {
                "N"
            }
        };
        let mut text = format!(
            "MSH|^~\\&|LIS|DEMO-EAST|||{}||ORU^R01|DEMO-LAB-{day}|P|2.5.1\r{pid}\r\
ORC|RE|L{day}|LF{day}\r\
OBR|1|L{day}|LF{day}|BMP^生化检验^L|||{at}|||||||||||||||{}|||F\r\
OBX|1|NM|2345-7^葡萄糖^LN||{g:.1}|mmol/L|3.9-6.1|{}|||F\r\
OBX|2|NM|2823-3^钾^LN||{k:.1}|mmol/L|3.5-5.5|{}|||F\r\
OBX|3|NM|2160-0^肌酐^LN||{c:.0}|umol/L|57-97|{}|||F\r\
SPM|1|||SER^血清",
            dtm(day, 10),
            dtm(day, 9),
            flag(*g, 3.9, 6.1),
            flag(k, 3.5, 5.5),
            flag(c, 57.0, 97.0),
        );
        if day == 4 {
            // The lab's own printout of the worst day.
            text.push_str("\rOBX|4|ED|PDF^检验报告单||^AP^PDF^Base64^JVBERi0xLjQKJSDmo4DpqozmiqXlkYrljZUKJSVFT0YK||||||F");
        }
        m.push(text);
    }
    m.push(format!(
        "MSH|^~\\&|RIS|DEMO-EAST|||{}||ORU^R01|DEMO-RIS-1|P|2.4\r{pid}\r\
OBR|1|R1|RF1|CT-HEAD^头颅CT平扫^L|||{}|||||||||||||||{}||CT|F\r\
OBX|1|TX|FIND^所见||左侧基底节区见斑片状低密度影，边界欠清。\\.br\\中线结构居中。||||||F\r\
OBX|2|TX|IMP^印象||左侧基底节区急性脑梗死可能，建议MRI进一步检查。||||||F",
        dtm(1, 11),
        dtm(1, 10),
        dtm(1, 11)
    ));
    m.push(format!(
        "MSH|^~\\&|EMR|DEMO-EAST|||{}||MDM^T02|DEMO-EMR-1|P|2.5\r{pid}\r\
TXA|1|DS^出院小结|TX|{}||||||||DS-20261207-1|||||LA\r\
OBX|1|TX|||入院诊断：脑梗死；2型糖尿病。\r\
OBX|2|TX|||住院经过：予抗血小板、控制血糖治疗，言语及右侧肢体肌力逐渐好转。\r\
OBX|3|TX|||出院医嘱：规律服药，监测血糖，1个月后复诊。",
        dtm(7, 16),
        dtm(7, 16)
    ));
    m.push(format!(
        "MSH|^~\\&|HIS|DEMO-EAST|||{}||ADT^A03|DEMO-ADT-2|P|2.5\r{pid}\r\
PV1|1|I|内科病区^12^3||||D001^赵^医生|||内科|||||||||ZY20261201|||||||||||||||||||||||||{}|{}",
        dtm(7, 17),
        dtm(1, 9),
        dtm(7, 17)
    ));
    m
}

/// Takes the messages in; how many were stored.
pub async fn feed(pool: &SqlitePool, sealer: &crate::gm::Sealer) -> Result<usize, String> {
    let source: Hl7Source = SOURCE.parse()?;
    let intake = Intake {
        pool: pool.clone(),
        sealer: sealer.clone(),
        sources: vec![source],
    };
    let messages: Vec<Vec<u8>> = messages().into_iter().map(String::into_bytes).collect();
    let mut n = 0;
    let mut id = || {
        format!("DEMO-ACK-{}", {
            n += 1;
            n
        })
    };
    let answers = intake
        .take_all(&messages, IpAddr::V4(Ipv4Addr::LOCALHOST), &mut id)
        .await;
    let mut stored = 0;
    for (ack, outcome) in answers {
        match outcome {
            Outcome::Stored { .. } => stored += 1,
            _ => return Err(String::from_utf8_lossy(&ack).into_owned()),
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_demo_message_reads() {
        for m in super::messages() {
            let parsed =
                hl7v2::Message::parse(m.as_bytes()).and_then(|msg| hl7v2::parse_content(&msg, 480));
            assert!(parsed.is_ok(), "{m}: {parsed:?}");
        }
    }
}
