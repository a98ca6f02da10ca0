//! Time-based one-time passwords (RFC 6238 over RFC 4226: HMAC-SHA1, 30-second steps, six
//! digits), the second factor authenticator apps (Microsoft, Google, FreeOTP, 腾讯身份验证器)
//! read from an `otpauth://` URI. Pure functions; the accounts module stores the secret and the
//! last accepted step, so a code cannot be used twice.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;

/// The code for `secret` at step `step` (Unix seconds / 30), with `digits` digits.
pub fn code_at_step(secret: &[u8], step: i64, digits: u32) -> String {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0F);
    let value =
        u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]) & 0x7FFF_FFFF;
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", value % modulus, width = digits as usize)
}

/// The step a code given at `unix_secs` matches, allowing one step of clock drift either way,
/// and only steps after `last_used` (a code is good once). `None` if it matches none.
pub fn accept(secret: &[u8], code: &str, unix_secs: i64, last_used: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs.div_euclid(STEP_SECS);
    (now - 1..=now + 1)
        .filter(|&s| s > last_used)
        .find(|&s| constant_time_eq(code_at_step(secret, s, 6).as_bytes(), code.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app scans (as a QR code) or takes by hand.
pub fn otpauth_uri(issuer: &str, login: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(login),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (the eight-digit codes).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at_step(secret, t / STEP_SECS, 8), code, "t={t}");
        }
    }

    #[test]
    fn codes_are_good_once_within_one_step_of_drift() {
        let secret = b"12345678901234567890";
        let t = 1_234_567_890;
        let code = code_at_step(secret, t / STEP_SECS, 6);
        let step = accept(secret, &code, t, 0).expect("accepted");
        assert_eq!(step, t / STEP_SECS);
        assert_eq!(accept(secret, &code, t + 30, 0), Some(step), "a step late");
        assert_eq!(accept(secret, &code, t + 90, 0), None, "three steps late");
        assert_eq!(accept(secret, &code, t, step), None, "replayed");
        assert_eq!(accept(secret, "12345", t, 0), None);
        assert_eq!(accept(secret, "abcdef", t, 0), None);
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), output);
        }
        let uri = otpauth_uri("市医院 会诊", "zhang.san", b"12345");
        assert!(uri.starts_with("otpauth://totp/%E5%B8%82"), "{uri}");
        assert!(uri.contains("secret=GEZDGNBV"), "{uri}");
    }
}
