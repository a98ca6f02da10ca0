//! The ICD-10 diagnoses an application form offers when a doctor types: the codes county and
//! township referrals most often carry (stroke, hypertension, diabetes, chest and abdominal
//! disease, tumours, fractures, pregnancy), with Chinese and English names, searched by code
//! prefix or by a word of either name. A pure table: no IO. Any well-formed code may still be
//! typed (the workflow checks the form); the table is help, not a limit.

use serde::Serialize;

/// One diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The ICD-10 code.
    pub code: &'static str,
    /// The Chinese name.
    pub zh: &'static str,
    /// The English name.
    pub en: &'static str,
}

const fn d(code: &'static str, zh: &'static str, en: &'static str) -> Diagnosis {
    Diagnosis { code, zh, en }
}

/// The table, in code order.
pub const TABLE: &[Diagnosis] = &[
    d(
        "A15.0",
        "肺结核，经显微镜下痰检查证实",
        "Tuberculosis of lung, confirmed by sputum microscopy",
    ),
    d("A41.9", "败血症", "Sepsis, unspecified"),
    d("B18.1", "慢性乙型病毒性肝炎", "Chronic viral hepatitis B"),
    d(
        "C16.9",
        "胃恶性肿瘤",
        "Malignant neoplasm of stomach, unspecified",
    ),
    d(
        "C18.9",
        "结肠恶性肿瘤",
        "Malignant neoplasm of colon, unspecified",
    ),
    d("C20", "直肠恶性肿瘤", "Malignant neoplasm of rectum"),
    d("C22.0", "肝细胞癌", "Liver cell carcinoma"),
    d(
        "C25.9",
        "胰腺恶性肿瘤",
        "Malignant neoplasm of pancreas, unspecified",
    ),
    d(
        "C34.9",
        "支气管或肺恶性肿瘤",
        "Malignant neoplasm of bronchus or lung, unspecified",
    ),
    d(
        "C50.9",
        "乳房恶性肿瘤",
        "Malignant neoplasm of breast, unspecified",
    ),
    d(
        "C53.9",
        "子宫颈恶性肿瘤",
        "Malignant neoplasm of cervix uteri, unspecified",
    ),
    d("C61", "前列腺恶性肿瘤", "Malignant neoplasm of prostate"),
    d(
        "C71.9",
        "脑恶性肿瘤",
        "Malignant neoplasm of brain, unspecified",
    ),
    d(
        "C73",
        "甲状腺恶性肿瘤",
        "Malignant neoplasm of thyroid gland",
    ),
    d(
        "C79.3",
        "脑继发恶性肿瘤",
        "Secondary malignant neoplasm of brain",
    ),
    d("D25.9", "子宫平滑肌瘤", "Leiomyoma of uterus, unspecified"),
    d(
        "D32.9",
        "脑膜良性肿瘤",
        "Benign neoplasm of meninges, unspecified",
    ),
    d("D64.9", "贫血", "Anaemia, unspecified"),
    d("E04.1", "甲状腺单个结节", "Nontoxic single thyroid nodule"),
    d("E05.9", "甲状腺功能亢进症", "Thyrotoxicosis, unspecified"),
    d(
        "E11.2",
        "2型糖尿病伴有肾的并发症",
        "Type 2 diabetes mellitus with renal complications",
    ),
    d(
        "E11.9",
        "2型糖尿病，不伴有并发症",
        "Type 2 diabetes mellitus without complications",
    ),
    d("E78.5", "高脂血症", "Hyperlipidaemia, unspecified"),
    d("F20.9", "精神分裂症", "Schizophrenia, unspecified"),
    d("F32.9", "抑郁发作", "Depressive episode, unspecified"),
    d("G20", "帕金森病", "Parkinson disease"),
    d("G30.9", "阿尔茨海默病", "Alzheimer disease, unspecified"),
    d("G40.9", "癫痫", "Epilepsy, unspecified"),
    d(
        "G45.9",
        "短暂性脑缺血发作",
        "Transient cerebral ischaemic attack, unspecified",
    ),
    d(
        "I10",
        "特发性（原发性）高血压",
        "Essential (primary) hypertension",
    ),
    d("I20.0", "不稳定型心绞痛", "Unstable angina"),
    d("I20.9", "心绞痛", "Angina pectoris, unspecified"),
    d(
        "I21.9",
        "急性心肌梗死",
        "Acute myocardial infarction, unspecified",
    ),
    d("I25.1", "动脉硬化性心脏病", "Atherosclerotic heart disease"),
    d("I48", "心房颤动和扑动", "Atrial fibrillation and flutter"),
    d("I50.9", "心力衰竭", "Heart failure, unspecified"),
    d(
        "I61.9",
        "脑内出血",
        "Intracerebral haemorrhage, unspecified",
    ),
    d("I63.9", "脑梗死", "Cerebral infarction, unspecified"),
    d(
        "I64",
        "脑卒中，未特指为出血或梗死",
        "Stroke, not specified as haemorrhage or infarction",
    ),
    d(
        "I65.2",
        "颈动脉闭塞和狭窄",
        "Occlusion and stenosis of carotid artery",
    ),
    d(
        "I67.1",
        "脑动脉瘤，未破裂",
        "Cerebral aneurysm, nonruptured",
    ),
    d(
        "I70.2",
        "四肢动脉粥样硬化",
        "Atherosclerosis of arteries of extremities",
    ),
    d(
        "I80.2",
        "下肢深静脉血栓形成",
        "Phlebitis and thrombophlebitis of deep vessels of lower extremities",
    ),
    d("J18.9", "肺炎", "Pneumonia, unspecified"),
    d(
        "J44.9",
        "慢性阻塞性肺疾病",
        "Chronic obstructive pulmonary disease, unspecified",
    ),
    d("J45.9", "哮喘", "Asthma, unspecified"),
    d(
        "J84.1",
        "间质性肺病伴有纤维化",
        "Other interstitial pulmonary diseases with fibrosis",
    ),
    d(
        "J90",
        "胸腔积液",
        "Pleural effusion, not elsewhere classified",
    ),
    d("J93.9", "气胸", "Pneumothorax, unspecified"),
    d("K25.9", "胃溃疡", "Gastric ulcer"),
    d("K29.7", "胃炎", "Gastritis, unspecified"),
    d(
        "K35.8",
        "急性阑尾炎",
        "Acute appendicitis, other and unspecified",
    ),
    d("K56.7", "肠梗阻", "Ileus, unspecified"),
    d(
        "K74.6",
        "肝硬化",
        "Other and unspecified cirrhosis of liver",
    ),
    d(
        "K80.2",
        "胆囊结石不伴有胆囊炎",
        "Calculus of gallbladder without cholecystitis",
    ),
    d("K85.9", "急性胰腺炎", "Acute pancreatitis, unspecified"),
    d(
        "K92.2",
        "胃肠出血",
        "Gastrointestinal haemorrhage, unspecified",
    ),
    d("M17.9", "膝关节病", "Gonarthrosis, unspecified"),
    d("M48.0", "椎管狭窄", "Spinal stenosis"),
    d(
        "M51.2",
        "腰椎间盘移位",
        "Other specified intervertebral disc displacement",
    ),
    d("M81.9", "骨质疏松", "Osteoporosis, unspecified"),
    d("N18.9", "慢性肾脏病", "Chronic kidney disease, unspecified"),
    d("N20.0", "肾结石", "Calculus of kidney"),
    d("N40", "前列腺增生", "Hyperplasia of prostate"),
    d("O14.9", "子痫前期", "Pre-eclampsia, unspecified"),
    d(
        "O24.4",
        "妊娠期糖尿病",
        "Diabetes mellitus arising in pregnancy",
    ),
    d(
        "O80.9",
        "单胎顺产",
        "Single spontaneous delivery, unspecified",
    ),
    d("P07.3", "早产儿", "Other preterm infants"),
    d("P59.9", "新生儿黄疸", "Neonatal jaundice, unspecified"),
    d("R05", "咳嗽", "Cough"),
    d("R07.4", "胸痛", "Chest pain, unspecified"),
    d("R10.4", "腹痛", "Other and unspecified abdominal pain"),
    d("R51", "头痛", "Headache"),
    d("R56.8", "抽搐", "Other and unspecified convulsions"),
    d("S06.0", "脑震荡", "Concussion"),
    d(
        "S06.5",
        "创伤性硬脑膜下出血",
        "Traumatic subdural haemorrhage",
    ),
    d("S22.3", "肋骨骨折", "Fracture of rib"),
    d("S32.0", "腰椎骨折", "Fracture of lumbar vertebra"),
    d("S52.5", "桡骨下端骨折", "Fracture of lower end of radius"),
    d("S72.0", "股骨颈骨折", "Fracture of neck of femur"),
    d("S82.2", "胫骨骨干骨折", "Fracture of shaft of tibia"),
    d("T14.9", "损伤", "Injury, unspecified"),
    d(
        "Z34.9",
        "正常妊娠监督",
        "Supervision of normal pregnancy, unspecified",
    ),
];

/// Up to `limit` diagnoses matching `q`: a code prefix (any case, the dot optional) first,
/// then names containing `q` in either language; an empty `q` matches nothing.
pub fn search(q: &str, limit: usize) -> Vec<Diagnosis> {
    let q = q.trim();
    if q.is_empty() {
        return Vec::new();
    }
    let code = |c: &str| c.replace('.', "").to_ascii_uppercase();
    let wanted = code(q);
    let by_code = TABLE.iter().filter(|e| code(e.code).starts_with(&wanted));
    let lower = q.to_lowercase();
    let by_name = TABLE.iter().filter(|e| {
        !code(e.code).starts_with(&wanted)
            && (e.zh.contains(q) || e.en.to_lowercase().contains(&lower))
    });
    by_code.chain(by_name).take(limit).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_well_formed_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for e in TABLE {
            assert!(workflow::is_icd10(e.code), "{}", e.code);
            assert!(seen.insert(e.code), "{} twice", e.code);
            assert!(!e.zh.is_empty() && !e.en.is_empty(), "{}", e.code);
        }
    }

    #[test]
    fn codes_match_by_prefix_first_then_names_in_either_language() {
        let codes = |q: &str| search(q, 10).iter().map(|e| e.code).collect::<Vec<_>>();
        assert_eq!(codes("i63"), ["I63.9"]);
        assert_eq!(codes("I639"), ["I63.9"]);
        assert_eq!(codes("脑梗死"), ["I63.9"]);
        assert!(codes("I6").len() >= 5);
        assert_eq!(codes("pneumonia"), ["J18.9"]);
        assert!(codes("骨折").contains(&"S72.0"));
        assert!(codes("").is_empty());
        assert!(codes("zzz").is_empty());
        assert_eq!(search("I", 3).len(), 3);
    }
}
