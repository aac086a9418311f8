//! GS1 identifiers: the mod-10 check digit, and EPC URNs (`urn:epc:id:sgtin:…`,
//! `urn:epc:class:lgtin:…`, `urn:epc:idpat:sgtin:…`) converted to canonical GS1 Digital Link
//! URIs on `https://id.gs1.org` (the form the CBV 2.0 event hash takes them in). A URN names
//! the GS1 Company Prefix apart from the rest; the Digital Link joins them into the GS1 key,
//! with its check digit computed.

/// The canonical Digital Link resolver.
pub const DL_BASE: &str = "https://id.gs1.org";

/// Why an identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Gs1Error {
    /// Not an EPC URN of a scheme this module knows.
    #[error("unsupported EPC scheme {0}")]
    Unsupported(String),
    /// The URN does not have the scheme's parts.
    #[error("malformed {scheme} URN: {why}")]
    Malformed {
        /// The EPC scheme (`sgtin`, `sscc`, ...).
        scheme: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// The GS1 mod-10 check digit of `digits` (the key without its check digit): weights 3 and
/// 1 alternating from the rightmost digit. `None` if any character is not a digit.
pub fn check_digit(digits: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = u32::from(c - b'0');
        sum += if i % 2 == 0 { 3 * d } else { d };
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// Whether `key` (GTIN-8/12/13/14, GLN, SSCC, ...) is all digits with a correct last check
/// digit.
pub fn is_valid_key(key: &str) -> bool {
    key.len() >= 2
        && key.bytes().all(|c| c.is_ascii_digit())
        && check_digit(&key[..key.len() - 1]) == Some(key.as_bytes()[key.len() - 1] - b'0')
}

/// A serial, lot or other alphanumeric part as the canonical Digital Link writes it: the
/// URN's `%XX` escapes decoded, then every character of GS1's set 82 that is not
/// alphanumeric or one of `-._'` percent-encoded (as GS1's reference event hash
/// implementation writes them; its vectors check this).
fn dl_segment(urn_part: &str) -> String {
    let bytes = urn_part.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            raw.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        raw.push(bytes[i]);
        i += 1;
    }
    let mut out = String::with_capacity(raw.len());
    for b in raw {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'\'') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_check(digits: &str) -> String {
    format!("{digits}{}", check_digit(digits).unwrap_or(0))
}

/// The parts of a URN after its scheme, checked to be `n` and to start with a GS1 Company
/// Prefix (6 to 12 digits).
fn parts<'a>(scheme: &str, rest: &'a str, n: usize) -> Result<Vec<&'a str>, Gs1Error> {
    let bad = |why| Gs1Error::Malformed {
        scheme: scheme.to_string(),
        why,
    };
    let p: Vec<&str> = rest.split('.').collect();
    if p.len() != n {
        return Err(bad("wrong number of parts"));
    }
    let cp = p[0];
    if !(6..=12).contains(&cp.len()) || !cp.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("the company prefix is 6 to 12 digits"));
    }
    Ok(p)
}

/// `len` digits made of `cp` and `reference` (an indicator digit first if `indicator`).
fn key(
    scheme: &str,
    cp: &str,
    reference: &str,
    len: usize,
    indicator: bool,
) -> Result<String, Gs1Error> {
    let bad = |why| Gs1Error::Malformed {
        scheme: scheme.to_string(),
        why,
    };
    if !reference.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("the reference is digits"));
    }
    if cp.len() + reference.len() != len - 1 {
        return Err(bad(
            "the company prefix and reference do not make the key's length",
        ));
    }
    let body = if indicator {
        let (ind, rest) = reference.split_at(1.min(reference.len()));
        format!("{ind}{cp}{rest}")
    } else {
        format!("{cp}{reference}")
    };
    Ok(with_check(&body))
}

/// The canonical GS1 Digital Link URI of an EPC URN (instance `urn:epc:id:…`, class
/// `urn:epc:class:lgtin:…`, or a pattern `urn:epc:idpat:…` with a `*` serial).
pub fn digital_link(urn: &str) -> Result<String, Gs1Error> {
    let (kind, rest) = if let Some(r) = urn.strip_prefix("urn:epc:id:") {
        ("id", r)
    } else if let Some(r) = urn.strip_prefix("urn:epc:class:") {
        ("class", r)
    } else if let Some(r) = urn.strip_prefix("urn:epc:idpat:") {
        ("idpat", r)
    } else {
        return Err(Gs1Error::Unsupported(urn.to_string()));
    };
    let (scheme, body) = rest
        .split_once(':')
        .ok_or_else(|| Gs1Error::Unsupported(urn.to_string()))?;
    let dl = |path: String| format!("{DL_BASE}/{path}");
    match (kind, scheme) {
        ("id", "sgtin") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!(
                "01/{}/21/{}",
                key(scheme, p[0], p[1], 14, true)?,
                dl_segment(p[2])
            )))
        }
        ("idpat", "sgtin") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!("01/{}", key(scheme, p[0], p[1], 14, true)?)))
        }
        ("class", "lgtin") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!(
                "01/{}/10/{}",
                key(scheme, p[0], p[1], 14, true)?,
                dl_segment(p[2])
            )))
        }
        ("id", "sscc") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("00/{}", key(scheme, p[0], p[1], 18, true)?)))
        }
        ("id", "sgln") => {
            let p = parts(scheme, body, 3)?;
            let gln = key(scheme, p[0], p[1], 13, false)?;
            Ok(match p[2] {
                "0" => dl(format!("414/{gln}")),
                ext => dl(format!("414/{gln}/254/{}", dl_segment(ext))),
            })
        }
        ("id", "grai") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!(
                "8003/0{}{}",
                key(scheme, p[0], p[1], 13, false)?,
                dl_segment(p[2])
            )))
        }
        ("id", "giai") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("8004/{}{}", p[0], dl_segment(p[1]))))
        }
        ("id", "gsrn") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("8018/{}", key(scheme, p[0], p[1], 18, false)?)))
        }
        ("id", "gsrnp") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("8017/{}", key(scheme, p[0], p[1], 18, false)?)))
        }
        ("id", "gdti") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!(
                "253/{}{}",
                key(scheme, p[0], p[1], 13, false)?,
                dl_segment(p[2])
            )))
        }
        ("id", "pgln") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("417/{}", key(scheme, p[0], p[1], 13, false)?)))
        }
        ("id", "sgcn") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!(
                "255/{}{}",
                key(scheme, p[0], p[1], 13, false)?,
                dl_segment(p[2])
            )))
        }
        ("id", "upui") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!(
                "01/{}/235/{}",
                key(scheme, p[0], p[1], 14, true)?,
                dl_segment(p[2])
            )))
        }
        ("id" | "idpat", "itip") => {
            let p = parts(scheme, body, 5)?;
            let pieces = |v: &str| v.len() == 2 && v.bytes().all(|c| c.is_ascii_digit());
            if !pieces(p[2]) || !pieces(p[3]) {
                return Err(Gs1Error::Malformed {
                    scheme: scheme.into(),
                    why: "piece and total are two digits each",
                });
            }
            let base = format!(
                "8006/{}{}{}",
                key(scheme, p[0], p[1], 14, true)?,
                p[2],
                p[3]
            );
            Ok(match (kind, p[4]) {
                ("idpat", _) => dl(base),
                (_, serial) => dl(format!("{base}/21/{}", dl_segment(serial))),
            })
        }
        ("id", "ginc") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("401/{}{}", p[0], dl_segment(p[1]))))
        }
        ("id", "gsin") => {
            let p = parts(scheme, body, 2)?;
            Ok(dl(format!("402/{}", key(scheme, p[0], p[1], 17, false)?)))
        }
        ("id" | "idpat", "cpi") => {
            let p = parts(scheme, body, 3)?;
            let base = format!("8010/{}{}", p[0], dl_segment(p[1]));
            Ok(match kind {
                "idpat" => dl(base),
                _ => dl(format!("{base}/8011/{}", p[2])),
            })
        }
        ("idpat", "gdti") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!("253/{}", key(scheme, p[0], p[1], 13, false)?)))
        }
        ("idpat", "sgcn") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!("255/{}", key(scheme, p[0], p[1], 13, false)?)))
        }
        ("idpat", "grai") => {
            let p = parts(scheme, body, 3)?;
            Ok(dl(format!("8003/0{}", key(scheme, p[0], p[1], 13, false)?)))
        }
        _ => Err(Gs1Error::Unsupported(urn.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_of_known_keys() {
        // GS1's own examples: GTIN-14, GLN, SSCC.
        assert!(is_valid_key("09506000134352"));
        assert!(is_valid_key("4012345000054"));
        assert!(is_valid_key("040123450000003338"));
        assert!(!is_valid_key("09506000134353"));
        assert!(!is_valid_key("0950600013435x"));
    }

    #[test]
    fn urns_become_digital_links() {
        assert_eq!(
            digital_link("urn:epc:id:sgtin:0614141.107346.2017").unwrap(),
            "https://id.gs1.org/01/10614141073464/21/2017"
        );
        assert_eq!(
            digital_link("urn:epc:id:sgln:0614141.07346.1234").unwrap(),
            "https://id.gs1.org/414/0614141073467/254/1234"
        );
        assert_eq!(
            digital_link("urn:epc:id:sgln:0614141.00777.0").unwrap(),
            "https://id.gs1.org/414/0614141007776"
        );
        assert!(matches!(
            digital_link("urn:epc:id:sgtin:0614141.1073.2017"),
            Err(Gs1Error::Malformed { .. })
        ));
        assert!(matches!(
            digital_link("urn:epc:id:bic:CSQU3054383"),
            Err(Gs1Error::Unsupported(_))
        ));
    }
}
