//! FHIR date / dateTime / instant values as ranges of Unix seconds (UTC), so that partial dates
//! ("2016", "2016-01") compare by what they cover.

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The first and last second covered by a FHIR date, dateTime or instant (UTC). Date-only
/// values cover whole days; a time without an offset is taken as UTC.
pub fn fhir_time_range(s: &str) -> Option<(i64, i64)> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: Option<i64> = parts.next().map(str::parse).transpose().ok()?;
    let d: Option<i64> = parts.next().map(str::parse).transpose().ok()?;
    if parts.next().is_some() || date.len() < 4 {
        return None;
    }
    let (m_lo, m_hi) = m.map_or((1, 12), |m| (m, m));
    if !(1..=12).contains(&m_lo) {
        return None;
    }
    let (d_lo, d_hi) = d.map_or((1, days_in_month(y, m_hi)), |d| (d, d));
    if d_lo < 1 || d_hi > days_in_month(y, m_hi) {
        return None;
    }
    let lo_day = days_from_civil(y, m_lo, d_lo);
    let hi_day = days_from_civil(y, m_hi, d_hi);
    let Some(t) = time else {
        return Some((lo_day * 86_400, hi_day * 86_400 + 86_399));
    };
    let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = t.rfind(['+', '-']) {
        let (c, off) = t.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    } else {
        (t, 0)
    };
    let mut hms = clock.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next().unwrap_or("0").parse().ok()?;
    let secs = lo_day * 86_400 + h * 3600 + mi * 60 + sec.floor() as i64 - offset;
    Some((secs, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(fhir_time_range("1970-01-01"), Some((0, 86_399)));
        assert_eq!(fhir_time_range("1970-01-01T01:00:00Z"), Some((3600, 3600)));
        assert_eq!(fhir_time_range("1970-01-01T01:00:00+01:00"), Some((0, 0)));
        assert_eq!(fhir_time_range("2000"), Some((946_684_800, 978_307_199)));
        assert_eq!(
            fhir_time_range("2016-02").map(|r| r.1 - r.0 + 1),
            Some(29 * 86_400)
        );
        assert_eq!(fhir_time_range("2021-13-01"), None);
        assert_eq!(fhir_time_range("x"), None);
    }
}
