//! The single-node demo's supply chain: Northwind Pharma (company prefix 9506000) commissions
//! six packs of amoxicillin (GTIN 09506000134352, lot NW2026-11), packs four into a case and
//! ships it to Meridian Wholesale, which receives it and ships it on to Corner Pharmacy;
//! Corner receives and unpacks it and dispenses pack S1 to Alice (recording the
//! MedicationDispense in her record, with her consent); Harbor Pharmacy then scans the same
//! serial — a clone, flagged to all three — and Northwind recalls the lot, so Alice finds a
//! recall alert in her portal.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use carechain_crypto::SecretKey;
use carechain_service::{Purpose, Service};
use carechain_supply::{Actor, Behaviour, Supply};
use carechain_types::Payload;
use serde_json::{Value, json};

use crate::demo::{DemoKeys, Who, local_session};
use crate::demo_claims::run;
use crate::out_line;

const GTIN_REF: &str = "9506000.013435";
const LOT: &str = "NW2026-11";
const CASE: &str = "urn:epc:id:sscc:9506000.0000000042";

fn sgtin(s: &str) -> String {
    format!("urn:epc:id:sgtin:{GTIN_REF}.{s}")
}

fn sgln(prefix: &str) -> String {
    format!("urn:epc:id:sgln:{prefix}.00001.0")
}

fn pgln(prefix: &str) -> String {
    format!("urn:epc:id:pgln:{prefix}.00000")
}

const PREFIXES: [(Who, &str); 4] = [
    (Who::Manufacturer, "9506000"),
    (Who::Wholesaler, "4000001"),
    (Who::Pharmacy, "4012345"),
    (Who::Harbor, "4098765"),
];

fn prefix(w: Who) -> &'static str {
    PREFIXES
        .iter()
        .find(|(o, _)| *o == w)
        .map_or("", |(_, p)| p)
}

fn event(kind: &str, time: &str, fields: Value) -> Value {
    let mut e = json!({"type": kind, "eventTime": time, "eventTimeZoneOffset": "+01:00"});
    if let (Some(m), Value::Object(f)) = (e.as_object_mut(), fields) {
        m.extend(f);
    }
    e
}

fn document(events: Vec<Value>) -> Value {
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": "2026-11-20T08:00:00.000Z",
        "epcisBody": {"eventList": events},
    })
}

fn ship(from: Who, to: Who, time: &str) -> Value {
    event(
        "ObjectEvent",
        time,
        json!({
            "action": "OBSERVE", "bizStep": "shipping", "disposition": "in_transit",
            "epcList": [CASE], "readPoint": {"id": sgln(prefix(from))},
            "sourceList": [{"type": "owning_party", "source": pgln(prefix(from))}],
            "destinationList": [{"type": "owning_party", "destination": pgln(prefix(to))}],
        }),
    )
}

fn receive(at: Who, time: &str) -> Value {
    event(
        "ObjectEvent",
        time,
        json!({
            "action": "OBSERVE", "bizStep": "receiving", "disposition": "in_progress",
            "epcList": [CASE], "bizLocation": {"id": sgln(prefix(at))},
        }),
    )
}

fn capture(supply: &Supply, keys: &DemoKeys, w: Who, doc: Value) -> Result<()> {
    let k = keys.key(w);
    let actor = Actor {
        did: k.public().did(),
        organization: k.public(),
    };
    let job = json!({"captureID": format!("demo-{}", w.file()), "organization": k.public().did().to_string()});
    let done = supply
        .run(&actor, &doc, Behaviour::Rollback, job)
        .map_err(|e| anyhow::anyhow!("demo capture: {e}"))?;
    if done["success"] != true {
        bail!("demo capture refused: {}", done["errors"]);
    }
    Ok(())
}

/// Loads the demo supply chain (the organizations registered on the ledger already).
pub fn load(
    supply: &Arc<Supply>,
    service: &Service,
    root: &Path,
    operator: &SecretKey,
    endpoint: &str,
    alice_pid: &str,
) -> Result<()> {
    let keys = DemoKeys::read(&root.join("demo-keys"))?;
    let node = service.node().ledger().node_key();
    for (w, p) in PREFIXES {
        run(
            service,
            keys.key(w),
            Payload::RegisterNode {
                node,
                endpoint: endpoint.to_string(),
            },
        )?;
        run(
            service,
            operator,
            Payload::AssignCompanyPrefix {
                prefix: p.into(),
                organization: Some(keys.key(w).public()),
            },
        )?;
    }
    let serials = ["S1", "S2", "S3", "S4", "S5", "S6"];
    let m = prefix(Who::Manufacturer);
    capture(
        supply,
        &keys,
        Who::Manufacturer,
        document(vec![
            event(
                "ObjectEvent",
                "2026-11-20T09:00:00.000+01:00",
                json!({
                    "action": "ADD", "bizStep": "commissioning", "disposition": "active",
                    "epcList": serials.iter().map(|s| sgtin(s)).collect::<Vec<_>>(),
                    "readPoint": {"id": sgln(m)}, "bizLocation": {"id": sgln(m)},
                    "ilmd": {"cbvmda:lotNumber": LOT, "cbvmda:itemExpirationDate": "2028-06-30"},
                }),
            ),
            event(
                "AggregationEvent",
                "2026-11-20T10:00:00.000+01:00",
                json!({
                    "action": "ADD", "bizStep": "packing", "parentID": CASE,
                    "childEPCs": serials[..4].iter().map(|s| sgtin(s)).collect::<Vec<_>>(),
                    "bizLocation": {"id": sgln(m)},
                }),
            ),
            ship(
                Who::Manufacturer,
                Who::Wholesaler,
                "2026-11-21T08:00:00.000+01:00",
            ),
        ]),
    )?;
    capture(
        supply,
        &keys,
        Who::Wholesaler,
        document(vec![
            receive(Who::Wholesaler, "2026-11-22T09:00:00.000+01:00"),
            ship(
                Who::Wholesaler,
                Who::Pharmacy,
                "2026-11-24T07:30:00.000+01:00",
            ),
        ]),
    )?;
    let c = prefix(Who::Pharmacy);
    capture(
        supply,
        &keys,
        Who::Pharmacy,
        document(vec![
            receive(Who::Pharmacy, "2026-11-25T08:15:00.000+01:00"),
            event(
                "AggregationEvent",
                "2026-11-25T08:30:00.000+01:00",
                json!({
                    "action": "DELETE", "bizStep": "unpacking", "parentID": CASE,
                    "childEPCs": serials[..4].iter().map(|s| sgtin(s)).collect::<Vec<_>>(),
                    "bizLocation": {"id": sgln(c)},
                }),
            ),
            event(
                "ObjectEvent",
                "2026-11-28T16:05:00.000+01:00",
                json!({
                    "action": "OBSERVE", "bizStep": "dispensing", "disposition": "dispensed",
                    "epcList": [sgtin("S1")], "bizLocation": {"id": sgln(c)},
                }),
            ),
        ]),
    )?;
    // The dispense in Alice's record: she lets Corner Pharmacy treat her first.
    let purpose = Purpose::treatment();
    let consent = json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{alice_pid}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit",
            "actor": [{"role": {"text": "dispensing pharmacy"}, "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": keys.did(Who::Pharmacy)}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]},
    });
    service
        .write(
            &local_session(&keys, Who::Alice)?,
            &purpose,
            "Consent",
            None,
            None,
            consent,
        )
        .map_err(|e| anyhow::anyhow!("demo consent: {}", e.message))?;
    let dispense = json!({
        "resourceType": "MedicationDispense", "status": "completed",
        "identifier": [{"system": carechain_supply::recall::PACK_SYSTEM, "value": "https://id.gs1.org/01/09506000134352/21/S1"}],
        "medicationCodeableConcept": {"text": "Amoxicillin 500 mg capsules, 21"},
        "subject": {"reference": format!("Patient/{alice_pid}")},
        "whenHandedOver": "2026-11-28T16:05:00+01:00",
    });
    service
        .write(
            &local_session(&keys, Who::Pharmacy)?,
            &purpose,
            "MedicationDispense",
            None,
            None,
            dispense,
        )
        .map_err(|e| anyhow::anyhow!("demo dispense: {}", e.message))?;
    // Harbor Pharmacy scans the dispensed serial: a clone, flagged on the ledger.
    let harbor = Actor {
        did: keys.key(Who::Harbor).public().did(),
        organization: keys.key(Who::Harbor).public(),
    };
    let scan = supply
        .verify_pack(&harbor, "https://id.gs1.org/01/09506000134352/21/S1")
        .map_err(|e| anyhow::anyhow!("demo scan: {e}"))?;
    if scan["carechain"]["status"] != "already_dispensed" {
        bail!("the demo clone was not caught: {scan}");
    }
    // Northwind recalls the lot.
    capture(
        supply,
        &keys,
        Who::Manufacturer,
        document(vec![event(
            "ObjectEvent",
            "2026-12-01T09:00:00.000+01:00",
            json!({
                "action": "OBSERVE", "bizStep": "holding", "disposition": "recalled",
                "quantityList": [{"epcClass": format!("urn:epc:class:lgtin:{GTIN_REF}.{LOT}")}],
                "bizLocation": {"id": sgln(m)},
            }),
        )]),
    )
    .context("demo recall")?;
    // The chain follower tells Alice (a recall Flag in her record): wait for it, so the
    // portal opens with it.
    let alice = local_session(&keys, Who::Alice)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let flags = service
            .search(
                &alice,
                &purpose,
                "Flag",
                &[("subject".into(), format!("Patient/{alice_pid}"))],
                "",
            )
            .map_err(|e| anyhow::anyhow!("demo flag: {}", e.message))?;
        if flags["total"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("the demo recall did not reach Alice's record");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    out_line(&format!(
        "demo supply chain loaded: pack https://id.gs1.org/01/09506000134352/21/S1 from Northwind Pharma via Meridian Wholesale to Corner Pharmacy, dispensed to Alice, cloned at Harbor Pharmacy, lot {LOT} recalled"
    ));
    Ok(())
}
