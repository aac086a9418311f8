//! EPCIS 2.0 documents of a small supply chain: a manufacturer (company prefix 9506000)
//! commissions packs of GTIN 09506000134352, packs two into a case (an SSCC) and ships it to
//! a pharmacy (prefix 4012345); the pharmacy receives, unpacks and dispenses; the
//! manufacturer recalls the lot.

use serde_json::{Value, json};

pub const MAKER_PREFIX: &str = "9506000";
pub const PHARMACY_A_PREFIX: &str = "4012345";
pub const PHARMACY_B_PREFIX: &str = "4098765";
pub const GTIN: &str = "09506000134352";
pub const LOT: &str = "L2026A";

/// The SGTIN URN of serial `s`.
pub fn sgtin(s: &str) -> String {
    format!("urn:epc:id:sgtin:{MAKER_PREFIX}.013435.{s}")
}

/// Its canonical Digital Link.
pub fn link(s: &str) -> String {
    format!("https://id.gs1.org/01/{GTIN}/21/{s}")
}

pub const CASE: &str = "urn:epc:id:sscc:9506000.0000000001";

/// An SGLN of a company prefix (location reference 00001, no extension).
pub fn sgln(prefix: &str) -> String {
    format!("urn:epc:id:sgln:{prefix}.00001.0")
}

/// The PGLN (party) of a company prefix.
pub fn pgln(prefix: &str) -> String {
    format!("urn:epc:id:pgln:{prefix}.00000")
}

pub fn document(events: Vec<Value>) -> Value {
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                     {"example": "https://ns.example.com/epcis/"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T08:00:00.000Z",
        "epcisBody": {"eventList": events},
    })
}

fn base(kind: &str, time: &str) -> Value {
    json!({"type": kind, "eventTime": time, "eventTimeZoneOffset": "+01:00"})
}

pub fn commissioning(serials: &[&str]) -> Value {
    let mut e = base("ObjectEvent", "2026-12-01T09:00:00.000+01:00");
    e["action"] = json!("ADD");
    e["bizStep"] = json!("commissioning");
    e["disposition"] = json!("active");
    e["epcList"] = json!(serials.iter().map(|s| sgtin(s)).collect::<Vec<_>>());
    e["readPoint"] = json!({"id": sgln(MAKER_PREFIX)});
    e["bizLocation"] = json!({"id": sgln(MAKER_PREFIX)});
    e["ilmd"] = json!({"cbvmda:lotNumber": LOT, "cbvmda:itemExpirationDate": "2030-12-31"});
    e["example:line"] = json!("packaging line 3");
    e
}

pub fn packing(serials: &[&str]) -> Value {
    let mut e = base("AggregationEvent", "2026-12-01T10:00:00.000+01:00");
    e["action"] = json!("ADD");
    e["bizStep"] = json!("packing");
    e["parentID"] = json!(CASE);
    e["childEPCs"] = json!(serials.iter().map(|s| sgtin(s)).collect::<Vec<_>>());
    e["bizLocation"] = json!({"id": sgln(MAKER_PREFIX)});
    e
}

pub fn shipping_to(prefix: &str) -> Value {
    let mut e = base("ObjectEvent", "2026-12-01T11:00:00.000+01:00");
    e["action"] = json!("OBSERVE");
    e["bizStep"] = json!("shipping");
    e["disposition"] = json!("in_transit");
    e["epcList"] = json!([CASE]);
    e["readPoint"] = json!({"id": sgln(MAKER_PREFIX)});
    e["bizTransactionList"] =
        json!([{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000009:PO-77"}]);
    e["sourceList"] = json!([{"type": "owning_party", "source": pgln(MAKER_PREFIX)}]);
    e["destinationList"] = json!([{"type": "owning_party", "destination": pgln(prefix)}]);
    e
}

pub fn receiving(prefix: &str) -> Value {
    let mut e = base("ObjectEvent", "2026-12-02T09:00:00.000+01:00");
    e["action"] = json!("OBSERVE");
    e["bizStep"] = json!("receiving");
    e["disposition"] = json!("in_progress");
    e["epcList"] = json!([CASE]);
    e["bizLocation"] = json!({"id": sgln(prefix)});
    e
}

pub fn unpacking(serials: &[&str], prefix: &str) -> Value {
    let mut e = base("AggregationEvent", "2026-12-02T09:30:00.000+01:00");
    e["action"] = json!("DELETE");
    e["bizStep"] = json!("unpacking");
    e["parentID"] = json!(CASE);
    e["childEPCs"] = json!(serials.iter().map(|s| sgtin(s)).collect::<Vec<_>>());
    e["bizLocation"] = json!({"id": sgln(prefix)});
    e
}

pub fn dispensing(serial: &str, prefix: &str) -> Value {
    let mut e = base("ObjectEvent", "2026-12-03T15:00:00.000+01:00");
    e["action"] = json!("OBSERVE");
    e["bizStep"] = json!("dispensing");
    e["disposition"] = json!("dispensed");
    e["epcList"] = json!([sgtin(serial)]);
    e["bizLocation"] = json!({"id": sgln(prefix)});
    e
}

pub fn recall() -> Value {
    let mut e = base("ObjectEvent", "2026-12-04T08:00:00.000+01:00");
    e["action"] = json!("OBSERVE");
    e["bizStep"] = json!("holding");
    e["disposition"] = json!("recalled");
    e["quantityList"] =
        json!([{"epcClass": format!("urn:epc:class:lgtin:{MAKER_PREFIX}.013435.{LOT}")}]);
    e["bizLocation"] = json!({"id": sgln(MAKER_PREFIX)});
    e
}

/// The manufacturer's commissioning of `serials` as an EPCIS 2.0 XML document.
pub fn commissioning_xml(serials: &[&str]) -> String {
    let epcs: String = serials
        .iter()
        .map(|s| format!("<epc>{}</epc>", sgtin(s)))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:2" xmlns:cbvmda="urn:epcglobal:cbv:mda"
    xmlns:example="https://ns.example.com/epcis/" schemaVersion="2.0" creationDate="2026-12-01T08:00:00.000Z">
  <EPCISBody>
    <EventList>
      <ObjectEvent>
        <eventTime>2026-12-01T09:00:00.000+01:00</eventTime>
        <eventTimeZoneOffset>+01:00</eventTimeZoneOffset>
        <epcList>{epcs}</epcList>
        <action>ADD</action>
        <bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>
        <disposition>urn:epcglobal:cbv:disp:active</disposition>
        <readPoint><id>{rp}</id></readPoint>
        <bizLocation><id>{rp}</id></bizLocation>
        <ilmd>
          <cbvmda:lotNumber>{LOT}</cbvmda:lotNumber>
          <cbvmda:itemExpirationDate>2030-12-31</cbvmda:itemExpirationDate>
        </ilmd>
        <example:line>packaging line 3</example:line>
      </ObjectEvent>
    </EventList>
  </EPCISBody>
</epcis:EPCISDocument>"#,
        rp = sgln(MAKER_PREFIX)
    )
}
