//! The tamper-evident audit trail: appending records chained by SM3 or SHA-256
//! (`security.audit_hash`; each record keeps its algorithm), and verifying the chain. A
//! record's hash covers every field and the hash of the record before it, so editing
//! a row breaks its own hash, and deleting one breaks the link of the row after it (and leaves
//! a gap in the sequence). The table refuses updates and deletes by trigger; the chain catches
//! what someone does to the file behind the application's back. Truncating the newest rows is
//! what a chain alone cannot show: `verify` reports the head (last sequence number and hash)
//! so it can be compared with a copy kept elsewhere.

use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

/// The previous hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as appended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The user, when known (a failed login for an unknown name has none).
    pub user_id: Option<i64>,
    /// The login name given.
    pub login: String,
    /// The role acted in ("" before login).
    pub role: String,
    /// The user's institution.
    pub institution: Option<i64>,
    /// What was done: `login`, `login_failed`, `logout`, `read`, `create`, `update`, ...
    pub action: String,
    /// What it was done to: `patient:12`, `consultation:7`, `user:3`.
    pub target: String,
    /// The client's address.
    pub source: String,
    /// `ok`, or the refusal's code.
    pub result: String,
}

/// Why the trail could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The database failed.
    #[error("audit trail: {0}")]
    Db(#[from] sqlx::Error),
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Records checked.
    pub records: u64,
    /// The last record's sequence number and hash (compare with a copy kept elsewhere).
    pub head: Option<(i64, String)>,
    /// Every problem, naming the row.
    pub problems: Vec<String>,
}

/// A record's hash with `alg` (`sha256`, or `sm3`, whose input also names the algorithm):
/// over its fields, each length-prefixed, and the previous hash.
fn hash_with(alg: &str, seq: i64, at: &str, r: &Record, prev: &str) -> String {
    let mut input = Vec::new();
    let mut field = |s: &str| {
        input.extend_from_slice(&(s.len() as u64).to_be_bytes());
        input.extend_from_slice(s.as_bytes());
    };
    if alg != "sha256" {
        field(alg);
    }
    record_fields(&mut field, seq, at, r, prev);
    let digest: Vec<u8> = match alg {
        "sha256" => Sha256::digest(&input).to_vec(),
        _ => crate::gm::sm3(&input).to_vec(),
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record's SHA-256 hash (the chain's original algorithm).
#[cfg(test)]
fn hash(seq: i64, at: &str, r: &Record, prev: &str) -> String {
    hash_with("sha256", seq, at, r, prev)
}

fn record_fields(field: &mut impl FnMut(&str), seq: i64, at: &str, r: &Record, prev: &str) {
    field(&seq.to_string());
    field(at);
    field(&r.user_id.map(|u| u.to_string()).unwrap_or_default());
    field(&r.login);
    field(&r.role);
    field(&r.institution.map(|u| u.to_string()).unwrap_or_default());
    field(&r.action);
    field(&r.target);
    field(&r.source);
    field(&r.result);
    field(prev);
}

/// The current time as the trail writes it (UTC, milliseconds).
fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = t.as_millis() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Days since 1970-01-01 as (year, month, day) (H. Hinnant's civil-from-days).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends `record`, chained to the last one. Concurrent appends are serialised by SQLite's
/// write lock (the transaction starts by writing).
pub async fn append(pool: &SqlitePool, record: &Record) -> Result<i64, AuditError> {
    let mut tx = pool.begin().await?;
    // Take the write lock first, so no other append reads the same head.
    sqlx::query("UPDATE meta SET value = value WHERE key = 'created_at'")
        .execute(&mut *tx)
        .await?;
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let (seq, prev) = head.map_or((1, GENESIS.to_owned()), |(s, h)| (s + 1, h));
    let alg: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'audit_hash'")
        .fetch_optional(&mut *tx)
        .await?
        .filter(|a: &String| a == "sm3" || a == "sha256")
        .unwrap_or_else(|| "sha256".to_owned());
    let at = now();
    let h = hash_with(&alg, seq, &at, record, &prev);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, user_id, login, role, institution, action, target, \
         source, result, prev_hash, hash, alg) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(&at)
    .bind(record.user_id)
    .bind(&record.login)
    .bind(&record.role)
    .bind(record.institution)
    .bind(&record.action)
    .bind(&record.target)
    .bind(&record.source)
    .bind(&record.result)
    .bind(&prev)
    .bind(&h)
    .bind(&alg)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("appliance_audit_records_total", "action" => record.action.clone())
        .increment(1);
    Ok(seq)
}

type Row = (
    i64,
    String,
    Option<i64>,
    String,
    String,
    Option<i64>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

/// Recomputes the whole chain and names every row that does not fit.
pub async fn verify(pool: &SqlitePool) -> Result<Verification, AuditError> {
    use futures_util::TryStreamExt;
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT seq, at, user_id, login, role, institution, action, target, source, result, \
         prev_hash, hash, alg FROM audit_log ORDER BY seq",
    )
    .fetch(pool);
    let mut v = Verification {
        records: 0,
        head: None,
        problems: Vec::new(),
    };
    let (mut expected_seq, mut prev) = (1i64, GENESIS.to_owned());
    while let Some(row) = rows.try_next().await? {
        let (
            seq,
            at,
            user_id,
            login,
            role,
            institution,
            action,
            target,
            source,
            result,
            prev_hash,
            stored,
            alg,
        ) = row;
        v.records += 1;
        if seq != expected_seq {
            v.problems.push(format!(
                "rows {expected_seq} to {} are missing (deleted)",
                seq - 1
            ));
        }
        if prev_hash != prev {
            v.problems.push(format!(
                "row {seq}: its link does not match the row before it (a row before it was \
                 deleted or altered)"
            ));
        }
        let record = Record {
            user_id,
            login,
            role,
            institution,
            action,
            target,
            source,
            result,
        };
        if !matches!(alg.as_str(), "sha256" | "sm3") {
            v.problems
                .push(format!("row {seq}: unknown hash algorithm {alg:?}"));
        } else if hash_with(&alg, seq, &at, &record, &prev_hash) != stored {
            v.problems.push(format!(
                "row {seq}: its content does not match its hash (edited)"
            ));
        }
        expected_seq = seq + 1;
        prev = stored.clone();
        v.head = Some((seq, stored));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_819), (2027, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }

    #[test]
    fn the_hash_covers_every_field() {
        let r = Record {
            user_id: Some(1),
            login: "doctor".into(),
            role: "doctor".into(),
            institution: Some(2),
            action: "read".into(),
            target: "patient:3".into(),
            source: "10.0.0.1".into(),
            result: "ok".into(),
        };
        let base = hash(1, "t", &r, GENESIS);
        let variants = [
            Record {
                user_id: None,
                ..r.clone()
            },
            Record {
                login: "doctor2".into(),
                ..r.clone()
            },
            Record {
                institution: Some(3),
                ..r.clone()
            },
            Record {
                target: "patient:4".into(),
                ..r.clone()
            },
            Record {
                result: "denied".into(),
                ..r.clone()
            },
        ];
        for v in &variants {
            assert_ne!(hash(1, "t", v, GENESIS), base);
        }
        assert_ne!(hash(2, "t", &r, GENESIS), base);
        assert_ne!(hash(1, "u", &r, GENESIS), base);
        assert_ne!(hash(1, "t", &r, &base), base);
        // Length prefixes: moving a character between fields changes the hash.
        let a = Record {
            login: "ab".into(),
            role: "c".into(),
            ..r.clone()
        };
        let b = Record {
            login: "a".into(),
            role: "bc".into(),
            ..r
        };
        assert_ne!(hash(1, "t", &a, GENESIS), hash(1, "t", &b, GENESIS));
        // SM3 chains differ from SHA-256 ones over the same record, and name their algorithm.
        let sm = hash_with("sm3", 1, "t", &a, GENESIS);
        assert_eq!(sm.len(), 64);
        assert_ne!(sm, hash(1, "t", &a, GENESIS));
        assert_ne!(sm, hash_with("sm3", 1, "t", &b, GENESIS));
    }
}
