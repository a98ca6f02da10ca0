//! The clinical content a message carries, as plain types (what `content` reads and the
//! appliance stores): persons, visits, orders, lab values, reports, documents, diagnoses.

use crate::charset::Charset;

/// MSH, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// MSH-9.1, e.g. "ORU".
    pub kind: String,
    /// MSH-9.2, e.g. "R01".
    pub event: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-11: P, T or D.
    pub processing: String,
    /// MSH-12.
    pub version: String,
    /// MSH-3.1.
    pub sending_application: String,
    /// MSH-4.1.
    pub sending_facility: String,
    /// MSH-5.1.
    pub receiving_application: String,
    /// MSH-6.1.
    pub receiving_facility: String,
    /// MSH-7.
    pub time: Option<i64>,
    /// MSH-18.
    pub charset: Charset,
}

/// A coded item: code, text, coding system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coded {
    /// The code (its text where the sender sent no code).
    pub code: String,
    /// Its text.
    pub text: String,
    /// The coding system, e.g. LN, I10.
    pub system: String,
}

/// A patient's identifiers from PID-3 (or MRG-1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// The resident identity card number, where one is marked as such (type NNCHN, NI, ID or
    /// CZ, or authority NNCHN/CHN/身份证).
    pub id_card: Option<String>,
    /// The sending institution's record number (type MR, then PI, PT, PN, or unmarked).
    pub record_number: Option<String>,
}

/// The person PID describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Identifiers.
    pub ids: Ids,
    /// Name ("" when not sent).
    pub name: String,
    /// M, F, O or U.
    pub sex: String,
    /// YYYY-MM-DD.
    pub birth_date: Option<String>,
    /// PID-13's first number.
    pub phone: String,
}

/// A visit from PV1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visit {
    /// PV1-19 (or a key made from the message when absent).
    pub number: String,
    /// PV1-2: I, O, E, P, R, B.
    pub class: String,
    /// PV1-3 as "ward room bed".
    pub location: String,
    /// PV1-10: the hospital service (department).
    pub department: String,
    /// PV1-7: the attending doctor's name.
    pub attending: String,
    /// PV1-44.
    pub admitted_at: Option<i64>,
    /// PV1-45.
    pub discharged_at: Option<i64>,
}

/// An order (ORC with OBR or RXO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    /// Placer order number (ORC-2, else OBR-2).
    pub placer: String,
    /// Filler order number (ORC-3, else OBR-3).
    pub filler: String,
    /// ORC-1: NW, CA, DC, SC, XO...
    pub control: String,
    /// ORC-5 or OBR-25.
    pub status: String,
    /// lab, exam or medication.
    pub kind: &'static str,
    /// What is ordered (OBR-4 or RXO-1).
    pub item: Coded,
    /// OBR-24.
    pub section: String,
    /// ORC-9, else OBR-6, else OBR-7.
    pub ordered_at: Option<i64>,
    /// ORC-12 or OBR-16: the ordering doctor.
    pub provider: String,
}

/// A lab value (OBX).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabResult {
    /// OBX-3.
    pub item: Coded,
    /// OBX-4.
    pub sub_id: String,
    /// OBX-2.
    pub value_type: String,
    /// OBX-5 as text.
    pub value: String,
    /// OBX-5 as a number, for NM and SN.
    pub numeric: Option<f64>,
    /// OBX-6.
    pub unit: String,
    /// OBX-7 as sent.
    pub range: String,
    /// The range's lower end.
    pub low: Option<f64>,
    /// The range's upper end.
    pub high: Option<f64>,
    /// OBX-8: H, L, HH, LL, A, AA, N ("" when not sent).
    pub flag: String,
    /// OBX-11.
    pub status: String,
    /// OBX-14, else OBR-7.
    pub observed_at: Option<i64>,
    /// SPM-4 or OBR-15.
    pub specimen: String,
}

/// An exam report (or a lab report's PDF).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// radiology, ultrasound, pathology, endoscopy, lab or other.
    pub kind: &'static str,
    /// OBR-4.
    pub item: Coded,
    /// OBR-25.
    pub status: String,
    /// OBR-7.
    pub observed_at: Option<i64>,
    /// OBR-22.
    pub reported_at: Option<i64>,
    /// The text values, one per line.
    pub text: String,
    /// A PDF sent in ED.
    pub pdf: Option<Vec<u8>>,
}

/// One OBR and what came with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultGroup {
    /// The order it answers.
    pub order: Order,
    /// Lab values.
    pub results: Vec<LabResult>,
    /// An exam report, or a lab PDF.
    pub report: Option<Report>,
}

/// An EMR document (MDM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// admission, progress, discharge or other.
    pub kind: &'static str,
    /// TXA-12.
    pub number: String,
    /// TXA-2's text, or the kind's name.
    pub title: String,
    /// TXA-17.
    pub status: String,
    /// TXA-4, else TXA-6, else MSH-7.
    pub time: Option<i64>,
    /// text/plain, text/html or application/pdf.
    pub mime: &'static str,
    /// The content.
    pub content: Vec<u8>,
}

/// A diagnosis (DG1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// DG1-3 (ICD-10).
    pub item: Coded,
    /// DG1-6: A admitting, W working, F final.
    pub kind: String,
    /// DG1-5.
    pub time: Option<i64>,
}

/// What a message asks the record to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Register or update the person (and the visit, if any).
    Person,
    /// A40: move everything of the prior patient to this one.
    Merge {
        /// MRG-1.
        prior: Ids,
    },
    /// Orders.
    Orders(Vec<Order>),
    /// Results.
    Results(Vec<ResultGroup>),
    /// A document.
    Document(Document),
}

/// A message read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// MSH.
    pub header: Header,
    /// PID.
    pub person: Person,
    /// PV1, where sent with a visit in it.
    pub visit: Option<Visit>,
    /// Whether the visit ends (A03).
    pub discharge: bool,
    /// DG1s.
    pub diagnoses: Vec<Diagnosis>,
    /// The rest.
    pub content: Content,
}
