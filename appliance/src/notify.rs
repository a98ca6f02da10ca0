//! The notification worker: sends the SMS outbox through the hospital's SMS platform (an HTTP
//! gateway: `notifications.sms_url`, JSON or form body, the configured template), retrying
//! with exponential backoff (1 s doubling to 5 min) until the gateway takes each message. Rows
//! live in the database, so nothing is lost across a restart; a message is marked sent only
//! after a 2xx answer. Plain HTTP to the gateway inside the hospital network; the request is
//! written by hand (one POST, `Connection: close`) to keep the dependency set small.

use std::time::Duration;

use firmware_config::{Config, SmsGateway};
use sqlx::SqlitePool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accounts::now_ms;

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Gateway {
    kind: SmsGateway,
    url: url::Url,
    api_key: String,
    template: String,
    site: String,
}

impl Gateway {
    /// The gateway `config` names, if any.
    pub fn from_config(config: &Config) -> Option<Self> {
        let n = &config.notifications;
        if n.sms_gateway == SmsGateway::None {
            return None;
        }
        Some(Self {
            kind: n.sms_gateway,
            url: n.sms_url.as_ref()?.url().clone(),
            api_key: n.sms_api_key.expose().to_owned(),
            template: n.sms_template.clone(),
            site: config.site.name.clone(),
        })
    }

    /// The SMS as the gateway is given it: the message in the site's template.
    pub fn text(&self, message: &str) -> String {
        self.template
            .replace("{site}", &self.site)
            .replace("{message}", message)
    }

    /// Sends one message; `Err` says why it was not accepted.
    async fn send(&self, phone: &str, message: &str) -> Result<(), String> {
        if self.url.scheme() != "http" {
            return Err(format!(
                "{}: only http gateways are supported by this build",
                self.url
            ));
        }
        let host = self.url.host_str().ok_or("the gateway URL has no host")?;
        let port = self.url.port_or_known_default().unwrap_or(80);
        let text = self.text(message);
        let (content_type, body) = match self.kind {
            SmsGateway::HttpForm => (
                "application/x-www-form-urlencoded",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("phone", phone)
                    .append_pair("message", &text)
                    .finish(),
            ),
            _ => (
                "application/json",
                serde_json::json!({ "phone": phone, "message": text }).to_string(),
            ),
        };
        let path = match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        };
        let auth = if self.api_key.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {}\r\n", self.api_key)
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}; \
             charset=utf-8\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
            body.len()
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            std::io::Result::Ok(head)
        };
        let head = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| "the gateway did not answer within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "the gateway's answer is not HTTP".to_owned())?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("the gateway answered {status}"))
        }
    }
}

/// The wait before attempt `attempts + 1`: 1 s, doubling, at most 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    1000 * (1i64 << attempts.clamp(0, 20)).min(300)
}

/// Sends what is due, once. Returns how many were sent.
pub async fn send_due(
    pool: &SqlitePool,
    gateway: &Gateway,
    sealer: &crate::gm::Sealer,
) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let due: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, recipient, message, attempts FROM outbox WHERE sent_at IS NULL AND \
         next_attempt_at <= ? ORDER BY id LIMIT 50",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut sent = 0;
    for (id, phone, message, attempts) in due {
        // Outbox numbers are sealed as the phone columns they were copied from.
        let phone = match sealer.open("phone", &phone) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(outbox = id, error = %e, "SMS not sent: its number does not open");
                continue;
            }
        };
        match gateway.send(&phone, &message).await {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?")
                    .bind(now_ms())
                    .bind(id)
                    .execute(pool)
                    .await?;
                metrics::counter!("appliance_sms_sent_total").increment(1);
                sent += 1;
            }
            Err(why) => {
                tracing::warn!(id, attempts = attempts + 1, %why, "SMS not accepted; will retry");
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, \
                     last_error = ? WHERE id = ?",
                )
                .bind(now_ms() + backoff_ms(attempts))
                .bind(why)
                .bind(id)
                .execute(pool)
                .await?;
                metrics::counter!("appliance_sms_failed_attempts_total").increment(1);
            }
        }
    }
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await?;
    metrics::gauge!("appliance_sms_pending").set(pending as f64);
    Ok(sent)
}

/// Runs the worker until `shutdown`.
pub async fn run(
    pool: SqlitePool,
    gateway: Gateway,
    sealer: crate::gm::Sealer,
    shutdown: firmware_runtime::Shutdown,
) {
    loop {
        if let Err(e) = send_due(&pool, &gateway, &sealer).await {
            tracing::error!(error = %e, "the SMS outbox could not be read");
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(9), 300_000);
        assert_eq!(backoff_ms(60), 300_000);
    }
}
