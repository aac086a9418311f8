//! GS1 Digital Link URIs (`https://example.com/01/09506000134352/10/ABC/21/XYZ`): parsed into a
//! primary key and its qualifiers, validated (lengths, digits, check digits, GS1's character
//! set 82), and written in the constrained canonical form the CBV 2.0 event hash uses:
//! `https://id.gs1.org`, no query string, only the most fine-grained identification.

use crate::gs1::{DL_BASE, Gs1Error, is_valid_key};

/// A primary GS1 key of a Digital Link, by its application identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryKey {
    /// `00` SSCC (a logistic unit: a case, a pallet).
    Sscc,
    /// `01` GTIN (a trade item).
    Gtin,
    /// `253` GDTI (a document).
    Gdti,
    /// `255` GCN (a coupon).
    Gcn,
    /// `401` GINC (a consignment).
    Ginc,
    /// `402` GSIN (a shipment).
    Gsin,
    /// `414` GLN of a physical location.
    Gln,
    /// `417` GLN of a party.
    Party,
    /// `8003` GRAI (a returnable asset).
    Grai,
    /// `8004` GIAI (an individual asset).
    Giai,
    /// `8006` ITIP (a piece of a trade item).
    Itip,
    /// `8010` CPID (a component or part).
    Cpid,
    /// `8017` GSRN of a provider.
    Gsrnp,
    /// `8018` GSRN of a recipient.
    Gsrn,
}

impl PrimaryKey {
    /// By application identifier or the short name Digital Link also accepts.
    fn from_segment(s: &str) -> Option<Self> {
        Some(match s {
            "00" | "sscc" => Self::Sscc,
            "01" | "gtin" => Self::Gtin,
            "253" | "gdti" => Self::Gdti,
            "255" | "gcn" => Self::Gcn,
            "401" | "ginc" => Self::Ginc,
            "402" | "gsin" => Self::Gsin,
            "414" | "gln" => Self::Gln,
            "417" | "party" => Self::Party,
            "8003" | "grai" => Self::Grai,
            "8004" | "giai" => Self::Giai,
            "8006" | "itip" => Self::Itip,
            "8010" | "cpid" => Self::Cpid,
            "8017" | "gsrnp" => Self::Gsrnp,
            "8018" | "gsrn" => Self::Gsrn,
            _ => return None,
        })
    }

    /// The application identifier.
    pub fn ai(self) -> &'static str {
        match self {
            Self::Sscc => "00",
            Self::Gtin => "01",
            Self::Gdti => "253",
            Self::Gcn => "255",
            Self::Ginc => "401",
            Self::Gsin => "402",
            Self::Gln => "414",
            Self::Party => "417",
            Self::Grai => "8003",
            Self::Giai => "8004",
            Self::Itip => "8006",
            Self::Cpid => "8010",
            Self::Gsrnp => "8017",
            Self::Gsrn => "8018",
        }
    }

    /// The key qualifiers this key may carry, finest last.
    fn qualifiers(self) -> &'static [&'static str] {
        match self {
            Self::Gtin | Self::Itip => &["22", "10", "21", "235"],
            Self::Gln => &["254"],
            Self::Cpid => &["8011"],
            _ => &[],
        }
    }
}

/// A parsed Digital Link: the primary key, its value, the key qualifiers (AI, value) in path
/// order and the data attributes of the query string (`17` expiry, `10` lot, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitalLink {
    /// The primary key.
    pub key: PrimaryKey,
    /// Its value (a GTIN always 14 digits).
    pub value: String,
    /// Key qualifiers, decoded.
    pub qualifiers: Vec<(String, String)>,
    /// Data attributes from the query string, decoded.
    pub attributes: Vec<(String, String)>,
}

fn decode(seg: &str) -> Result<String, Gs1Error> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = seg
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| malformed("a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| malformed("a percent escape that is not UTF-8"))
}

fn malformed(why: &'static str) -> Gs1Error {
    Gs1Error::Malformed {
        scheme: "digital link".into(),
        why,
    }
}

/// GS1 AI encodable character set 82.
fn is_cset82(s: &str) -> bool {
    s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'"'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'-'
                    | b'.'
                    | b'/'
                    | b':'
                    | b';'
                    | b'<'
                    | b'='
                    | b'>'
                    | b'?'
                    | b'_'
            )
    })
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a primary key's value: its length, digits and check digit.
fn check_value(key: PrimaryKey, v: &str) -> Result<(), Gs1Error> {
    let ok = match key {
        PrimaryKey::Gtin => digits(v, 14) && is_valid_key(v),
        PrimaryKey::Sscc | PrimaryKey::Gsrn | PrimaryKey::Gsrnp => digits(v, 18) && is_valid_key(v),
        PrimaryKey::Gln | PrimaryKey::Party => digits(v, 13) && is_valid_key(v),
        PrimaryKey::Gsin => digits(v, 17) && is_valid_key(v),
        PrimaryKey::Itip => digits(v, 18) && is_valid_key(&v[..14]),
        PrimaryKey::Gdti | PrimaryKey::Gcn => {
            v.len() > 13 && digits(&v[..13], 13) && is_valid_key(&v[..13]) && is_cset82(&v[13..])
        }
        PrimaryKey::Grai => {
            v.len() >= 14 && digits(&v[..14], 14) && is_valid_key(&v[..14]) && is_cset82(&v[14..])
        }
        PrimaryKey::Ginc | PrimaryKey::Giai | PrimaryKey::Cpid => {
            !v.is_empty() && v.len() <= 30 && is_cset82(v)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(malformed(
            "the key's length, digits or check digit are wrong",
        ))
    }
}

/// Parses and validates a Digital Link URI on any domain. A GTIN-8, -12 or -13 is padded to
/// 14 digits.
pub fn parse_link(uri: &str) -> Result<DigitalLink, Gs1Error> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| malformed("not an http(s) URI"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let segs: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let start = segs
        .iter()
        .position(|s| PrimaryKey::from_segment(s).is_some())
        .ok_or_else(|| malformed("no GS1 primary key in the path"))?;
    let key = PrimaryKey::from_segment(segs[start]).unwrap_or(PrimaryKey::Gtin);
    let mut value = decode(
        segs.get(start + 1)
            .ok_or_else(|| malformed("a key without a value"))?,
    )?;
    if key == PrimaryKey::Gtin && matches!(value.len(), 8 | 12 | 13) {
        value = format!("{value:0>14}");
    }
    check_value(key, &value)?;
    let tail = &segs[start + 2..];
    if !tail.len().is_multiple_of(2) {
        return Err(malformed("a key qualifier without a value"));
    }
    let allowed = key.qualifiers();
    let mut qualifiers = Vec::new();
    let mut last = None;
    for pair in tail.chunks(2) {
        let ai = match pair[0] {
            "cpv" => "22",
            "lot" => "10",
            "ser" => "21",
            other => other,
        };
        let pos = allowed
            .iter()
            .position(|q| *q == ai)
            .ok_or_else(|| malformed("a key qualifier this key does not take"))?;
        if last.is_some_and(|l| l >= pos) {
            return Err(malformed("key qualifiers out of order"));
        }
        last = Some(pos);
        let v = decode(pair[1])?;
        if v.is_empty() || v.len() > 28 || !is_cset82(&v) {
            return Err(malformed("a qualifier value outside GS1's character set"));
        }
        qualifiers.push((ai.to_string(), v));
    }
    let mut attributes = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        attributes.push((decode(k)?, decode(v)?));
    }
    Ok(DigitalLink {
        key,
        value,
        qualifiers,
        attributes,
    })
}

impl DigitalLink {
    /// A qualifier's value (`"21"` the serial, `"10"` the lot).
    pub fn qualifier(&self, ai: &str) -> Option<&str> {
        self.qualifiers
            .iter()
            .find(|(a, _)| a == ai)
            .map(|(_, v)| v.as_str())
    }

    /// A data attribute's value (`"17"` the expiry date YYMMDD, `"10"` the lot).
    pub fn attribute(&self, ai: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(a, _)| a == ai)
            .map(|(_, v)| v.as_str())
    }

    /// The constrained canonical form: `https://id.gs1.org`, the finest identification only
    /// (a serial drops the lot; the consumer product variant is dropped), no query.
    pub fn canonical(&self) -> String {
        let mut out = format!("{DL_BASE}/{}/{}", self.key.ai(), encode(&self.value));
        let q = |ai: &str| self.qualifier(ai);
        let keep = match self.key {
            PrimaryKey::Gtin | PrimaryKey::Itip => q("21")
                .map(|v| ("21", v))
                .or_else(|| q("10").map(|v| ("10", v)))
                .or_else(|| q("235").map(|v| ("235", v))),
            PrimaryKey::Gln => q("254").map(|v| ("254", v)),
            PrimaryKey::Cpid => q("8011").map(|v| ("8011", v)),
            _ => None,
        };
        if let Some((ai, v)) = keep {
            out.push_str(&format!("/{ai}/{}", encode(v)));
        }
        out
    }
}

/// Percent-encodes what a path segment of a canonical Digital Link must not hold as is.
pub(crate) fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'\'') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The constrained canonical Digital Link of an identifier written either as an EPC URN or
/// as a Digital Link; `None` if it is neither (or malformed).
pub fn normalise(id: &str) -> Option<String> {
    if id.starts_with("urn:epc:") {
        crate::gs1::digital_link(id).ok()
    } else if id.starts_with("http") {
        parse_link(id).ok().map(|l| l.canonical())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_on_any_domain_become_canonical() {
        let l = parse_link("https://example.com/gtin/9506000134352/lot/ABC/ser/X%2F1?17=261231")
            .unwrap();
        assert_eq!(l.value, "09506000134352");
        assert_eq!(l.qualifier("21"), Some("X/1"));
        assert_eq!(l.attribute("17"), Some("261231"));
        assert_eq!(
            l.canonical(),
            "https://id.gs1.org/01/09506000134352/21/X%2F1"
        );
        assert_eq!(
            normalise("https://id.gs1.org/414/4012345000054/254/7").as_deref(),
            Some("https://id.gs1.org/414/4012345000054/254/7")
        );
    }

    #[test]
    fn bad_links_are_refused() {
        for bad in [
            "https://id.gs1.org/01/09506000134353/21/1",
            "https://id.gs1.org/01/0950600013435/21",
            "https://id.gs1.org/99/123",
            "https://id.gs1.org/01/09506000134352/21/1/10/A",
            "https://id.gs1.org/01/09506000134352/21/%zz",
            "ftp://id.gs1.org/01/09506000134352",
        ] {
            assert!(parse_link(bad).is_err(), "{bad}");
        }
    }
}
