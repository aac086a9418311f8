//! Canonical values of the pre-hash string: CBV URNs as Web URIs, numbers without trailing
//! zeros, identifiers as constrained canonical Digital Links, timestamps in UTC at
//! millisecond precision.

use crate::link::normalise;

/// Old CBV URN vocabularies and their Web URI equivalents.
const URN_VOCABULARIES: [(&str, &str); 5] = [
    (
        "urn:epcglobal:cbv:bizstep:",
        "https://ref.gs1.org/cbv/BizStep-",
    ),
    ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-"),
    ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
    ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
    ("urn:epcglobal:cbv:er:", "https://ref.gs1.org/cbv/ER-"),
];

/// A value as the pre-hash string writes it (already trimmed).
pub(crate) fn value(text: &str) -> String {
    let mut v = text.to_string();
    for (urn, uri) in URN_VOCABULARIES {
        if v.contains(urn) {
            v = v.replace(urn, uri);
        }
    }
    if let Some(n) = number(&v) {
        v = n;
    }
    normalise(&v).unwrap_or(v)
}

/// A number written without a leading `+`, leading zeros or trailing zeros: integral values
/// as integers, others in the shortest form that reads back as the same double (scientific
/// below 1e-4 and from 1e16, as the reference implementation's language writes them).
pub(crate) fn number(text: &str) -> Option<String> {
    let t = text.as_bytes();
    let numeric = !t.is_empty()
        && t.iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && t.iter().any(u8::is_ascii_digit);
    if !numeric {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 {
        let s = format!("{f:.0}");
        return Some(if s == "-0" { "0".into() } else { s });
    }
    // Shortest round-trip digits, as d.ddde±x.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    Some(if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
            } else {
                format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
            }
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    })
}

/// A timestamp in UTC with milliseconds and `Z`; `None` if it is not an ISO 8601 date-time.
pub fn timestamp(text: &str) -> Option<String> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let dp: Vec<&str> = date.split('-').collect();
    if dp.len() != 3 || dp[0].len() != 4 || dp[1].len() != 2 || dp[2].len() != 2 {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(dp[0])?, num(dp[1])?, num(dp[2])?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    // Split the time from its zone.
    let zpos = rest.find(['Z', 'z', '+', '-']);
    let (clock, zone) = match zpos {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (hms, frac) = clock.split_once(['.', ',']).unwrap_or((clock, ""));
    let tp: Vec<&str> = hms.split(':').collect();
    if tp.len() != 3 {
        return None;
    }
    let (h, mi, s) = (num(tp[0])?, num(tp[1])?, num(tp[2])?);
    if h > 23 || mi > 59 || s > 60 || tp.iter().any(|p| p.len() != 2) {
        return None;
    }
    if !frac.is_empty() && num(frac).is_none() {
        return None;
    }
    // Microseconds, then rounded half to even to milliseconds.
    let micros: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    let (q, r) = (micros / 1000, micros % 1000);
    let millis = if r > 500 || (r == 500 && q % 2 == 1) {
        q + 1
    } else {
        q
    };
    let offset_min = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let z = &z[1..];
            let (zh, zm) = match z.split_once(':') {
                Some((a, b)) => (a, b),
                None if z.len() == 4 => z.split_at(2),
                None if z.len() == 2 => (z, "00"),
                None => return None,
            };
            let (zh, zm) = (num(zh)?, num(zm)?);
            if zh > 23 || zm > 59 {
                return None;
            }
            sign * (zh * 60 + zm)
        }
    };
    let days = days_from_civil(y, mo, d);
    let total_ms = ((days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60) * 1000) + millis;
    let (days, ms_of_day) = (
        total_ms.div_euclid(86_400_000),
        total_ms.rem_euclid(86_400_000),
    );
    let (y, mo, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    ))
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with milliseconds.
pub fn utc_iso(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_their_trailing_zeros() {
        for (i, o) in [
            ("1.0", "1"),
            ("0.3434", "0.3434"),
            ("26", "26"),
            ("+5", "5"),
            ("0012", "12"),
            ("1.50", "1.5"),
            ("0.00001", "1e-05"),
            ("1e3", "1000"),
            ("123456789.125", "123456789.125"),
            ("-0.0", "0"),
        ] {
            assert_eq!(number(i).as_deref(), Some(o), "{i}");
        }
        for n in ["abc", "2023-10-09", "+01:00", "", "1e999", "e"] {
            assert_eq!(number(n), None, "{n}");
        }
    }

    #[test]
    fn timestamps_become_utc_milliseconds() {
        for (i, o) in [
            ("2005-04-05T02:33:31.116-06:00", "2005-04-05T08:33:31.116Z"),
            ("2020-04-01T15:00:00+01:00", "2020-04-01T14:00:00.000Z"),
            ("2020-12-31T23:59:59.9996Z", "2021-01-01T00:00:00.000Z"),
            ("2020-03-01T00:30:00.0005+01:00", "2020-02-29T23:30:00.000Z"),
        ] {
            assert_eq!(timestamp(i).as_deref(), Some(o), "{i}");
        }
        for bad in [
            "P3Y",
            "2020-13-01T00:00:00Z",
            "yesterday",
            "2020-02-30T00:00:00Z",
        ] {
            assert_eq!(timestamp(bad), None, "{bad}");
        }
    }
}
