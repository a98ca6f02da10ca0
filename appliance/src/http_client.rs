//! The HTTP client the pulls from the clinics' servers use (FHIR, DICOMweb): http only (https
//! is planned), HTTP/1.0 with one request per connection (the server closes after its answer,
//! so there is no chunked body to undo), an optional bearer token, a size limit and a deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct HttpError {
    /// What was asked.
    pub url: String,
    /// Why it failed.
    pub reason: String,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Its Content-Type ("" when none).
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// One request: `method url` with `headers` (and the bearer `token`), `body`; the answer, at
/// most `max` bytes, within `deadline`.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    token: Option<&str>,
    body: &[u8],
    max: usize,
    deadline: Duration,
) -> Result<Answer, HttpError> {
    let fail = |reason: String| HttpError {
        url: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(fail("only http sources are supported by this build".into()));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| fail("no host".into()))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.len() > max {
                return Err(std::io::Error::other(format!(
                    "the answer is larger than {max} bytes"
                )));
            }
        }
        std::io::Result::Ok(answer)
    };
    let answer = tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {} s", deadline.as_secs())))?
        .map_err(|e| fail(e.to_string()))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("the answer is not HTTP".into()))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("the answer is not HTTP".into()))?;
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    Ok(Answer {
        status,
        content_type,
        body: answer[split + 4..].to_vec(),
    })
}
