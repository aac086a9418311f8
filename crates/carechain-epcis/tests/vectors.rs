//! Against GS1's own event hash vectors (`../shared/data/epcis/event-hash-vectors`): every
//! EPC URN of a supported scheme in an example document becomes a Digital Link that the
//! reference implementation's canonical pre-hash strings of the same document contain; every
//! Digital Link key in those strings that carries a check digit has a correct one.

use std::path::PathBuf;

use carechain_epcis::{Gs1Error, digital_link, is_valid_key};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/epcis/event-hash-vectors")
}

/// The EPC URNs in `text` (up to a quote, a tag or whitespace).
fn urns(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("urn:epc:") {
        let tail = &rest[i..];
        let end = tail
            .find(['"', '<', ' ', '\n', '\r', '\t'])
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn urns_convert_to_the_digital_links_of_the_reference_prehashes() {
    let mut checked = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(vectors()).expect("../shared/data/epcis/event-hash-vectors") {
        let path = entry.unwrap().path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if ext != "jsonld" && ext != "xml" {
            continue;
        }
        let prehashes = path.with_extension("prehashes");
        let Ok(pre) = std::fs::read_to_string(&prehashes) else {
            continue;
        };
        // Only the pre-hash lines that agree with their published hashes (see below).
        let hashes = std::fs::read_to_string(path.with_extension("hashes")).unwrap_or_default();
        let hashes: Vec<&str> = hashes.lines().collect();
        if pre.lines().enumerate().any(|(i, l)| {
            hashes
                .get(i)
                .is_some_and(|h| *h != carechain_epcis::hash::hash_of_prehash(l))
        }) {
            continue;
        }
        files += 1;
        let doc = std::fs::read_to_string(&path).unwrap();
        for urn in urns(&doc) {
            match digital_link(&urn) {
                Ok(dl) => {
                    assert!(
                        pre.contains(&dl),
                        "{}: {urn} -> {dl}, not in the pre-hashes",
                        path.display()
                    );
                    checked += 1;
                }
                Err(Gs1Error::Unsupported(_)) => {}
                Err(e) => panic!("{}: {urn}: {e}", path.display()),
            }
        }
    }
    assert!(files >= 10, "only {files} documents with pre-hashes");
    assert!(checked >= 50, "only {checked} URNs checked");
}

#[test]
fn keys_in_the_reference_prehashes_have_correct_check_digits() {
    let mut checked = 0;
    for entry in std::fs::read_dir(vectors()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("prehashes") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // GTIN (01), SSCC (00), GLN (414), party GLN (417): fixed-length keys with a check digit.
        for (ai, len) in [("01", 14), ("00", 18), ("414", 13), ("417", 13)] {
            let needle = format!("https://id.gs1.org/{ai}/");
            let mut rest = text.as_str();
            while let Some(i) = rest.find(&needle) {
                let key: String = rest[i + needle.len()..].chars().take(len).collect();
                if key.len() == len && key.bytes().all(|c| c.is_ascii_digit()) {
                    assert!(is_valid_key(&key), "{}: {ai}/{key}", path.display());
                    checked += 1;
                }
                rest = &rest[i + needle.len()..];
            }
        }
    }
    assert!(checked >= 50, "only {checked} keys checked");
}

mod properties {
    use carechain_epcis::{check_digit, is_valid_key};
    use proptest::prelude::*;

    proptest! {
        /// A key with its check digit validates; changing any one digit of it does not (the
        /// mod-10 check catches every single-digit error).
        #[test]
        fn a_check_digit_catches_every_single_digit_error(body in "[0-9]{7,17}", at in any::<usize>(), by in 1u8..10) {
            let key = format!("{body}{}", check_digit(&body).unwrap());
            prop_assert!(is_valid_key(&key));
            let i = at % key.len();
            let mut bad = key.clone().into_bytes();
            bad[i] = b'0' + (bad[i] - b'0' + by) % 10;
            prop_assert!(!is_valid_key(std::str::from_utf8(&bad).unwrap()));
        }

        /// An SGTIN written as an EPC URN and as a Digital Link on any domain (short names,
        /// with a lot, a query string) is one canonical Digital Link, which parses to itself.
        #[test]
        fn an_sgtin_has_one_canonical_link(cp_len in 6usize..=12, digits in "[0-9]{13}", serial in "[A-Za-z0-9]{1,20}", lot in "[A-Z0-9]{1,10}") {
            let (cp, rest) = digits.split_at(cp_len);
            let (indicator, item) = rest.split_at(1);
            let urn = format!("urn:epc:id:sgtin:{cp}.{indicator}{item}.{serial}");
            let from_urn = carechain_epcis::digital_link(&urn).unwrap();
            let gtin = format!("{indicator}{cp}{item}{}", check_digit(&format!("{indicator}{cp}{item}")).unwrap());
            let dl = format!("https://example.com/gtin/{gtin}/lot/{lot}/ser/{serial}?17=271231");
            let parsed = carechain_epcis::parse_link(&dl).unwrap();
            prop_assert_eq!(&parsed.canonical(), &from_urn);
            prop_assert_eq!(carechain_epcis::normalise(&dl), Some(from_urn.clone()));
            prop_assert_eq!(carechain_epcis::parse_link(&from_urn).unwrap().canonical(), from_urn);
        }

        /// An event's hash does not depend on the order of its lists, its keys' order or
        /// whether its EPCs are written as URNs or Digital Links; changing a value changes it.
        #[test]
        fn an_events_hash_is_its_content(serials in proptest::collection::btree_set("[A-Za-z0-9]{1,12}", 1..6), rot in any::<usize>()) {
            let serials: Vec<String> = serials.into_iter().collect();
            let urns: Vec<String> = serials.iter().map(|s| format!("urn:epc:id:sgtin:0614141.107346.{s}")).collect();
            let links: Vec<String> = serials.iter().map(|s| format!("https://id.gs1.org/01/10614141073464/21/{s}")).collect();
            let mut rotated = links.clone();
            rotated.rotate_left(rot % links.len());
            let event = |epcs: &[String], step: &str| serde_json::json!({
                "type": "ObjectEvent", "eventTime": "2026-01-01T10:00:00.000+01:00", "eventTimeZoneOffset": "+01:00",
                "action": "OBSERVE", "bizStep": step, "epcList": epcs,
                "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
            });
            let h = |v: &serde_json::Value| carechain_epcis::hash::json_event_hash(v, None);
            let a = h(&event(&urns, "shipping"));
            prop_assert_eq!(&a, &h(&event(&rotated, "https://ref.gs1.org/cbv/BizStep-shipping")));
            prop_assert_eq!(&a, &h(&event(&rotated, "urn:epcglobal:cbv:bizstep:shipping")));
            prop_assert_ne!(&a, &h(&event(&urns, "receiving")));
        }
    }
}

/// Every `.prehashes` and `.hashes` line of GS1's vectors, from the JSON-LD and the XML
/// document of the same name.
#[test]
fn event_hashes_match_every_vector_line() {
    use carechain_epcis::hash::{hash_of_prehash, json_document_prehashes, xml_document_prehashes};
    let mut lines = 0;
    let mut damaged = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(vectors()).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let ours = match ext {
            "jsonld" => json_document_prehashes(&std::fs::read_to_string(&path).unwrap()),
            "xml" => xml_document_prehashes(&std::fs::read_to_string(&path).unwrap()),
            _ => continue,
        }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let hashes = std::fs::read_to_string(path.with_extension("hashes")).unwrap_or_default();
        let hashes: Vec<&str> = hashes.lines().filter(|l| !l.is_empty()).collect();
        if let Ok(want) = std::fs::read_to_string(path.with_extension("prehashes")) {
            for (i, w) in want.lines().filter(|l| !l.is_empty()).enumerate() {
                lines += 1;
                // Two lines of the stored vectors are damaged (one cut short, one with
                // interleaved text): their SHA-256 is not the published hash of the same event,
                // which the reference implementation does reproduce. Such a line is checked
                // through its hash line instead, below.
                if hashes.get(i).is_some_and(|h| *h != hash_of_prehash(w)) {
                    damaged += 1;
                    continue;
                }
                if ours.get(i).map(String::as_str) != Some(w) {
                    failures.push(format!(
                        "{} prehash {i}:\n want {w}\n got  {}",
                        path.display(),
                        ours.get(i).map(String::as_str).unwrap_or("<none>")
                    ));
                }
            }
        }
        if let Ok(want) = std::fs::read_to_string(path.with_extension("hashes")) {
            for (i, w) in want.lines().filter(|l| !l.is_empty()).enumerate() {
                lines += 1;
                let got = ours.get(i).map(|p| hash_of_prehash(p));
                if got.as_deref() != Some(w) {
                    failures.push(format!("{} hash {i}: want {w} got {got:?}", path.display()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {lines} lines differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(lines >= 50, "only {lines} vector lines checked");
    assert!(
        damaged <= 2,
        "{damaged} pre-hash lines disagree with their own hash lines"
    );
}

/// Every XML vector read into JSON-LD hashes exactly as the XML does (so capturing XML as
/// its JSON form keeps each event's identity) — except where GS1's own JSON rules cannot say
/// what the XML says: a user extension whose name ends in `List` (JSON reads its content as
/// list items), which capture then refuses with that reason.
#[test]
fn xml_read_as_json_keeps_every_event_hash() {
    use carechain_epcis::hash::{json_document_prehashes, xml_document_prehashes};
    let (mut same, mut quirks) = (0, 0);
    for entry in std::fs::read_dir(vectors()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let want = xml_document_prehashes(&text).unwrap();
        let json = carechain_epcis::xml::xml_to_json(&text).unwrap();
        let got = json_document_prehashes(&json.to_string()).unwrap();
        assert_eq!(got.len(), want.len(), "{}", path.display());
        let events = json["epcisBody"]["eventList"].as_array().unwrap();
        for ((g, w), e) in got.iter().zip(&want).zip(events) {
            if g == w {
                same += 1;
            } else {
                let list_extension = e
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.contains(':') && k.ends_with("List"));
                assert!(list_extension, "{}\n{g}\n{w}", path.display());
                quirks += 1;
            }
        }
    }
    assert!(
        same >= 15 && quirks <= 1,
        "{same} events keep their hash, {quirks} do not"
    );
}
