//! Accounts: institutions, users with argon2id passwords, the password policy, lockout after
//! repeated failures, a forced change on first login and after the maximum age, and bearer
//! sessions that end after the idle timeout. Every login, failure and logout goes to the audit
//! trail. No account ships with a password: `appliance user add` prints a one-time password
//! that must be changed at first login.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use firmware_config::Config;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use workflow::Role;

use crate::audit::{self, Record};

/// Why an account operation was refused or failed. `code` and `field` are what the API shows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// A field is missing or invalid.
    #[error("{field}: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Wrong login or password (the same answer for both).
    #[error("wrong login or password")]
    BadCredentials,
    /// Locked after repeated failures.
    #[error("the account is locked for {minutes} more minutes after repeated failures")]
    Locked {
        /// Minutes left.
        minutes: i64,
    },
    /// No session, or it ended.
    #[error("not logged in, or the session ended after inactivity")]
    Unauthenticated,
    /// The password must be changed before anything else.
    #[error("the password must be changed first")]
    PasswordChangeRequired,
    /// The account needs a second factor and has none yet: set one up first.
    #[error("a second factor (TOTP) must be set up first")]
    TotpEnrollmentRequired,
    /// The login needs the current TOTP code.
    #[error("totp: the authenticator app's current code is required")]
    TotpRequired,
    /// The TOTP code is wrong, expired or already used.
    #[error("totp: the code is wrong, expired or already used")]
    BadTotp,
    /// A name that must be unique is taken.
    #[error("{field}: {value:?} is already taken")]
    Taken {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The audit trail could not be written.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

impl AccountError {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Field { .. } => "invalid",
            Self::BadCredentials => "bad_credentials",
            Self::Locked { .. } => "locked",
            Self::Unauthenticated => "unauthenticated",
            Self::PasswordChangeRequired => "password_change_required",
            Self::TotpEnrollmentRequired => "totp_enrollment_required",
            Self::TotpRequired => "totp_required",
            Self::BadTotp => "bad_totp",
            Self::Taken { .. } => "conflict",
            Self::Db(_) | Self::Audit(_) => "internal",
        }
    }

    /// The field at fault, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Field { field, .. } | Self::Taken { field, .. } => Some(field),
            Self::TotpRequired | Self::BadTotp => Some("totp"),
            _ => None,
        }
    }
}

fn field(field: &'static str, message: impl Into<String>) -> AccountError {
    AccountError::Field {
        field,
        message: message.into(),
    }
}

/// The password rules from `security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Minimum length in characters.
    pub min_length: usize,
    /// Character classes needed (lower, upper, digit, other).
    pub min_classes: usize,
    /// Milliseconds a password lasts.
    pub max_age_ms: i64,
    /// Failures before lockout.
    pub lockout_threshold: i64,
    /// Lockout length in milliseconds.
    pub lockout_ms: i64,
    /// Idle milliseconds before a session ends.
    pub idle_ms: i64,
    /// Whether every user (not only administrators) needs a second factor.
    pub totp_for_everyone: bool,
}

impl Policy {
    /// The policy `config` sets.
    pub fn from_config(config: &Config) -> Self {
        let s = &config.security;
        Self {
            min_length: s.password_min_length as usize,
            min_classes: s.password_min_classes as usize,
            max_age_ms: i64::from(s.password_max_age_days) * 86_400_000,
            lockout_threshold: i64::from(s.lockout_threshold),
            lockout_ms: i64::from(s.lockout_minutes) * 60_000,
            idle_ms: i64::from(s.idle_timeout_minutes) * 60_000,
            totp_for_everyone: s.second_factor == firmware_config::SecondFactor::Everyone,
        }
    }

    /// Checks a new password against the rules; the error names the rule it breaks.
    pub fn check(&self, login: &str, password: &str) -> Result<(), AccountError> {
        let n = password.chars().count();
        if n < self.min_length {
            return Err(field(
                "new_password",
                format!("needs at least {} characters", self.min_length),
            ));
        }
        if n > 128 {
            return Err(field("new_password", "is longer than 128 characters"));
        }
        let classes = [
            password.chars().any(|c| c.is_lowercase()),
            password.chars().any(|c| c.is_uppercase()),
            password.chars().any(|c| c.is_ascii_digit()),
            // Symbols, and letters without case (Chinese characters) count as "other".
            password.chars().any(|c| {
                !(c.is_lowercase() || c.is_uppercase() || c.is_ascii_digit() || c.is_whitespace())
            }),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if classes < self.min_classes {
            return Err(field(
                "new_password",
                format!(
                    "needs {} of: lower case, upper case, digits, symbols (or Chinese characters)",
                    self.min_classes
                ),
            ));
        }
        if password.to_lowercase().contains(&login.to_lowercase()) {
            return Err(field("new_password", "must not contain the login name"));
        }
        Ok(())
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| field("password", e.to_string()))
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A one-time password that meets every policy: 16 characters from four classes.
fn one_time_password() -> String {
    const SETS: [&[u8]; 4] = [
        b"abcdefghijkmnpqrstuvwxyz",
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"23456789",
        b"!#%+-=?@",
    ];
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = SETS[i % 4];
            char::from(set[usize::from(*b) % set.len()])
        })
        .collect()
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The role's name as stored and shown.
pub fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A role by name.
pub fn parse_role(name: &str) -> Result<Role, AccountError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        let all: Vec<String> = Role::ALL.iter().map(|r| role_name(*r)).collect();
        field("role", format!("{name:?} is not one of {}", all.join(", ")))
    })
}

/// Adds an institution; returns its id.
pub async fn add_institution(
    pool: &SqlitePool,
    name: &str,
    kind: &str,
    parent: Option<i64>,
) -> Result<i64, AccountError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(field("name", "is required"));
    }
    if !matches!(kind, "hospital" | "campus" | "clinic") {
        return Err(field("kind", "must be hospital, campus or clinic"));
    }
    if let Some(p) = parent {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM institutions WHERE id = ?")
            .bind(p)
            .fetch_optional(pool)
            .await?;
        if found.is_none() {
            return Err(field("parent", format!("no institution {p}")));
        }
    }
    let r = sqlx::query(
        "INSERT INTO institutions (name, kind, parent_id, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(name)
    .bind(kind)
    .bind(parent)
    .bind(now_ms().to_string())
    .execute(pool)
    .await;
    match r {
        Ok(done) => Ok(done.last_insert_rowid()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(AccountError::Taken {
            field: "name",
            value: name.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Adds a user who must change the returned one-time password at first login.
pub async fn add_user(
    pool: &SqlitePool,
    login: &str,
    display_name: &str,
    role: Role,
    institution: i64,
) -> Result<(i64, String), AccountError> {
    let login = login.trim();
    if login.len() < 3
        || login.len() > 64
        || !login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(field(
            "login",
            "3-64 characters: letters, digits, '.', '_' or '-'",
        ));
    }
    if display_name.trim().is_empty() {
        return Err(field("display_name", "is required"));
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM institutions WHERE id = ?")
        .bind(institution)
        .fetch_optional(pool)
        .await?;
    if found.is_none() {
        return Err(field(
            "institution",
            format!("no institution {institution}"),
        ));
    }
    let password = one_time_password();
    let hash = hash_password(&password)?;
    let now = now_ms();
    let r = sqlx::query(
        "INSERT INTO users (login, display_name, role, institution_id, password_hash, \
         password_changed_at, must_change, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
    )
    .bind(login)
    .bind(display_name.trim())
    .bind(role_name(role))
    .bind(institution)
    .bind(hash)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await;
    match r {
        Ok(done) => Ok((done.last_insert_rowid(), password)),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(AccountError::Taken {
            field: "login",
            value: login.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a user's password with a new one-time password (to be changed at the next login),
/// unlocks the account and ends its sessions.
pub async fn reset_password(pool: &SqlitePool, user: i64) -> Result<String, AccountError> {
    let password = one_time_password();
    let hash = hash_password(&password)?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE users SET password_hash = ?, password_changed_at = ?, must_change = 1, \
         failed_count = 0, locked_until = 0 WHERE id = ?",
    )
    .bind(hash)
    .bind(now_ms())
    .bind(user)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(password)
}

/// Whether `phone` is empty or an 11-digit mobile number.
pub fn valid_phone(phone: &str) -> bool {
    phone.is_empty() || phone.len() == 11 && phone.bytes().all(|b| b.is_ascii_digit())
}

/// Sets the mobile number SMS notices go to (11 digits; empty: none).
pub async fn set_phone(
    pool: &SqlitePool,
    sealer: &crate::gm::Sealer,
    user: i64,
    phone: &str,
) -> Result<(), AccountError> {
    let phone = phone.trim();
    if !valid_phone(phone) {
        return Err(field("phone", "an 11-digit mobile number"));
    }
    sqlx::query("UPDATE users SET phone = ? WHERE id = ?")
        .bind(sealer.seal("phone", phone))
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// A logged-in user, as the API sees them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// The id.
    pub id: i64,
    /// The login name.
    pub login: String,
    /// The name shown.
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// The institution.
    pub institution: i64,
    /// Whether the password must be changed before anything else.
    pub must_change_password: bool,
    /// Whether a second factor must be set up before anything else.
    pub must_enroll_totp: bool,
    /// Whether logins need a TOTP code.
    pub totp_enabled: bool,
}

type UserRow = (
    i64,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

/// The columns a [`UserRow`] holds, in order.
macro_rules! user_columns {
    () => {
        "id, login, display_name, role, institution_id, password_hash, password_changed_at, \
         must_change, failed_count, locked_until, active, totp_enabled, totp_last_step"
    };
}

fn user_from(row: &UserRow, policy: &Policy, now: i64) -> Result<User, AccountError> {
    let role = parse_role(&row.3)?;
    let totp_enabled = row.11 != 0;
    Ok(User {
        id: row.0,
        login: row.1.clone(),
        display_name: row.2.clone(),
        role,
        institution: row.4,
        must_change_password: row.7 != 0 || now - row.6 >= policy.max_age_ms,
        must_enroll_totp: !totp_enabled && (role.is_admin() || policy.totp_for_everyone),
        totp_enabled,
    })
}

/// Logs in: a new session token, or the reason not. Failures count towards the lockout and
/// are audited with the source address.
pub async fn login(
    pool: &SqlitePool,
    policy: &Policy,
    login: &str,
    password: &str,
    totp: Option<&str>,
    source: &str,
) -> Result<(String, User), AccountError> {
    let now = now_ms();
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE login = ?"
    ))
    .bind(login.trim())
    .fetch_optional(pool)
    .await?;
    let record = |row: Option<&UserRow>, action: &str, result: &str| Record {
        user_id: row.map(|r| r.0),
        login: login.trim().to_owned(),
        role: row.map(|r| r.3.clone()).unwrap_or_default(),
        institution: row.map(|r| r.4),
        action: action.to_owned(),
        target: row.map(|r| format!("user:{}", r.0)).unwrap_or_default(),
        source: source.to_owned(),
        result: result.to_owned(),
    };
    let Some(row) = row.filter(|r| r.10 != 0) else {
        // Spend the same time as a real check, so timing does not tell which logins exist.
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let dummy = DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default());
        let _ = password_matches(password, dummy);
        audit::append(pool, &record(None, "login_failed", "bad_credentials")).await?;
        return Err(AccountError::BadCredentials);
    };
    if row.9 > now {
        audit::append(pool, &record(Some(&row), "login_failed", "locked")).await?;
        return Err(AccountError::Locked {
            minutes: (row.9 - now + 59_999) / 60_000,
        });
    }
    let password_ok = password_matches(password, &row.5);
    let mut second_factor_failed = false;
    if password_ok && row.11 != 0 {
        let Some(code) = totp else {
            audit::append(pool, &record(Some(&row), "login_failed", "totp_required")).await?;
            return Err(AccountError::TotpRequired);
        };
        let secret: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT totp_secret FROM users WHERE id = ?")
                .bind(row.0)
                .fetch_one(pool)
                .await?;
        match secret.and_then(|s| crate::totp::accept(&s, code, now / 1000, row.12)) {
            Some(step) => {
                sqlx::query("UPDATE users SET totp_last_step = ? WHERE id = ?")
                    .bind(step)
                    .bind(row.0)
                    .execute(pool)
                    .await?;
            }
            None => second_factor_failed = true,
        }
    }
    if second_factor_failed || !password_ok {
        let failures = row.8 + 1;
        let (count, until) = if failures >= policy.lockout_threshold {
            (0, now + policy.lockout_ms)
        } else {
            (failures, 0)
        };
        sqlx::query("UPDATE users SET failed_count = ?, locked_until = ? WHERE id = ?")
            .bind(count)
            .bind(until)
            .bind(row.0)
            .execute(pool)
            .await?;
        let result = match (until > 0, second_factor_failed) {
            (true, _) => "locked",
            (false, true) => "bad_totp",
            (false, false) => "bad_credentials",
        };
        audit::append(pool, &record(Some(&row), "login_failed", result)).await?;
        return Err(if second_factor_failed {
            AccountError::BadTotp
        } else {
            AccountError::BadCredentials
        });
    }
    sqlx::query("UPDATE users SET failed_count = 0, locked_until = 0 WHERE id = ?")
        .bind(row.0)
        .execute(pool)
        .await?;
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen) VALUES (?, ?, ?, ?)",
    )
    .bind(token_hash(&token))
    .bind(row.0)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await?;
    audit::append(pool, &record(Some(&row), "login", "ok")).await?;
    Ok((token, user_from(&row, policy, now)?))
}

/// The user behind a bearer token, renewing its idle timer; an idle session is ended.
pub async fn authenticate(
    pool: &SqlitePool,
    policy: &Policy,
    token: &str,
) -> Result<User, AccountError> {
    session_user(pool, policy, token, true).await
}

/// Whether the session behind `token` is still alive, without counting this as activity
/// (an open notification socket does not keep an idle session alive).
pub async fn session_alive(pool: &SqlitePool, policy: &Policy, token: &str) -> bool {
    session_user(pool, policy, token, false).await.is_ok()
}

/// A session's id: the hash its row is kept under (never the token itself).
pub fn session_id(token: &str) -> String {
    token_hash(token)
}

/// The user of the live session with id `sid` (see [`session_id`]), without counting this
/// as activity.
pub async fn authenticate_session(
    pool: &SqlitePool,
    policy: &Policy,
    sid: &str,
) -> Result<User, AccountError> {
    session_user_by_hash(pool, policy, sid.to_owned(), false).await
}

async fn session_user(
    pool: &SqlitePool,
    policy: &Policy,
    token: &str,
    renew: bool,
) -> Result<User, AccountError> {
    session_user_by_hash(pool, policy, token_hash(token), renew).await
}

async fn session_user_by_hash(
    pool: &SqlitePool,
    policy: &Policy,
    hash: String,
    renew: bool,
) -> Result<User, AccountError> {
    let now = now_ms();
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT user_id, last_seen FROM sessions WHERE token_hash = ?")
            .bind(&hash)
            .fetch_optional(pool)
            .await?;
    let Some((user_id, last_seen)) = row else {
        return Err(AccountError::Unauthenticated);
    };
    if now - last_seen >= policy.idle_ms {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(&hash)
            .execute(pool)
            .await?;
        return Err(AccountError::Unauthenticated);
    }
    let user: Option<UserRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ? AND active = 1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some(user) = user else {
        return Err(AccountError::Unauthenticated);
    };
    if renew {
        sqlx::query("UPDATE sessions SET last_seen = ? WHERE token_hash = ?")
            .bind(now)
            .bind(&hash)
            .execute(pool)
            .await?;
    }
    user_from(&user, policy, now)
}

/// Ends a session.
pub async fn logout(
    pool: &SqlitePool,
    user: &User,
    token: &str,
    source: &str,
) -> Result<(), AccountError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    audit::append(
        pool,
        &Record {
            user_id: Some(user.id),
            login: user.login.clone(),
            role: role_name(user.role),
            institution: Some(user.institution),
            action: "logout".into(),
            target: format!("user:{}", user.id),
            source: source.to_owned(),
            result: "ok".into(),
        },
    )
    .await?;
    Ok(())
}

/// Changes the password after checking the old one and the policy; other sessions end.
pub async fn change_password(
    pool: &SqlitePool,
    policy: &Policy,
    user: &User,
    token: &str,
    old: &str,
    new: &str,
    source: &str,
) -> Result<(), AccountError> {
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(user.id)
        .fetch_one(pool)
        .await?;
    let mut record = Record {
        user_id: Some(user.id),
        login: user.login.clone(),
        role: role_name(user.role),
        institution: Some(user.institution),
        action: "change_password".into(),
        target: format!("user:{}", user.id),
        source: source.to_owned(),
        result: "ok".into(),
    };
    if !password_matches(old, &stored) {
        record.result = "bad_credentials".into();
        audit::append(pool, &record).await?;
        return Err(field("old_password", "is not the current password"));
    }
    policy.check(&user.login, new)?;
    if password_matches(new, &stored) {
        return Err(field(
            "new_password",
            "must differ from the current password",
        ));
    }
    let hash = hash_password(new)?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE users SET password_hash = ?, password_changed_at = ?, must_change = 0 WHERE id = ?",
    )
    .bind(hash)
    .bind(now_ms())
    .bind(user.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = ? AND token_hash != ?")
        .bind(user.id)
        .bind(token_hash(token))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    audit::append(pool, &record).await?;
    Ok(())
}

/// Starts setting up a second factor: a new secret (kept pending until confirmed) and the
/// `otpauth://` URI for the authenticator app.
pub async fn totp_setup(
    pool: &SqlitePool,
    issuer: &str,
    user: &User,
) -> Result<(String, String), AccountError> {
    let mut secret = [0u8; 20];
    OsRng.fill_bytes(&mut secret);
    sqlx::query("UPDATE users SET totp_pending = ? WHERE id = ?")
        .bind(&secret[..])
        .bind(user.id)
        .execute(pool)
        .await?;
    Ok((
        crate::totp::base32(&secret),
        crate::totp::otpauth_uri(issuer, &user.login, &secret),
    ))
}

/// Confirms the pending secret with a code from the app; logins need codes from then on.
pub async fn totp_confirm(
    pool: &SqlitePool,
    user: &User,
    code: &str,
    source: &str,
) -> Result<(), AccountError> {
    let pending: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT totp_pending FROM users WHERE id = ?")
            .bind(user.id)
            .fetch_one(pool)
            .await?;
    let Some(pending) = pending else {
        return Err(field(
            "code",
            "no second factor is being set up (call setup first)",
        ));
    };
    let Some(step) = crate::totp::accept(&pending, code, now_ms() / 1000, 0) else {
        return Err(field("code", "is not the authenticator app's current code"));
    };
    sqlx::query(
        "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_enabled = 1, \
         totp_last_step = ? WHERE id = ?",
    )
    .bind(step)
    .bind(user.id)
    .execute(pool)
    .await?;
    audit::append(
        pool,
        &Record {
            user_id: Some(user.id),
            login: user.login.clone(),
            role: role_name(user.role),
            institution: Some(user.institution),
            action: "totp_enabled".into(),
            target: format!("user:{}", user.id),
            source: source.to_owned(),
            result: "ok".into(),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_length: 8,
            min_classes: 3,
            max_age_ms: 90 * 86_400_000,
            lockout_threshold: 5,
            lockout_ms: 15 * 60_000,
            idle_ms: 30 * 60_000,
            totp_for_everyone: false,
        }
    }

    #[test]
    fn the_policy_names_the_rule() {
        let p = policy();
        for (pw, why) in [
            ("Ab1!", "at least 8"),
            ("abcdefgh1", "3 of"),
            ("ABCDEFGH", "3 of"),
            ("Zhang.San1", "login name"),
        ] {
            let e = p.check("zhang.san", pw).unwrap_err();
            assert!(e.to_string().contains(why), "{pw}: {e}");
            assert_eq!(e.field(), Some("new_password"));
        }
        p.check("zhang.san", "Consult-2026").unwrap();
        p.check("zhang.san", "会诊密码abc123").unwrap();
    }

    #[test]
    fn one_time_passwords_pass_the_strictest_policy() {
        let strict = Policy {
            min_length: 16,
            min_classes: 4,
            ..policy()
        };
        for _ in 0..50 {
            let pw = one_time_password();
            strict.check("admin", &pw).unwrap();
        }
        assert_ne!(one_time_password(), one_time_password());
    }

    #[test]
    fn roles_round_trip_by_name() {
        for r in Role::ALL {
            assert_eq!(parse_role(&role_name(r)).unwrap(), r);
        }
        let e = parse_role("root").unwrap_err();
        assert_eq!(e.field(), Some("role"));
    }
}
