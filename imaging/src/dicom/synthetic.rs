//! Synthetic studies written as real DICOM Part 10 files (explicit VR little endian), for a
//! demo that needs nothing outside the repository: a head CT phantom (a volume with correct
//! geometry and rescale, an acute infarct in the left MCA territory), a PA chest CR (2D,
//! 12-bit, imager pixel spacing) and a carotid ultrasound cine (multi-frame, frame time).
//! Pure: patient, UIDs and sizes in, file bytes out; the same input gives the same bytes.
//! Whoever stores them goes through the normal path (`store::import`).

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// Why a synthetic file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyntheticError {
    /// dicom-rs refused to build or write the object.
    #[error("writing synthetic {what}: {reason}")]
    Write {
        /// Which study.
        what: &'static str,
        /// dicom-rs's message.
        reason: String,
    },
    /// A size out of range.
    #[error("synthetic {field}: {reason}")]
    Size {
        /// The parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Whose study it is: the DICOM patient module.
#[derive(Debug, Clone, Copy)]
pub struct Patient<'a> {
    /// Patient ID (0010,0020).
    pub id: &'a str,
    /// Patient's Name (0010,0010), e.g. `王^建国` (written as UTF-8, ISO_IR 192).
    pub name: &'a str,
    /// `M`, `F` or `O`.
    pub sex: &'a str,
    /// YYYYMMDD.
    pub birth_date: &'a str,
}

/// Makes UIDs under the 2.25 root (an integer, as for a UUID): `root + n` for the n-th UID
/// asked for, so one root gives a reproducible set and different roots different sets.
#[derive(Debug, Clone)]
pub struct Uids {
    root: u128,
    next: u128,
}

impl Uids {
    /// UIDs from `root` (take it from a random source for UIDs nobody else makes).
    pub fn new(root: u128) -> Self {
        Self { root, next: 0 }
    }

    /// The next UID.
    pub fn next_uid(&mut self) -> String {
        let n = self.root.wrapping_add(self.next);
        self.next += 1;
        // 2.25 takes the integer without leading zeros; zero itself is the one exception.
        format!("2.25.{n}")
    }
}

/// One file: a name to write it under and its bytes.
#[derive(Debug, Clone)]
pub struct SyntheticFile {
    /// `<study>-<series>-<n>.dcm`.
    pub name: String,
    /// The Part 10 file.
    pub bytes: Vec<u8>,
}

/// A reproducible stream of numbers in [0, 1): xorshift64.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as f64 / 1_000_000.0
    }
}

/// What a study shares across its instances.
struct Study<'a> {
    patient: Patient<'a>,
    uid: String,
    date: &'a str,
    description: &'a str,
    accession: String,
}

fn element(tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

/// The patient, study, series and equipment modules every instance carries.
fn common(
    study: &Study<'_>,
    series_uid: &str,
    series_number: u16,
    modality: &str,
    sop_class: &str,
    sop_instance: &str,
) -> InMemDicomObject {
    let s = |v: &str| PrimitiveValue::from(v.trim_end_matches('\0'));
    InMemDicomObject::from_element_iter([
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        element(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
        element(tags::SOP_CLASS_UID, VR::UI, sop_class),
        element(tags::SOP_INSTANCE_UID, VR::UI, sop_instance),
        element(tags::STUDY_DATE, VR::DA, study.date),
        element(tags::SERIES_DATE, VR::DA, study.date),
        element(tags::STUDY_TIME, VR::TM, "093000"),
        element(tags::ACCESSION_NUMBER, VR::SH, s(&study.accession)),
        element(tags::MODALITY, VR::CS, modality),
        element(tags::MANUFACTURER, VR::LO, "appliance demo (synthetic)"),
        element(tags::INSTITUTION_NAME, VR::LO, "城东社区卫生服务中心"),
        element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "赵医生"),
        element(tags::STUDY_DESCRIPTION, VR::LO, study.description),
        element(tags::PATIENT_NAME, VR::PN, study.patient.name),
        element(tags::PATIENT_ID, VR::LO, study.patient.id),
        element(tags::PATIENT_BIRTH_DATE, VR::DA, study.patient.birth_date),
        element(tags::PATIENT_SEX, VR::CS, study.patient.sex),
        element(tags::STUDY_INSTANCE_UID, VR::UI, study.uid.as_str()),
        element(tags::SERIES_INSTANCE_UID, VR::UI, series_uid),
        element(tags::STUDY_ID, VR::SH, "1"),
        element(tags::SERIES_NUMBER, VR::IS, series_number.to_string()),
    ])
}

/// The image pixel module for `frames` frames of `rows` x `cols` grey samples.
fn pixels(obj: &mut InMemDicomObject, rows: u16, cols: u16, bits: u16, stored: u16, data: Vec<u8>) {
    obj.put(element(tags::SAMPLES_PER_PIXEL, VR::US, 1u16));
    obj.put(element(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    obj.put(element(tags::ROWS, VR::US, rows));
    obj.put(element(tags::COLUMNS, VR::US, cols));
    obj.put(element(tags::BITS_ALLOCATED, VR::US, bits));
    obj.put(element(tags::BITS_STORED, VR::US, stored));
    obj.put(element(tags::HIGH_BIT, VR::US, stored - 1));
    obj.put(element(tags::PIXEL_REPRESENTATION, VR::US, 0u16));
    let vr = if bits == 8 { VR::OB } else { VR::OW };
    obj.put(element(tags::PIXEL_DATA, vr, data));
}

fn write(
    what: &'static str,
    obj: InMemDicomObject,
    name: String,
) -> Result<SyntheticFile, SyntheticError> {
    let fail = |e: &dyn std::fmt::Display| SyntheticError::Write {
        what,
        reason: e.to_string(),
    };
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_version_name("APPLIANCE_DEMO"),
        )
        .map_err(|e| fail(&e))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| fail(&e))?;
    Ok(SyntheticFile { name, bytes })
}

fn words(values: impl Iterator<Item = u16>) -> Vec<u8> {
    values.flat_map(u16::to_le_bytes).collect()
}

/// Inside the ellipsoid centred at `c` with semi-axes `r` (mm)?
fn inside(p: [f64; 3], c: [f64; 3], r: [f64; 3]) -> bool {
    (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() <= 1.0
}

/// Hounsfield units of the head phantom at patient point `p` (mm, head centre at the origin;
/// LPS: +x is the patient's left, +y posterior, +z towards the head).
fn head_hu(p: [f64; 3]) -> f64 {
    let o = [0.0; 3];
    if !inside(p, o, [78.0, 98.0, 72.0]) {
        return -1000.0;
    }
    if !inside(p, o, [74.0, 94.0, 68.0]) {
        return 30.0; // scalp
    }
    if !inside(p, o, [69.0, 89.0, 63.0]) {
        return 1100.0; // skull
    }
    // The ventricles (CSF), either side of the midline.
    for side in [-1.0, 1.0] {
        if inside(p, [side * 9.0, -4.0, 12.0], [6.0, 22.0, 11.0]) {
            return 6.0;
        }
    }
    // An acute infarct in the left MCA territory: hypodense grey and white matter.
    if inside(p, [42.0, -8.0, 14.0], [17.0, 26.0, 20.0]) {
        return 21.0;
    }
    // White matter inside a cortical rim of grey matter.
    if inside(p, [0.0, 0.0, 4.0], [56.0, 76.0, 50.0]) {
        30.0
    } else {
        39.0
    }
}

/// A head CT phantom: `slices` axial slices of 256 x 256 (0.9 mm pixels, 3 mm apart), stored
/// values HU + 1024 (12 bits), brain window in the files.
pub fn ct_head(
    patient: Patient<'_>,
    uids: &mut Uids,
    slices: u16,
) -> Result<Vec<SyntheticFile>, SyntheticError> {
    if !(2..=400).contains(&slices) {
        return Err(SyntheticError::Size {
            field: "slices",
            reason: format!("{slices} must be 2-400"),
        });
    }
    let (n, spacing, step) = (256u16, 0.9f64, 3.0f64);
    let study = Study {
        patient,
        uid: uids.next_uid(),
        date: "20261206",
        description: "头颅 CT 平扫 (synthetic phantom)",
        accession: "DEMO-CT-1".into(),
    };
    let series = uids.next_uid();
    let frame_of_reference = uids.next_uid();
    let first = -step * f64::from(slices - 1) / 2.0;
    let corner = -spacing * f64::from(n - 1) / 2.0;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(usize::from(slices));
    for k in 0..slices {
        let z = first + step * f64::from(k);
        let sop = uids.next_uid();
        let mut obj = common(&study, &series, 1, "CT", uids::CT_IMAGE_STORAGE, &sop);
        obj.put(element(tags::SERIES_DESCRIPTION, VR::LO, "Head 3mm"));
        obj.put(element(tags::BODY_PART_EXAMINED, VR::CS, "HEAD"));
        obj.put(element(tags::INSTANCE_NUMBER, VR::IS, (k + 1).to_string()));
        obj.put(element(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            frame_of_reference.as_str(),
        ));
        obj.put(element(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            format!("{corner:.2}\\{corner:.2}\\{z:.2}"),
        ));
        obj.put(element(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            "1\\0\\0\\0\\1\\0",
        ));
        obj.put(element(tags::SLICE_LOCATION, VR::DS, format!("{z:.2}")));
        obj.put(element(tags::SLICE_THICKNESS, VR::DS, format!("{step:.1}")));
        obj.put(element(
            tags::PIXEL_SPACING,
            VR::DS,
            format!("{spacing}\\{spacing}"),
        ));
        obj.put(element(tags::KVP, VR::DS, "120"));
        obj.put(element(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
        obj.put(element(tags::RESCALE_SLOPE, VR::DS, "1"));
        obj.put(element(tags::RESCALE_TYPE, VR::LO, "HU"));
        obj.put(element(tags::WINDOW_CENTER, VR::DS, "40"));
        obj.put(element(tags::WINDOW_WIDTH, VR::DS, "80"));
        let mut values = Vec::with_capacity(usize::from(n) * usize::from(n));
        for row in 0..n {
            for col in 0..n {
                let p = [
                    corner + spacing * f64::from(col),
                    corner + spacing * f64::from(row),
                    z,
                ];
                let hu = head_hu(p);
                let hu = if hu > -1000.0 {
                    hu + (noise.next() - 0.5) * 8.0
                } else {
                    hu
                };
                values.push((hu + 1024.0).round().clamp(0.0, 4095.0) as u16);
            }
        }
        pixels(&mut obj, n, n, 16, 12, words(values.into_iter()));
        out.push(write("CT", obj, format!("ct-{:03}.dcm", k + 1))?);
    }
    Ok(out)
}

/// A PA chest radiograph: 600 rows x 512 columns of 12-bit values (brighter is denser), 0.7 mm
/// imager pixel spacing (no pixel spacing: measured at the detector).
pub fn cr_chest(patient: Patient<'_>, uids: &mut Uids) -> Result<SyntheticFile, SyntheticError> {
    let (rows, cols, spacing) = (600u16, 512u16, 0.7f64);
    let study = Study {
        patient,
        uid: uids.next_uid(),
        date: "20261205",
        description: "胸部正位片 (synthetic)",
        accession: "DEMO-CR-1".into(),
    };
    let series = uids.next_uid();
    let sop = uids.next_uid();
    let mut obj = common(
        &study,
        &series,
        1,
        "CR",
        uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        &sop,
    );
    obj.put(element(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY"));
    obj.put(element(tags::SERIES_DESCRIPTION, VR::LO, "Chest PA"));
    obj.put(element(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"));
    obj.put(element(tags::VIEW_POSITION, VR::CS, "PA"));
    obj.put(element(tags::PATIENT_ORIENTATION, VR::CS, "L\\F"));
    obj.put(element(tags::INSTANCE_NUMBER, VR::IS, "1"));
    obj.put(element(
        tags::IMAGER_PIXEL_SPACING,
        VR::DS,
        format!("{spacing}\\{spacing}"),
    ));
    obj.put(element(tags::WINDOW_CENTER, VR::DS, "1800"));
    obj.put(element(tags::WINDOW_WIDTH, VR::DS, "3200"));
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let (w, h) = (f64::from(cols), f64::from(rows));
    let mut values = Vec::with_capacity(usize::from(rows) * usize::from(cols));
    for r in 0..rows {
        for c in 0..cols {
            // Normalised image coordinates: x across (-1 left .. 1 right of the image), y down.
            let x = (f64::from(c) - w / 2.0) / (w / 2.0);
            let y = f64::from(r) / h;
            let body = x.abs() < 0.86 - 0.12 * (1.0 - y).powi(3);
            let mut v: f64 = if body { 1500.0 } else { 150.0 };
            if body {
                // Lungs: two tall ellipses either side of the mediastinum, domed below.
                let lung = |cx: f64| ((x - cx) / 0.3).powi(2) + ((y - 0.45) / 0.33).powi(2) < 1.0;
                let in_lung = lung(-0.38) || lung(0.38);
                if in_lung {
                    v = 520.0;
                    // Ribs: bands that curve down from the spine across each lung.
                    let curve = y + 0.18 * (x.abs() - 0.1).max(0.0).powi(2) * 3.0;
                    if (curve * 22.0).fract() < 0.28 {
                        v += 650.0;
                    }
                }
                // The heart, to the image's right of the midline (the patient's left).
                if ((x - 0.12) / 0.26).powi(2) + ((y - 0.62) / 0.17).powi(2) < 1.0 {
                    v = 2100.0;
                }
                // Spine and mediastinum.
                if x.abs() < 0.07 {
                    v = v.max(2500.0);
                }
                // Clavicles.
                let clavicle = (y - 0.14 - 0.05 * x.abs()).abs() < 0.012 && x.abs() < 0.6;
                if clavicle {
                    v = 2800.0;
                }
                // Below the diaphragm: abdomen.
                if y > 0.8 {
                    v = v.max(1900.0);
                }
            }
            v += (noise.next() - 0.5) * 60.0;
            values.push(v.round().clamp(0.0, 4095.0) as u16);
        }
    }
    pixels(&mut obj, rows, cols, 16, 12, words(values.into_iter()));
    write("CR", obj, "cr-chest-pa.dcm".into())
}

/// A carotid ultrasound cine: `frames` frames of 240 x 320 8-bit grey at 25 frames/s (frame
/// time 40 ms), a sector with speckle and the artery's lumen pulsing with the heart beat.
pub fn us_cine(
    patient: Patient<'_>,
    uids: &mut Uids,
    frames: u16,
) -> Result<SyntheticFile, SyntheticError> {
    if !(2..=500).contains(&frames) {
        return Err(SyntheticError::Size {
            field: "frames",
            reason: format!("{frames} must be 2-500"),
        });
    }
    let (rows, cols) = (240u16, 320u16);
    let study = Study {
        patient,
        uid: uids.next_uid(),
        date: "20261205",
        description: "颈动脉超声 (synthetic)",
        accession: "DEMO-US-1".into(),
    };
    let series = uids.next_uid();
    let sop = uids.next_uid();
    let mut obj = common(
        &study,
        &series,
        1,
        "US",
        uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
        &sop,
    );
    obj.put(element(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY"));
    obj.put(element(tags::SERIES_DESCRIPTION, VR::LO, "Carotid L, cine"));
    obj.put(element(tags::BODY_PART_EXAMINED, VR::CS, "NECK"));
    obj.put(element(tags::INSTANCE_NUMBER, VR::IS, "1"));
    obj.put(element(tags::NUMBER_OF_FRAMES, VR::IS, frames.to_string()));
    obj.put(element(tags::FRAME_TIME, VR::DS, "40"));
    obj.put(element(tags::CINE_RATE, VR::IS, "25"));
    obj.put(element(
        tags::FRAME_INCREMENT_POINTER,
        VR::AT,
        PrimitiveValue::Tags([tags::FRAME_TIME].into_iter().collect()),
    ));
    let mut speckle = Noise(0x1234_5678_9abc_def1);
    // Speckle is tied to the tissue, so it stays put from frame to frame.
    let texture: Vec<f64> = (0..usize::from(rows) * usize::from(cols))
        .map(|_| speckle.next())
        .collect();
    let mut data = Vec::with_capacity(usize::from(frames) * usize::from(rows) * usize::from(cols));
    let (apex_x, apex_y) = (f64::from(cols) / 2.0, -20.0);
    for f in 0..frames {
        // 72 beats a minute: the lumen widens in systole.
        let t = f64::from(f) * 0.040;
        let beat = (t * 1.2 * std::f64::consts::TAU).sin().max(0.0);
        let radius = 26.0 + 5.0 * beat;
        for r in 0..rows {
            for c in 0..cols {
                let (x, y) = (f64::from(c) - apex_x, f64::from(r) - apex_y);
                let depth = x.hypot(y);
                let angle = x.atan2(y);
                let in_sector = angle.abs() < 0.62 && depth > 30.0 && depth < 255.0;
                let i = usize::from(r) * usize::from(cols) + usize::from(c);
                let v = if !in_sector {
                    0.0
                } else {
                    let lumen = (f64::from(c) - 160.0).hypot(f64::from(r) - 120.0);
                    let gain = 1.0 - (depth - 30.0) / 450.0;
                    let tissue = if lumen < radius {
                        8.0 + 10.0 * texture[i]
                    } else if lumen < radius + 4.0 {
                        200.0 + 40.0 * texture[i] // the bright intima-media
                    } else {
                        60.0 + 110.0 * texture[i] * texture[(i * 7) % texture.len()]
                    };
                    tissue * gain
                };
                data.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    pixels(&mut obj, rows, cols, 8, 8, data);
    write("US", obj, "us-carotid-cine.dcm".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Patient<'static> {
        Patient {
            id: "DEMO0001",
            name: "王^建国",
            sex: "M",
            birth_date: "19560314",
        }
    }

    fn open(file: &SyntheticFile) -> dicom_object::DefaultDicomObject {
        dicom_object::from_reader(&file.bytes[128..]).expect("a Part 10 file dicom-rs reads")
    }

    #[test]
    fn uids_are_distinct_and_reproducible() {
        let mut a = Uids::new(7 << 100);
        let mut b = Uids::new(7 << 100);
        let first: Vec<String> = (0..5).map(|_| a.next_uid()).collect();
        let again: Vec<String> = (0..5).map(|_| b.next_uid()).collect();
        assert_eq!(first, again);
        let set: std::collections::HashSet<&String> = first.iter().collect();
        assert_eq!(set.len(), 5);
        assert!(
            first
                .iter()
                .all(|u| u.starts_with("2.25.") && u.len() <= 64)
        );
    }

    #[test]
    fn the_phantom_has_skull_brain_and_an_infarct() {
        assert_eq!(head_hu([0.0, 0.0, 100.0]), -1000.0);
        assert_eq!(head_hu([71.5, 0.0, 0.0]), 1100.0);
        assert_eq!(head_hu([9.0, -4.0, 12.0]), 6.0);
        assert_eq!(head_hu([42.0, -8.0, 14.0]), 21.0);
        // The mirror point on the patient's right is healthy grey matter.
        assert_eq!(head_hu([-60.0, -8.0, 14.0]), 39.0);
    }

    #[test]
    fn ct_slices_carry_geometry_and_values() {
        let mut uids = Uids::new(1 << 120);
        let files = ct_head(patient(), &mut uids, 4).expect("CT");
        assert_eq!(files.len(), 4);
        let obj = open(&files[1]);
        let text = |t| {
            obj.element(t)
                .expect("element")
                .to_str()
                .expect("text")
                .into_owned()
        };
        assert_eq!(text(tags::MODALITY), "CT");
        assert_eq!(text(tags::PATIENT_NAME), "王^建国");
        assert_eq!(
            text(tags::IMAGE_POSITION_PATIENT),
            "-114.75\\-114.75\\-1.50"
        );
        let data = obj
            .element(tags::PIXEL_DATA)
            .expect("pixels")
            .to_bytes()
            .expect("bytes");
        assert_eq!(data.len(), 256 * 256 * 2);
        // The centre pixel lies in white matter (HU 30 +- 4 noise, stored + 1024).
        let at = (128 * 256 + 128) * 2;
        let v = i32::from(u16::from_le_bytes([data[at], data[at + 1]])) - 1024;
        assert!((26..=34).contains(&v), "{v}");
        assert!(matches!(
            ct_head(patient(), &mut uids, 1),
            Err(SyntheticError::Size {
                field: "slices",
                ..
            })
        ));
    }

    #[test]
    fn cr_and_us_are_2d_and_multi_frame() {
        let mut uids = Uids::new(3 << 110);
        let cr = open(&cr_chest(patient(), &mut uids).expect("CR"));
        let text = |o: &dicom_object::DefaultDicomObject, t| {
            o.element(t)
                .expect("element")
                .to_str()
                .expect("text")
                .into_owned()
        };
        assert_eq!(text(&cr, tags::MODALITY), "CR");
        assert_eq!(text(&cr, tags::IMAGER_PIXEL_SPACING), "0.7\\0.7");
        assert!(cr.element(tags::PIXEL_SPACING).is_err());
        let us = open(&us_cine(patient(), &mut uids, 6).expect("US"));
        assert_eq!(text(&us, tags::NUMBER_OF_FRAMES), "6");
        assert_eq!(text(&us, tags::FRAME_TIME), "40");
        let data = us
            .element(tags::PIXEL_DATA)
            .expect("pixels")
            .to_bytes()
            .expect("bytes");
        assert_eq!(data.len(), 6 * 240 * 320);
        // The lumen changes size with the beat: frames differ, the sector's corners stay black.
        let frame = 240 * 320;
        assert_ne!(data[..frame], data[2 * frame..3 * frame]);
        assert_eq!(data[0], 0);
    }
}
