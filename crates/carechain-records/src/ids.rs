//! Resource ids and FHIR instants.

use carechain_vault::VaultError;

use crate::RecordError;

/// `YYYY-MM-DDThh:mm:ss.sssZ` for milliseconds since the Unix epoch.
pub fn format_instant(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        ms % 1000
    )
}

/// A fresh resource id: 32 hex digits, the first 12 the current time in milliseconds since the
/// epoch and the other 20 random (80 bits; the layout of a UUIDv7 without its version bits).
/// Ids made close in time sort close together, so a batch of new records lands in a few
/// B-tree pages of each index instead of one random page per record.
pub fn new_id() -> Result<String, RecordError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b[6..]).map_err(|_| RecordError::Vault(VaultError::Randomness))?;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Ok(hex::encode(b))
}
