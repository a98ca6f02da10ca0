//! HL7 dates and times (DT, DTM: `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`) as milliseconds since
//! the Unix epoch, with the sender's offset when it gives one, else the site's.

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `text` as ms since the epoch; `offset_minutes` applies when the text has no offset.
pub fn parse_ms(text: &str, offset_minutes: i32) -> Result<i64, String> {
    let t = text.trim();
    let bad = || format!("\"{t}\" is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])");
    let (body, zone) = match t.find(['+', '-']) {
        Some(i) => (&t[..i], Some(&t[i..])),
        None => (t, None),
    };
    let (digits, fraction) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
        || (fraction.is_some() && digits.len() != 14)
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>, default: i64| -> i64 {
        digits
            .get(r)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (y, mo, d) = (num(0..4, 0), num(4..6, 1), num(6..8, 1));
    let (h, mi, s) = (num(8..10, 0), num(10..12, 0), num(12..14, 0));
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return Err(bad());
    }
    let ms = match fraction {
        Some(f) if !f.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<3}")[..3].parse::<i64>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
        None => 0,
    };
    let offset = match zone {
        None => i64::from(offset_minutes),
        Some(z) if z.len() == 5 && z[1..].bytes().all(|b| b.is_ascii_digit()) => {
            let v = z[1..3].parse::<i64>().map_err(|_| bad())? * 60
                + z[3..5].parse::<i64>().map_err(|_| bad())?;
            if z.starts_with('-') { -v } else { v }
        }
        Some(_) => return Err(bad()),
    };
    let days = days_from_civil(y, mo, d);
    Ok(((days * 24 + h) * 60 + mi - offset) * 60_000 + s * 1000 + ms)
}

/// A DT or DTM's date as `YYYY-MM-DD` (a birth date), checked.
pub fn parse_date(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.len() < 8 || !t.as_bytes()[..8].iter().all(u8::is_ascii_digit) {
        return Err(format!("\"{t}\" is not a full date (YYYYMMDD)"));
    }
    parse_ms(&t[..8], 0)?;
    Ok(format!("{}-{}-{}", &t[..4], &t[4..6], &t[6..8]))
}

/// ms since the epoch as `YYYYMMDDHHMMSS` at `offset_minutes`.
pub fn format_dtm(ms: i64, offset_minutes: i32) -> String {
    let local = ms.div_euclid(1000) + i64::from(offset_minutes) * 60;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_offsets() {
        // 2026-03-01 08:00 in Beijing is 00:00 UTC.
        let utc = 1_772_323_200_000;
        assert_eq!(parse_ms("202603010800", 480), Ok(utc));
        assert_eq!(parse_ms("20260301000000+0000", 480), Ok(utc));
        assert_eq!(
            parse_ms("20260301000000.5-0100", 480),
            Ok(utc + 3_600_000 + 500)
        );
        assert_eq!(parse_ms("20260301", 0), Ok(utc));
        assert_eq!(format_dtm(utc, 480), "20260301080000");
        for bad in [
            "2026023",
            "20260230",
            "20261301",
            "2026030125",
            "abc",
            "20260301+08",
        ] {
            assert!(parse_ms(bad, 0).is_err(), "{bad}");
        }
        assert_eq!(parse_date("19560314").as_deref(), Ok("1956-03-14"));
        assert!(parse_date("1956").is_err());
        assert!(
            parse_date("1956年03月14日").is_err(),
            "not a panic at a byte inside a character"
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
