//! Fuzz target: EPCIS input never panics: Digital Links and EPC URNs are parsed or refused,
//! JSON and XML documents are hashed or refused, and a parsed link's canonical form parses to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(l) = carechain_epcis::parse_link(text) {
        let c = l.canonical();
        assert_eq!(carechain_epcis::parse_link(&c).map(|l| l.canonical()).ok(), Some(c));
    }
    let _ = carechain_epcis::digital_link(text);
    let _ = carechain_epcis::hash::json_document_prehashes(text);
    let _ = carechain_epcis::hash::xml_document_prehashes(text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = carechain_epcis::Event::parse(&v);
    }
});
