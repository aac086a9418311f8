//! What an EPCIS event does to custody, in the ledger's terms: the CBV business step and
//! action decide the step (commissioning, packing, shipping, receiving, dispensing,
//! decommissioning, a recall by disposition `recalled`); products are named on the ledger by
//! the hash of their canonical Digital Link.

use carechain_crypto::{Hash, Namespace, PublicKey, sha256_parts};
use carechain_epcis::{Action, Event, EventType, PrimaryKey, parse_link};
use carechain_types::{MAX_LOT, SupplyEvent, SupplyStep};

/// The ledger id of a product or logistic unit, by its canonical Digital Link.
pub fn item_id(canonical: &str) -> Hash {
    sha256_parts(&[Namespace::SupplyItem.as_bytes(), canonical.as_bytes()])
}

/// A serialized product: its GTIN (as a number) and serial.
pub fn sgtin(canonical: &str) -> Option<(u64, String)> {
    let l = parse_link(canonical).ok()?;
    if l.key != PrimaryKey::Gtin {
        return None;
    }
    Some((l.value.parse().ok()?, l.qualifier("21")?.to_string()))
}

/// A GTIN's lot (an LGTIN class): GTIN and lot.
pub fn lgtin(canonical: &str) -> Option<(u64, String)> {
    let l = parse_link(canonical).ok()?;
    if l.key != PrimaryKey::Gtin || l.qualifier("21").is_some() {
        return None;
    }
    Some((l.value.parse().ok()?, l.qualifier("10")?.to_string()))
}

/// The GLN of a location identifier (an SGLN), if it is one.
pub fn gln(canonical: &str) -> Option<u64> {
    let l = parse_link(canonical).ok()?;
    (l.key == PrimaryKey::Gln || l.key == PrimaryKey::Party)
        .then(|| l.value.parse().ok())
        .flatten()
}

/// A product or logistic unit custody can follow: an SGTIN or an SSCC.
fn trackable(canonical: &str) -> bool {
    sgtin(canonical).is_some() || parse_link(canonical).is_ok_and(|l| l.key == PrimaryKey::Sscc)
}

/// Resolves an organization from a party or location GLN (its company prefix's owner).
pub trait Directory {
    /// The organization owning the company prefix of `gln`.
    fn owner_of_gln(&self, gln: u64) -> Option<PublicKey>;
}

fn ids(epcs: &[String]) -> Result<Vec<Hash>, String> {
    if epcs.is_empty() {
        return Err("the event names no products".into());
    }
    epcs.iter()
        .map(|e| {
            if trackable(e) {
                Ok(item_id(e))
            } else {
                Err(format!(
                    "{e} is not a serialized product (SGTIN) or logistic unit (SSCC)"
                ))
            }
        })
        .collect()
}

/// The ledger's view of `event` with hash `hash`; an error says why the event cannot be
/// captured as it is.
pub fn supply_event(event: &Event, hash: Hash, dir: &dyn Directory) -> Result<SupplyEvent, String> {
    let step = step_of(event, dir)?;
    let location = event
        .biz_location
        .as_deref()
        .or(event.read_point.as_deref())
        .and_then(gln);
    Ok(SupplyEvent {
        hash,
        time_ms: event.time_ms,
        location,
        step,
    })
}

fn step_of(e: &Event, dir: &dyn Directory) -> Result<SupplyStep, String> {
    let step = e.biz_step.as_deref().unwrap_or("");
    if e.disposition.as_deref() == Some("recalled") {
        let lots: Vec<(u64, String)> = e
            .quantities
            .iter()
            .filter_map(|q| lgtin(&q.class))
            .collect();
        return match lots.as_slice() {
            [(gtin, lot)] => Ok(SupplyStep::Recall {
                gtin: *gtin,
                lot: lot.clone(),
            }),
            _ => Err("a recall names exactly one lot, as a quantity of its LGTIN class".into()),
        };
    }
    match (e.kind, e.action, step) {
        (EventType::Object, Some(Action::Add), "commissioning") => {
            let mut gtins = e.epcs.iter().map(|p| sgtin(p).map(|(g, _)| g));
            let first = gtins.next().flatten().ok_or("commissioning names SGTINs")?;
            if !gtins.all(|g| g == Some(first)) {
                return Err("one commissioning event is of one GTIN".into());
            }
            let lot = e
                .lot
                .clone()
                .ok_or("commissioning needs the lot (ilmd cbvmda:lotNumber)")?;
            if lot.is_empty() || lot.len() > MAX_LOT {
                return Err(format!("a lot is 1 to {MAX_LOT} characters"));
            }
            Ok(SupplyStep::Commission {
                gtin: first,
                lot,
                expiry: e.expiry,
                items: ids(&e.epcs)?,
            })
        }
        (EventType::Aggregation, Some(Action::Add), _) => Ok(SupplyStep::Pack {
            parent: item_id(e.parent.as_deref().ok_or("packing names its parentID")?),
            children: ids(&e.epcs)?,
        }),
        (EventType::Aggregation, Some(Action::Delete), _) => Ok(SupplyStep::Unpack {
            parent: item_id(e.parent.as_deref().ok_or("unpacking names its parentID")?),
            children: ids(&e.epcs)?,
        }),
        (EventType::Object, _, "shipping") => {
            let to = e
                .destinations
                .iter()
                .find(|d| d.kind == "owning_party")
                .or_else(|| e.destinations.iter().find(|d| d.kind == "possessing_party"))
                .and_then(|d| gln(&d.id))
                .and_then(|g| dir.owner_of_gln(g));
            Ok(SupplyStep::Ship {
                to,
                items: ids(&e.epcs)?,
            })
        }
        (EventType::Object, _, "receiving") => Ok(SupplyStep::Receive {
            items: ids(&e.epcs)?,
        }),
        (EventType::Object, _, "dispensing") => Ok(SupplyStep::Dispense {
            items: ids(&e.epcs)?,
        }),
        (EventType::Object, Some(Action::Delete), _)
        | (EventType::Object, _, "decommissioning" | "destroying") => {
            Ok(SupplyStep::Decommission {
                items: ids(&e.epcs)?,
            })
        }
        _ => Ok(SupplyStep::Observe),
    }
}
