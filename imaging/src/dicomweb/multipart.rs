//! multipart/related bodies (RFC 2387) as DICOMweb uses them: reading the parts of a STOW-RS
//! request, and writing WADO-RS responses.

use memchr::memmem;

/// One part: its Content-Type (if given) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's Content-Type header, if any.
    pub content_type: Option<String>,
    /// The body of the part.
    pub body: Vec<u8>,
}

/// Why a multipart body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The Content-Type is not multipart/related with a boundary.
    #[error("Content-Type: {0}")]
    ContentType(String),
    /// The body does not follow the multipart syntax.
    #[error("multipart body: {0}")]
    Body(String),
}

/// A parameter of a Content-Type header (`type`, `boundary`), unquoted.
pub fn param(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The media type of a Content-Type header, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Splits a multipart/related body into its parts.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    if media_type(content_type) != "multipart/related" {
        return Err(MultipartError::ContentType(format!(
            "{content_type:?} is not multipart/related"
        )));
    }
    let boundary = param(content_type, "boundary")
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| MultipartError::ContentType("no boundary parameter".into()))?;
    let delimiter = format!("--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    let mut positions = finder.find_iter(body).peekable();
    let first = positions
        .next()
        .ok_or_else(|| MultipartError::Body(format!("no {delimiter} delimiter")))?;
    let mut parts = Vec::new();
    let mut start = first + delimiter.len();
    loop {
        if body[start..].starts_with(b"--") {
            return Ok(parts);
        }
        // A delimiter must end its line; a match inside a part's data is not a delimiter.
        let Some(next) = positions.find(|&p| p >= 2 && &body[p - 2..p] == b"\r\n") else {
            return Err(MultipartError::Body(format!(
                "part {} has no closing {delimiter}--",
                parts.len() + 1
            )));
        };
        let part = &body[start..next - 2];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let (head, data) = match memmem::find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None if part.starts_with(b"\r\n") => (&part[..0], &part[2..]),
            None => {
                return Err(MultipartError::Body(format!(
                    "part {} has no blank line after its headers",
                    parts.len() + 1
                )));
            }
        };
        let head = String::from_utf8_lossy(head);
        let content_type = head.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        });
        parts.push(Part {
            content_type,
            body: data.to_vec(),
        });
        start = next + delimiter.len();
    }
}

/// A multipart/related body of `parts`, all of media type `part_type`: the Content-Type header
/// value and the body.
pub fn build(part_type: &str, parts: &[Vec<u8>]) -> (String, Vec<u8>) {
    let boundary = format!("appliance-{:016x}", boundary_seed(parts));
    let size: usize = parts.iter().map(|p| p.len() + 128).sum();
    let mut body = Vec::with_capacity(size + 64);
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {part_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"{part_type}\"; boundary={boundary}"),
        body,
    )
}

/// A boundary that does not occur in the parts (checked; regenerated in the unlikely case).
fn boundary_seed(parts: &[Vec<u8>]) -> u64 {
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    loop {
        let b = format!("appliance-{seed:016x}");
        if parts
            .iter()
            .all(|p| memmem::find(p, b.as_bytes()).is_none())
        {
            return seed;
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_bodies_parse_back() {
        let parts = vec![
            b"DICM one".to_vec(),
            b"--not\r\nthe end".to_vec(),
            Vec::new(),
        ];
        let (ct, body) = build("application/dicom", &parts);
        assert_eq!(param(&ct, "type").as_deref(), Some("application/dicom"));
        let back = parse(&ct, &body).unwrap();
        assert_eq!(back.len(), 3);
        for (p, orig) in back.iter().zip(&parts) {
            assert_eq!(&p.body, orig);
            assert_eq!(p.content_type.as_deref(), Some("application/dicom"));
        }
    }

    #[test]
    fn bad_bodies_are_named() {
        assert!(matches!(
            parse("multipart/form-data; boundary=x", b""),
            Err(MultipartError::ContentType(_))
        ));
        assert!(matches!(
            parse("multipart/related", b""),
            Err(MultipartError::ContentType(_))
        ));
        let e = parse("multipart/related; boundary=b", b"--b\r\n\r\nabc").unwrap_err();
        assert!(e.to_string().contains("closing"), "{e}");
        let ok = parse(
            "multipart/related; boundary=\"b\"",
            b"preamble\r\n--b\r\nContent-Type: application/dicom\r\n\r\nxy\r\n--b--",
        )
        .unwrap();
        assert_eq!(ok[0].body, b"xy");
    }
}
