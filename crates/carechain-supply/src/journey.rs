//! A product's journey: what the ledger holds of it (commissioning, lot, expiry, custody
//! history, where it is now, the containers it travels in, suspicions, a recall of its lot)
//! and the events of it this repository holds that the caller may see, oldest first.

use carechain_epcis::parse_link;
use serde_json::{Value, json};

use crate::capture::iso;
use crate::custody::item_id;
use crate::query::Query;
use crate::store::role;
use crate::{Actor, Supply, SupplyError};

impl Supply {
    /// The journey of the product `uri` (an EPC URN or Digital Link).
    pub fn journey(&self, actor: &Actor, uri: &str) -> Result<Value, SupplyError> {
        let canonical = carechain_epcis::normalise(uri).ok_or_else(|| {
            SupplyError::bad(format!("{uri} is not a valid EPC URN or GS1 Digital Link"))
        })?;
        let id = item_id(&canonical);
        let snap = self.snapshot()?;
        let item = carechain_state::supply_item(&snap, &id)?;
        let mut ledger = Value::Null;
        if let Some(it) = &item {
            let mut containers = Vec::new();
            let mut up = it.parent;
            while let Some(p) = up {
                containers.push(json!({"item": p.to_hex(), "pack": self.pack_of(&p.0)?}));
                up = carechain_state::supply_item(&snap, &p)?.and_then(|i| i.parent);
            }
            let (_, root) = carechain_state::supply_root(&snap, &id)?.unwrap_or((id, it.clone()));
            let recall = match it.gtin {
                Some(g) => carechain_state::supply_recall(&snap, g, &it.lot)?,
                None => None,
            };
            ledger = json!({
                "gtin": it.gtin.map(|g| format!("{g:014}")),
                "lot": it.lot,
                "expiry": it.expiry,
                "commissioner": it.commissioner.did().to_string(),
                "custodian": root.custodian.did().to_string(),
                "state": root.status.as_str(),
                "containers": containers,
                "history": timeline(&snap, &it.history, 0)?.iter().map(|s| {
                    let c = &s.custody;
                    json!({
                        "step": c.step, "organization": c.organization.did().to_string(),
                        "height": c.height, "event_hash": format!("ni:///sha-256;{}?ver=CBV2.0", c.event.to_hex()),
                        "time": iso(c.time_ms),
                        "container": s.via.map(|v| v.to_hex()),
                    })
                }).collect::<Vec<_>>(),
                "suspicions": it.suspicions.iter().map(|s| json!({
                    "reason": s.reason.as_str(), "reporter": s.reporter.did().to_string(), "height": s.height,
                })).collect::<Vec<_>>(),
                "recall": recall.map(|r| json!({"by": r.by.did().to_string(), "height": r.height})),
            });
        }
        let q = Query {
            matches: vec![(canonical.clone(), role::EPC | role::PARENT | role::IO)],
            ..Query::default()
        };
        let page = self.query(actor, &q, 1_000, None, "ProductJourney")?;
        let mut events: Vec<Value> =
            page.document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        events.sort_by_key(|e| {
            e["eventTime"]
                .as_str()
                .and_then(carechain_epcis::event::time_ms)
                .unwrap_or(0)
        });
        let dl = parse_link(&canonical).ok();
        Ok(json!({
            "pack": canonical,
            "serial": dl.as_ref().and_then(|l| l.qualifier("21")).map(str::to_string),
            "ledger": ledger,
            "events": events,
            "@context": page.document["@context"],
        }))
    }
}

/// One step of a product's journey: its own, or its container's while it was inside.
#[derive(Clone, Debug)]
pub struct Step {
    /// The custody step.
    pub custody: carechain_state::Custody,
    /// The container it happened to (`None`: the product itself).
    pub via: Option<carechain_crypto::Hash>,
}

/// A product's journey from ledger state: its own custody history with, between each packing
/// and unpacking, what happened to its container (and to that container's container).
pub fn timeline<V: carechain_state::StateView + ?Sized>(
    view: &V,
    history: &[carechain_state::Custody],
    depth: usize,
) -> Result<Vec<Step>, carechain_state::ViewError> {
    let mut out = Vec::new();
    for (i, c) in history.iter().enumerate() {
        out.push(Step {
            custody: c.clone(),
            via: None,
        });
        let (Some(container), "pack", true) = (
            c.container,
            c.step.as_str(),
            depth < carechain_types::MAX_NESTING,
        ) else {
            continue;
        };
        // Until it came out again (its next step names the same container) or now.
        let until = history[i + 1..]
            .iter()
            .find(|n| n.step == "unpack" && n.container == Some(container))
            .map(|n| (n.height, n.time_ms));
        let Some(box_) = carechain_state::supply_item(view, &container)? else {
            continue;
        };
        let inner: Vec<carechain_state::Custody> = box_
            .history
            .iter()
            .filter(|b| b.event != c.event && (b.height, b.time_ms) >= (c.height, c.time_ms))
            .filter(|b| until.is_none_or(|u| (b.height, b.time_ms) <= u))
            .cloned()
            .collect();
        for s in timeline(view, &inner, depth + 1)? {
            out.push(Step {
                via: s.via.or(Some(container)),
                custody: s.custody,
            });
        }
    }
    Ok(out)
}
