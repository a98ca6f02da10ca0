//! A structural pre-check of a Part 10 file before dicom-rs parses it: every element, item and
//! fragment length must fit in the bytes that remain. dicom-rs allocates (and zero-fills) a
//! value's claimed length before reading it, so a 674-byte file that claims a 4 GiB value costs
//! 4 GiB of memory and tens of seconds (pydicom's UN_sequence.dcm); such a file is refused here
//! in microseconds. The walk follows sequences and items (defined or undefined length),
//! encapsulated pixel data fragments, and UN sequences of undefined length (implicit VR little
//! endian inside, PS3.5 6.2.2).

use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Opens a DICOM file after [`check`]ing it: the way every file is opened here (a stored
/// file that was encrypted at rest is opened first, `store::sealing`).
pub fn open_file(path: &std::path::Path) -> Result<dicom_object::DefaultDicomObject, String> {
    let bytes = crate::store::sealing::read(path).map_err(|e| e.to_string())?;
    parse(&bytes, false).map(|(obj, _)| obj)
}

/// Parses a Part 10 file after [`scan`]ning it, the whole of it or (`until_pixels`) up to its
/// Pixel Data. A data set written in implicit VR under a meta group that names an explicit VR
/// transfer syntax (some writers did this with JPEG Baseline; pydicom reads such files too) is
/// read as implicit VR, keeping the declared transfer syntax for its pixel data.
pub fn parse(
    bytes: &[u8],
    until_pixels: bool,
) -> Result<(dicom_object::DefaultDicomObject, Scan), String> {
    use dicom_dictionary_std::tags;
    let bytes = with_group_length(bytes);
    let scan = scan(&bytes)?;
    if scan.implicit_data_set {
        let start = if bytes.get(128..132) == Some(b"DICM") {
            128
        } else {
            0
        };
        let mut reader = bytes.get(start..).unwrap_or_default();
        let meta =
            dicom_object::FileMetaTable::from_reader(&mut reader).map_err(|e| e.to_string())?;
        let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(reader, &ts)
            .map_err(|e| format!("data set in implicit VR under an explicit VR meta group: {e}"))?;
        return Ok((obj.with_exact_meta(meta), scan));
    }
    let options = dicom_object::OpenFileOptions::new();
    let options = if until_pixels {
        options.read_until(tags::PIXEL_DATA)
    } else {
        options
    };
    let obj = options.from_reader(&*bytes).map_err(|e| e.to_string())?;
    Ok((obj, scan))
}

/// The file with a File Meta Information Group Length (0002,0000) when its meta group lacks
/// one (some writers leave it out, and dicom-rs needs it to find where the meta group ends);
/// the file itself when it has one or is not a Part 10 file. A meta group without the preamble
/// and "DICM" gets them too.
pub fn with_group_length(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let (prefix, start): (&[u8], usize) = if bytes.get(128..132) == Some(b"DICM") {
        (&bytes[..132], 132)
    } else if bytes.get(..4) == Some(b"DICM") {
        (&bytes[..4], 4)
    } else if bytes.get(..2) == Some(&[0x02, 0x00]) && bytes.get(4..6) == Some(b"UL".as_slice())
        || bytes.get(..2) == Some(&[0x02, 0x00]) && bytes.get(4..6) == Some(b"OB".as_slice())
        || bytes.get(..2) == Some(&[0x02, 0x00]) && bytes.get(4..6) == Some(b"UI".as_slice())
    {
        (&[][..], 0)
    } else {
        return Cow::Borrowed(bytes);
    };
    let first = bytes.get(start..start + 4);
    if first == Some(&[0x02, 0x00, 0x00, 0x00]) && start > 0 {
        return Cow::Borrowed(bytes);
    }
    // Walk the meta elements (explicit VR little endian) to find where the group ends.
    let mut pos = start;
    while let Some(h) = bytes.get(pos..pos + 8) {
        if u16::from_le_bytes([h[0], h[1]]) != 0x0002 {
            break;
        }
        let (len, header) = if long_vr(&h[4..6]) {
            match bytes.get(pos + 8..pos + 12) {
                Some(l) => (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12),
                None => return Cow::Borrowed(bytes),
            }
        } else {
            (usize::from(u16::from_le_bytes([h[6], h[7]])), 8)
        };
        if pos + header + len > bytes.len() {
            return Cow::Borrowed(bytes);
        }
        pos += header + len;
    }
    let Ok(group) = u32::try_from(pos - start) else {
        return Cow::Borrowed(bytes);
    };
    let mut out = Vec::with_capacity(bytes.len() + 144);
    if prefix.is_empty() {
        out.extend_from_slice(&[0u8; 128]);
        out.extend_from_slice(b"DICM");
    } else {
        out.extend_from_slice(prefix);
    }
    if first != Some(&[0x02, 0x00, 0x00, 0x00]) {
        out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        out.extend_from_slice(&group.to_le_bytes());
    }
    out.extend_from_slice(&bytes[start..]);
    Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sequence,
    Item,
    Fragments,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    implicit: bool,
    big_endian: bool,
    end: Option<usize>,
}

/// Checks the lengths a Part 10 file claims. Files this walk cannot follow (no DICM prefix,
/// a deflated data set) are left to the parser.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    scan(bytes).map(|_| ())
}

/// What [`scan`] saw besides the lengths being sound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// The VR of the top-level Pixel Data element, when there is one ("OW" in implicit VR).
    pub pixel_data_vr: Option<[u8; 2]>,
    /// The meta group names explicit VR little endian (or a compressed syntax built on it) but
    /// the data set is in implicit VR: its first element has no VR letters.
    pub implicit_data_set: bool,
}

/// [`check`], also reporting whether the data set has pixel data (so a parser may stop before
/// it).
pub fn scan(bytes: &[u8]) -> Result<Scan, String> {
    let start = if bytes.get(128..132) == Some(b"DICM") {
        132
    } else if bytes.get(..4) == Some(b"DICM") {
        4
    } else {
        return Ok(Scan::default());
    };
    // The file meta group: explicit VR little endian. With its group length first (as
    // dicom-rs requires), it spans whole elements until that many bytes are read, whatever
    // their tags, and the data set starts after them (read by group alone, a file whose meta
    // group held another group's element had its data set walked from elsewhere than dicom-rs
    // read it; found by the `dicom_parse` fuzz target). Without it, the 0002 elements.
    let mut pos = start;
    let mut ts = String::new();
    let group_length = match bytes.get(pos..pos + 8) {
        Some(h) if h[..4] == [0x02, 0x00, 0x00, 0x00] => {
            let (len, header) = if long_vr(&h[4..6]) {
                let l = bytes
                    .get(pos + 8..pos + 12)
                    .ok_or("file meta group truncated")?;
                (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), 12)
            } else {
                (u32::from(u16::from_le_bytes([h[6], h[7]])), 8)
            };
            if len != 4 {
                return Err(format!(
                    "the file meta group length (0002,0000) has {len} bytes; it must have 4"
                ));
            }
            let v = bytes
                .get(pos + header..pos + header + 4)
                .ok_or("file meta group truncated")?;
            pos += header + 4;
            Some(u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize)
        }
        _ => None,
    };
    let meta_start = pos;
    while let Some(h) = bytes.get(pos..pos + 8) {
        let group = u16::from_le_bytes([h[0], h[1]]);
        match group_length {
            Some(gl) if pos - meta_start >= gl => break,
            None if group != 0x0002 => break,
            _ => {}
        }
        let elem = u16::from_le_bytes([h[2], h[3]]);
        let (len, header) = if long_vr(&h[4..6]) {
            let l = bytes
                .get(pos + 8..pos + 12)
                .ok_or("file meta group truncated")?;
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), 12)
        } else {
            (u32::from(u16::from_le_bytes([h[6], h[7]])), 8)
        };
        let value = bytes
            .get(pos + header..pos + header + len as usize)
            .ok_or_else(|| {
                format!("file meta element ({group:04X},{elem:04X}) runs past the end")
            })?;
        if group == 0x0002 && elem == 0x0010 {
            ts = String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .to_owned();
        }
        pos += header + len as usize;
    }
    let (implicit, big_endian) = match ts.as_str() {
        "1.2.840.10008.1.2" => (true, false),
        "1.2.840.10008.1.2.2" => (false, true),
        // Deflated: the data set is inflated (bounded) and its lengths checked like any other
        // (the `dicom_parse` fuzz target found a few-KB deflated file whose inflated data set
        // made dicom-rs allocate 2.4 GB).
        "1.2.840.10008.1.2.1.99" => {
            let inflated = inflate(bytes.get(pos..).unwrap_or_default())?;
            return walk(&inflated, 0, false, false);
        }
        _ => (false, false),
    };
    let misdeclared = !implicit
        && !big_endian
        && bytes
            .get(pos + 4..pos + 6)
            .is_some_and(|vr| !(vr[0].is_ascii_uppercase() && vr[1].is_ascii_uppercase()));
    let mut scan = walk(bytes, pos, implicit || misdeclared, big_endian)?;
    scan.implicit_data_set = misdeclared;
    Ok(scan)
}

/// The most a deflated data set may inflate to.
pub const MAX_INFLATED: u64 = 512 << 20;

/// Inflates a deflated data set (raw deflate, PS3.5 A.5), refusing one that does not inflate
/// or inflates beyond [`MAX_INFLATED`].
fn inflate(deflated: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the deflated data set does not inflate: {e}"))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(format!(
            "the deflated data set inflates beyond {} MiB",
            MAX_INFLATED >> 20
        ));
    }
    Ok(out)
}

/// VRs with a reserved field and a 4-byte length in explicit VR: all but the short ones. A VR
/// code this build does not know is read as UN, with a 4-byte length, as PS3.5 6.2 asks of
/// readers and as dicom-rs does (read with a 2-byte length here, such an element hid a
/// 3.7 GB length from this walk; found by the `dicom` fuzz target).
fn long_vr(vr: &[u8]) -> bool {
    !matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// The VR dicom-rs gives an element in implicit VR: OW for pixel and overlay data, the
/// dictionary's otherwise (US for US-or-SS, OW for OB-or-OW), UN for a tag it does not know.
fn implicit_vr(tag: Tag) -> [u8; 2] {
    if tag == Tag(0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return *b"OW";
    }
    StandardDataDictionary
        .by_tag(tag)
        .map_or(*b"UN", |e| e.vr().relaxed().to_bytes())
}

/// The size of one value of a binary VR (1 for text and bytes).
fn value_width(vr: &[u8; 2]) -> u32 {
    match vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"OL" | b"FL" | b"OF" | b"AT" => 4,
        b"FD" | b"OD" | b"UV" | b"SV" | b"OV" => 8,
        _ => 1,
    }
}

fn walk(bytes: &[u8], mut pos: usize, implicit: bool, big_endian: bool) -> Result<Scan, String> {
    let mut scan = Scan::default();
    let root = Frame {
        kind: Kind::Item,
        implicit,
        big_endian,
        end: Some(bytes.len()),
    };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        while stack
            .last()
            .is_some_and(|f| f.end.is_some_and(|e| pos >= e))
        {
            stack.pop();
        }
        let frame = stack.last().copied().unwrap_or(root);
        let Some(h) = bytes.get(pos..pos + 8) else {
            // The end, or a truncated header: the parser reports the latter.
            return Ok(scan);
        };
        let u16_at = |b: &[u8]| {
            if frame.big_endian {
                u16::from_be_bytes([b[0], b[1]])
            } else {
                u16::from_le_bytes([b[0], b[1]])
            }
        };
        let u32_at = |b: &[u8]| {
            if frame.big_endian {
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            } else {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }
        };
        let tag = Tag(u16_at(&h[0..2]), u16_at(&h[2..4]));
        let remaining = |from: usize| bytes.len().saturating_sub(from);
        let too_long = |len: u32, at: usize| {
            format!(
                "element ({:04X},{:04X}) claims {len} bytes but only {} remain",
                tag.0,
                tag.1,
                remaining(at)
            )
        };
        if tag.0 == 0xFFFE {
            let len = u32_at(&h[4..8]);
            pos += 8;
            // Delimitation items have no value (PS3.5 7.5); dicom-rs 0.10 reads a length
            // found there as the next element's and can allocate gigabytes for a few bytes
            // of input (found by the `dicom` fuzz target).
            // Group FFFE holds items and delimiters only (PS3.5 7.5); dicom-rs 0.10 misreads
            // any other tag there and went on to allocate 3 GB for a 2 KB file (found by the
            // `dicom_parse` fuzz target).
            if !matches!(tag.1, 0xE000 | 0xE00D | 0xE0DD) {
                return Err(format!(
                    "(FFFE,{:04X}) is not an item or delimitation tag",
                    tag.1
                ));
            }
            if matches!(tag.1, 0xE00D | 0xE0DD) && len != 0 {
                return Err(format!(
                    "delimitation item (FFFE,{:04X}) has length {len}; it must be 0",
                    tag.1
                ));
            }
            match tag.1 {
                0xE000 if frame.kind == Kind::Fragments => {
                    if len == UNDEFINED || len as usize > remaining(pos) {
                        return Err(too_long(len, pos));
                    }
                    pos += len as usize;
                }
                // An item belongs in a sequence (PS3.5 7.5); dicom-rs 0.10 reads one met in a
                // data set as an element and went on to decode a 1 KB file into gigabytes of
                // text (found by the `dicom_parse` fuzz target).
                0xE000 if frame.kind == Kind::Item => {
                    return Err(
                        "an item (FFFE,E000) stands in a data set, outside any sequence".into(),
                    );
                }
                0xE000 => {
                    if len != UNDEFINED && len as usize > remaining(pos) {
                        return Err(too_long(len, pos));
                    }
                    stack.push(Frame {
                        kind: Kind::Item,
                        end: (len != UNDEFINED).then(|| pos + len as usize),
                        ..frame
                    });
                }
                0xE00D if frame.kind == Kind::Item && frame.end.is_none() => {
                    stack.pop();
                }
                0xE0DD
                    if matches!(frame.kind, Kind::Sequence | Kind::Fragments)
                        && frame.end.is_none() =>
                {
                    stack.pop();
                }
                _ => {}
            }
            continue;
        }
        let (vr, len, header): ([u8; 2], u32, usize) = if frame.implicit {
            (implicit_vr(tag), u32_at(&h[4..8]), 8)
        } else if long_vr(&h[4..6]) {
            let Some(l) = bytes.get(pos + 8..pos + 12) else {
                return Ok(scan);
            };
            ([h[4], h[5]], u32_at(l), 12)
        } else {
            ([h[4], h[5]], u32::from(u16_at(&h[6..8])), 8)
        };
        pos += header;
        if stack.is_empty() && tag == Tag(0x7FE0, 0x0010) {
            scan.pixel_data_vr = Some(if frame.implicit { *b"OW" } else { vr });
        }
        if len == UNDEFINED {
            let is_pixel_data = tag == Tag(0x7FE0, 0x0010);
            match &vr {
                b"SQ" => stack.push(Frame {
                    kind: Kind::Sequence,
                    end: None,
                    ..frame
                }),
                // Pixel Data of undefined length is encapsulated, whatever the VR encoding
                // (dicom-rs looks at the tag alone, at any depth).
                b"OB" | b"OW" if is_pixel_data => stack.push(Frame {
                    kind: Kind::Fragments,
                    end: None,
                    ..frame
                }),
                _ if frame.implicit && is_pixel_data => stack.push(Frame {
                    kind: Kind::Fragments,
                    end: None,
                    ..frame
                }),
                // A UN of undefined length is a sequence in implicit VR little endian (PS3.5
                // 6.2.2). dicom-rs 0.10 reads on in explicit VR, misreads the items and then
                // allocates whatever length it finds: refused until the parser follows.
                b"UN" if !frame.implicit => {
                    return Err(format!(
                        "element ({:04X},{:04X}) is a UN sequence of undefined length, which \
                         this parser cannot read safely",
                        tag.0, tag.1
                    ));
                }
                // dicom-rs reads any other element of undefined length as a sequence.
                _ if frame.implicit => stack.push(Frame {
                    kind: Kind::Sequence,
                    end: None,
                    ..frame
                }),
                _ => {
                    return Err(format!(
                        "element ({:04X},{:04X}) has an undefined length but is not a sequence \
                         or pixel data",
                        tag.0, tag.1
                    ));
                }
            }
            continue;
        }
        if len as usize > remaining(pos) {
            return Err(too_long(len, pos));
        }
        // dicom-rs 0.10 reads whole numbers of a binary VR's values and steps past the rest
        // without reading it, so after a UL of 21,329 bytes it read on one byte short of where
        // the value ends, found an OB of 3.7 GB there and reserved it (found by the
        // `dicom_parse` fuzz target). PS3.5 6.2 makes these lengths whole multiples.
        let width = value_width(&vr);
        if len % width != 0 {
            return Err(format!(
                "element ({:04X},{:04X}) of VR {} has {len} bytes, not a multiple of {width}",
                tag.0,
                tag.1,
                String::from_utf8_lossy(&vr)
            ));
        }
        if &vr == b"SQ" {
            stack.push(Frame {
                kind: Kind::Sequence,
                end: Some(pos + len as usize),
                ..frame
            });
        } else {
            pos += len as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part10(ts: &str, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let mut ts = ts.as_bytes().to_vec();
        if ts.len() % 2 == 1 {
            ts.push(0);
        }
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        b.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        b.extend_from_slice(&ts);
        b.extend_from_slice(data);
        b
    }

    /// Regression (fuzz target `dicom`): a sequence delimiter carrying a length made dicom-rs
    /// allocate 2.4 GB for a 3.6 KB file. Delimiters must have length 0.
    #[test]
    fn delimiters_with_a_length_are_refused() {
        // (0008,1115) SQ of undefined length: one empty item, then the sequence delimiter.
        let sequence = |delimiter_len: u32| {
            let mut d = vec![0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0];
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
            d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
            d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0]);
            d.extend_from_slice(&delimiter_len.to_le_bytes());
            d.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0]);
            d.extend_from_slice(b"Li^Y");
            part10("1.2.840.10008.1.2.1", &d)
        };
        assert_eq!(check(&sequence(0)), Ok(()));
        let e = check(&sequence(0x1051)).unwrap_err();
        assert!(e.contains("(FFFE,E0DD) has length 4177"), "{e}");
    }

    /// Regression (fuzz target `dicom_parse`): a file meta group holding another group's
    /// element, then the transfer syntax. Read by group alone, the walk took the data set to
    /// start at that element, in the default syntax; dicom-rs reads the meta group by its length
    /// and found a 4 GB OB length the walk never saw.
    #[test]
    fn the_meta_group_is_read_by_its_length() {
        let element = |tag: [u8; 4], vr: &[u8; 2], value: &[u8]| {
            let mut e = tag.to_vec();
            e.extend_from_slice(vr);
            e.extend_from_slice(&(value.len() as u16).to_le_bytes());
            e.extend_from_slice(value);
            e
        };
        let mut meta = element([0x34, 0x00, 0x01, 0x00], b"LO", b"odd ");
        meta.extend(element(
            [0x02, 0x00, 0x10, 0x00],
            b"UI",
            b"1.2.840.10008.1.2.2\0",
        ));
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend(element(
            [0x02, 0x00, 0x00, 0x00],
            b"UL",
            &(meta.len() as u32).to_le_bytes(),
        ));
        file.extend_from_slice(&meta);
        // Big endian: (0010,0010) PN "Li^Y", then an OB claiming 0xFF000000 bytes.
        file.extend_from_slice(&[0x00, 0x10, 0x00, 0x10, b'P', b'N', 0, 4]);
        file.extend_from_slice(b"Li^Y");
        file.extend_from_slice(&[0x00, 0x11, 0x00, 0x10, b'O', b'B', 0, 0, 0xFF, 0, 0, 0]);
        file.extend_from_slice(b"tail");
        let e = check(&file).unwrap_err();
        assert!(e.contains("claims 4278190080 bytes"), "{e}");
    }

    /// Regression (fuzz target `dicom_parse`): an item tag in the data set itself, outside a
    /// sequence, in a 1.2 KB implicit VR file, made dicom-rs decode gigabytes of text.
    #[test]
    fn items_stand_only_in_sequences() {
        let mut d = vec![0x10, 0x00, 0x10, 0x00, 4, 0, 0, 0];
        d.extend_from_slice(b"Li^Y");
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0]);
        d.extend_from_slice(b"tail");
        let e = check(&part10("1.2.840.10008.1.2", &d)).unwrap_err();
        assert!(e.contains("outside any sequence"), "{e}");
    }

    /// Regression (fuzz target `dicom_parse`): a tag of group FFFE that is neither an item
    /// nor a delimiter, (FFFE,DF0D) in a 2 KB structured report, made dicom-rs allocate 3 GB.
    #[test]
    fn group_fffe_holds_only_items_and_delimiters() {
        let mut d = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0];
        d.extend_from_slice(b"Li^Y");
        d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xDF, 0xFF, 0xFD, 0, 0]);
        d.extend_from_slice(b"tail");
        let e = check(&part10("1.2.840.10008.1.2.1", &d)).unwrap_err();
        assert!(e.contains("(FFFE,DF0D) is not an item"), "{e}");
    }

    /// Regression (fuzz target `dicom_parse`): a deflated data set was not walked, and a 4.6 KB
    /// file whose inflated data set claimed a long length made dicom-rs allocate 2.4 GB. The
    /// data set is now inflated and walked like any other.
    #[test]
    fn deflated_data_sets_are_inflated_and_checked() {
        use std::io::Write;
        let deflate = |data: &[u8]| {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let ts = "1.2.840.10008.1.2.1.99";
        let mut good = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0];
        good.extend_from_slice(b"Li^Y");
        assert_eq!(check(&part10(ts, &deflate(&good))), Ok(()));
        let mut bad = good.clone();
        bad.extend_from_slice(&[0xBC, 0xBC, 0xBC, 0xBC, b'O', b'B', 0, 0]);
        bad.extend_from_slice(&0x7FFF_0000u32.to_le_bytes());
        bad.extend_from_slice(b"tail");
        let e = check(&part10(ts, &deflate(&bad))).unwrap_err();
        assert!(e.contains("(BCBC,BCBC)"), "{e}");
        let e = check(&part10(ts, b"\xff\xff not deflate at all")).unwrap_err();
        assert!(e.contains("does not inflate"), "{e}");
        // The real deflated file of the test data still passes and parses.
        let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/dicom/pydicom-3.0.2-wheel-test_files/image_dfl.dcm");
        let bytes = std::fs::read(real).unwrap();
        assert_eq!(check(&bytes), Ok(()));
        assert!(parse(&bytes, false).is_ok());
    }

    /// Regression (fuzz target `dicom`): an element with a VR code nobody defines is read with
    /// a 4-byte length, as dicom-rs reads it, so a huge length behind it is caught.
    #[test]
    fn unknown_vr_codes_carry_long_lengths() {
        // A proper first element (the walk reads the data set's encoding from it), then one
        // whose VR bytes are no VR.
        let mut d = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0];
        d.extend_from_slice(b"Li^Y");
        d.extend_from_slice(&[0x01, 0x00, 0xF2, 0x1F, 0xFD, 0x00, 0, 0]);
        d.extend_from_slice(&0xE0DD_FFFEu32.to_le_bytes());
        d.extend_from_slice(b"tail");
        let e = check(&part10("1.2.840.10008.1.2.1", &d)).unwrap_err();
        assert!(e.contains("(0001,1FF2) claims 3772645374 bytes"), "{e}");
        let mut ok = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0];
        ok.extend_from_slice(b"Li^Y");
        ok.extend_from_slice(&[0x01, 0x00, 0xF2, 0x1F, b'Z', b'Z', 0, 0]);
        ok.extend_from_slice(&4u32.to_le_bytes());
        ok.extend_from_slice(b"tail");
        assert_eq!(check(&part10("1.2.840.10008.1.2.1", &ok)), Ok(()));
    }

    /// Regression (fuzz target `dicom_parse`): dicom-rs reads whole values of a binary VR and
    /// steps past the odd bytes unread, so the data set after such an element is read from
    /// elsewhere than it was written (a big endian UL of 21,329 bytes hid a 3.7 GB OB).
    #[test]
    fn binary_values_come_in_whole_numbers() {
        let rows = |len: u16| {
            let mut d = vec![0x28, 0x00, 0x10, 0x00, b'U', b'S'];
            d.extend_from_slice(&len.to_le_bytes());
            d.extend(std::iter::repeat_n(1u8, usize::from(len)));
            d.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0]);
            d.extend_from_slice(b"Li^Y");
            d
        };
        assert_eq!(check(&part10("1.2.840.10008.1.2.1", &rows(4))), Ok(()));
        let e = check(&part10("1.2.840.10008.1.2.1", &rows(3))).unwrap_err();
        assert!(
            e.contains("(0028,0010) of VR US has 3 bytes, not a multiple of 2"),
            "{e}"
        );
        // In implicit VR the VR is the dictionary's, as dicom-rs reads it.
        let implicit = |len: u32| {
            let mut d = vec![0x28, 0x00, 0x00, 0x01];
            d.extend_from_slice(&len.to_le_bytes());
            d.extend(std::iter::repeat_n(0u8, len as usize));
            d
        };
        assert_eq!(check(&part10("1.2.840.10008.1.2", &implicit(2))), Ok(()));
        let e = check(&part10("1.2.840.10008.1.2", &implicit(5))).unwrap_err();
        assert!(e.contains("(0028,0100) of VR US has 5 bytes"), "{e}");
        // An OB of undefined length that is not Pixel Data: dicom-rs reads it as a sequence,
        // not as fragments.
        let mut d = vec![0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0];
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let e = check(&part10("1.2.840.10008.1.2.1", &d)).unwrap_err();
        assert!(e.contains("(0009,1010) has an undefined length"), "{e}");
    }

    /// dicom-rs decodes text through `encoding` 0.2 and restarts the decoder after each byte
    /// the character set leaves unmapped (writing it as `\ooo`). A fuzz find once made that
    /// look like a capacity doubling per such byte; it was the misread structure (an item
    /// outside a sequence, refused above). In a sound file the cost stays linear: 60 KB of
    /// unmapped bytes under ISO_IR 127 decode to four characters each.
    #[test]
    fn text_of_unmapped_bytes_decodes_in_linear_space() {
        let mut d = vec![0x08, 0x00, 0x05, 0x00, b'C', b'S', 10, 0];
        d.extend_from_slice(b"ISO_IR 127");
        let n = 60_000u16;
        d.extend_from_slice(&[0x40, 0x00, 0x00, 0x04, b'L', b'T']);
        d.extend_from_slice(&n.to_le_bytes());
        d.extend(std::iter::repeat_n(0xA1u8, usize::from(n)));
        let (obj, _) = parse(&part10("1.2.840.10008.1.2.1", &d), false).expect("parses");
        let text = obj
            .element(Tag(0x0040, 0x0400))
            .expect("the LT")
            .to_str()
            .expect("text");
        assert_eq!(text.len(), 4 * usize::from(n));
        assert!(text.starts_with("\\241\\241"), "{}", &text[..16]);
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        // (0010,0010) PN of 8 bytes: fine. Then an OB claiming 4 GiB - 2.
        let mut d = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 8, 0];
        d.extend_from_slice(b"Wang^Fan");
        assert_eq!(check(&part10("1.2.840.10008.1.2.1", &d)), Ok(()));
        d.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        d.extend_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        let e = check(&part10("1.2.840.10008.1.2.1", &d)).unwrap_err();
        assert!(e.contains("(0009,1010)"), "{e}");
    }

    #[test]
    fn the_testdata_files_that_hurt_the_parser_are_caught_and_good_ones_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/dicom/pydicom-3.0.2-wheel-test_files");
        let un = std::fs::read(dir.join("UN_sequence.dcm")).unwrap();
        assert!(check(&un).is_err());
        for good in [
            "CT_small.dcm",
            "MR_small_bigendian.dcm",
            "MR_small_implicit.dcm",
            "JPEG2000.dcm",
            "nested_priv_SQ.dcm",
            "rtplan.dcm",
            "image_dfl.dcm",
            "explicit_VR-UN.dcm",
        ] {
            let path = dir.join(good);
            let path = if path.exists() {
                path
            } else {
                dir.join("../pydicom-data").join(good)
            };
            let b = std::fs::read(&path).unwrap();
            assert_eq!(check(&b), Ok(()), "{good}");
        }
    }
}
