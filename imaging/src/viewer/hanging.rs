//! Hanging protocols: which image of a study each viewport of a layout shows, from the
//! images' tags alone (pure). Mammography: right and left craniocaudal views above, right and
//! left mediolateral obliques below, mirrored so the chest walls meet in the middle.

use serde_json::Value as Json;

use super::view::Hung;
use crate::uid::Uid;

/// One stored image: its series, where it starts in the series' stack, its DICOM JSON.
#[derive(Debug, Clone)]
pub struct Image {
    /// Series Instance UID.
    pub series: Uid,
    /// Its first frame's place in the series' stack.
    pub frame: usize,
    /// DICOM JSON metadata.
    pub metadata: Json,
}

/// A study's images (series UID, frames, metadata) in stack order, with their places (a
/// series whose UID is not one is left out).
pub fn images(rows: &[(String, u32, Json)]) -> Vec<Image> {
    let mut out = Vec::with_capacity(rows.len());
    let mut at = 0usize;
    let mut last: Option<&str> = None;
    for (series, frames, metadata) in rows {
        if last != Some(series.as_str()) {
            at = 0;
            last = Some(series);
        }
        let Ok(uid) = Uid::parse(series) else {
            continue;
        };
        out.push(Image {
            series: uid,
            frame: at,
            metadata: metadata.clone(),
        });
        at += *frames as usize;
    }
    out
}

fn text(m: &Json, tag: &str, k: usize) -> Option<String> {
    m[tag]["Value"][k]
        .as_str()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
}

/// The viewports of the mammography hanging, in order R CC, L CC, R MLO, L MLO (a 2x2 grid),
/// each the first image of that breast and view; `None` where the study has none.
pub fn mammography(images: &[Image]) -> [Option<Hung>; 4] {
    let mut out: [Option<Hung>; 4] = Default::default();
    for img in images {
        let m = &img.metadata;
        // Image Laterality, else the series' Laterality.
        let Some(side) = text(m, "00200062", 0).or_else(|| text(m, "00200060", 0)) else {
            continue;
        };
        let view = text(m, "00185101", 0).unwrap_or_default();
        let slot = match (side.as_str(), view.as_str()) {
            ("R", "CC") => 0,
            ("L", "CC") => 1,
            ("R", "MLO") => 2,
            ("L", "MLO") => 3,
            _ => continue,
        };
        if out[slot].is_some() {
            continue;
        }
        // Patient Orientation's first value is the direction along a row (left to right on
        // screen). The right breast, hung on the left, has its chest wall (posterior) on its
        // right edge; the left breast on its left edge, so rows run anterior.
        let want = if side == "R" { 'P' } else { 'A' };
        let against = if side == "R" { 'A' } else { 'P' };
        let along = text(m, "00200020", 0).unwrap_or_default();
        let flip_h = along.contains(against) && !along.contains(want);
        out[slot] = Some(Hung {
            series: img.series.clone(),
            frame: img.frame,
            flip_h,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mg(side: &str, view: &str, orientation: &str) -> Json {
        json!({
            "00200062": { "vr": "CS", "Value": [side] },
            "00185101": { "vr": "CS", "Value": [view] },
            "00200020": { "vr": "CS", "Value": orientation.split('\\').collect::<Vec<_>>() },
        })
    }

    #[test]
    fn four_views_hang_mirrored_with_the_chest_walls_meeting() {
        let rows = vec![
            ("1.2.1".to_owned(), 1, mg("L", "MLO", "A\\FR")),
            ("1.2.1".to_owned(), 1, mg("R", "CC", "A\\L")),
            ("1.2.2".to_owned(), 1, mg("L", "CC", "A\\R")),
            ("1.2.2".to_owned(), 1, mg("R", "MLO", "P\\FL")),
            // A second right CC: the first is shown.
            ("1.2.2".to_owned(), 1, mg("R", "CC", "P\\L")),
        ];
        let hung = mammography(&images(&rows));
        let h = |i: usize| hung[i].clone().expect("hung");
        // R CC: the first series' second image; stored anterior along rows, so mirrored.
        assert_eq!(
            h(0),
            Hung {
                series: Uid::parse("1.2.1").unwrap(),
                frame: 1,
                flip_h: true
            }
        );
        assert_eq!(
            (h(1).series.as_str(), h(1).frame, h(1).flip_h),
            ("1.2.2", 0, false)
        );
        assert_eq!((h(2).frame, h(2).flip_h), (1, false));
        assert_eq!(
            (h(3).series.as_str(), h(3).frame, h(3).flip_h),
            ("1.2.1", 0, false)
        );
    }

    #[test]
    fn missing_views_and_tags_leave_their_viewport_empty() {
        let rows = vec![
            (
                "1.2.1".to_owned(),
                3,
                json!({ "00185101": { "vr": "CS", "Value": ["CC"] } }),
            ),
            ("1.2.1".to_owned(), 1, mg("R", "CC", "")),
        ];
        let hung = mammography(&images(&rows));
        // The image after a 3-frame one starts at frame 3; no orientation: not mirrored.
        assert_eq!(
            hung[0],
            Some(Hung {
                series: Uid::parse("1.2.1").unwrap(),
                frame: 3,
                flip_h: false
            })
        );
        assert!(hung[1..].iter().all(Option::is_none));
    }
}
