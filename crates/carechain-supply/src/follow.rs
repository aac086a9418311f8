//! The chain follower: every node reads every block's supply batches and keeps what its
//! users are told from them. Products by lot (from commissioning, so a recall finds every
//! pack of its lot wherever it was captured); alerts by recipient: a suspected clone or
//! diversion to the product's manufacturer, its custodian and the organization that scanned
//! it; a recall to the manufacturer and to every organization holding packs of the lot; and,
//! for packs dispensed by an organization this node serves, the patients (see `recall`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use carechain_crypto::PublicKey;
use carechain_types::{ItemStatus, Outcome, Payload, SupplyStep};
use serde_json::{Value, json};

use crate::{Supply, SupplyError};

/// Starts the follower.
pub(crate) fn start(s: &Arc<Supply>) {
    let weak = Arc::downgrade(s);
    let _ = std::thread::Builder::new()
        .name("supply-follow".into())
        .spawn(move || {
            loop {
                let Some(s) = weak.upgrade() else { return };
                let node = s.service.node().clone();
                if node.is_failed() {
                    return;
                }
                let from = match s.store.followed() {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(error = %e, "the supply follower stopped");
                        return;
                    }
                };
                drop(s);
                let head = node.wait_past(from, Duration::from_secs(2));
                let Some(s) = weak.upgrade() else { return };
                for h in from + 1..=head {
                    if let Err(e) = s.follow_block(h) {
                        tracing::error!(error = %e, height = h, "the supply follower stopped");
                        return;
                    }
                }
            }
        });
}

fn alert(kind: &str, height: u64, tx: &str, body: Value) -> Value {
    let mut a = json!({"kind": kind, "height": height, "tx": tx, "time": crate::capture::iso(carechain_node::now_ms() as i64)});
    if let (Some(m), Value::Object(b)) = (a.as_object_mut(), body) {
        m.extend(b);
    }
    a
}

impl Supply {
    /// Reads block `h`.
    pub(crate) fn follow_block(&self, h: u64) -> Result<(), SupplyError> {
        let snap = self.snapshot()?;
        let store_err =
            |e| SupplyError::Service(carechain_service::ServiceError::internal("storage", e));
        let (Some(block), Some(receipts)) = (
            snap.block(h).map_err(store_err)?,
            snap.receipts(h).map_err(store_err)?,
        ) else {
            return Ok(());
        };
        let mut lots = Vec::new();
        let mut block_lots: BTreeMap<(u64, String), Vec<[u8; 32]>> = BTreeMap::new();
        let mut alerts: Vec<(String, Value)> = Vec::new();
        for (tx, receipt) in block.txs.iter().zip(&receipts) {
            let Payload::Supply {
                organization,
                events,
                ..
            } = &tx.body.payload
            else {
                continue;
            };
            let skipped = carechain_state::skipped_events(receipt);
            let txh = tx.hash().to_hex();
            let Outcome::Applied { log_index } = receipt.outcome else {
                continue;
            };
            for (i, ev) in events.iter().enumerate() {
                if skipped.iter().any(|(k, _)| *k as usize == i) {
                    continue;
                }
                // An event captured here whose capture stopped before storing it.
                if let Some(mut p) = self.store.pending(&ev.hash.0)? {
                    p.stored.tx = txh.clone();
                    p.stored.index = i as u32;
                    p.stored.log_index = log_index;
                    self.store.put_events(vec![p])?;
                }
                match &ev.step {
                    SupplyStep::Commission {
                        gtin, lot, items, ..
                    } => {
                        for id in items {
                            lots.push((*gtin, lot.clone(), id.0));
                            block_lots
                                .entry((*gtin, lot.clone()))
                                .or_default()
                                .push(id.0);
                        }
                    }
                    SupplyStep::Suspect { item, reason } => {
                        let Some(it) = carechain_state::supply_item(&snap, item)? else {
                            continue;
                        };
                        let custodian = carechain_state::supply_root(&snap, item)?
                            .map_or(it.custodian, |(_, r)| r.custodian);
                        let body = json!({
                            "reason": reason.as_str(), "item": item.to_hex(),
                            "pack": self.pack_of(&item.0)?,
                            "gtin": it.gtin.map(|g| format!("{g:014}")), "lot": it.lot,
                            "reporter": organization.did().to_string(),
                            "commissioner": it.commissioner.did().to_string(),
                            "custodian": custodian.did().to_string(),
                        });
                        let mut to: Vec<PublicKey> =
                            vec![it.commissioner, custodian, *organization];
                        to.sort();
                        to.dedup();
                        for who in to {
                            alerts.push((
                                who.did().to_string(),
                                alert("suspect", h, &txh, body.clone()),
                            ));
                        }
                    }
                    SupplyStep::Recall { gtin, lot } => {
                        let mut items = self.store.lot(*gtin, lot)?;
                        items.extend(block_lots.get(&(*gtin, lot.clone())).into_iter().flatten());
                        items.sort();
                        items.dedup();
                        let mut held: BTreeMap<PublicKey, usize> = BTreeMap::new();
                        let mut dispensed: BTreeMap<PublicKey, Vec<[u8; 32]>> = BTreeMap::new();
                        for id in &items {
                            let Some((_, root)) =
                                carechain_state::supply_root(&snap, &carechain_crypto::Hash(*id))?
                            else {
                                continue;
                            };
                            match root.status {
                                ItemStatus::Active | ItemStatus::InTransit { .. } => {
                                    *held.entry(root.custodian).or_default() += 1
                                }
                                ItemStatus::Dispensed { .. } => {
                                    dispensed.entry(root.custodian).or_default().push(*id)
                                }
                                ItemStatus::Decommissioned { .. } => {}
                            }
                        }
                        let g = format!("{gtin:014}");
                        let by = organization.did().to_string();
                        alerts.push((
                            by.clone(),
                            alert(
                                "recall",
                                h,
                                &txh,
                                json!({
                                    "gtin": g, "lot": lot, "by": by, "packs": items.len(),
                                    "holders": held.len(), "held": held.values().sum::<usize>(),
                                    "dispensed": dispensed.values().map(Vec::len).sum::<usize>(),
                                }),
                            ),
                        ));
                        for (org, n) in &held {
                            if org != organization {
                                alerts.push((
                                    org.did().to_string(),
                                    alert(
                                        "recall",
                                        h,
                                        &txh,
                                        json!({
                                            "gtin": g, "lot": lot, "by": by, "packs_held": n,
                                        }),
                                    ),
                                ));
                            }
                        }
                        for (pharmacy, packs) in dispensed {
                            if self.captures_for(&pharmacy)? {
                                alerts.extend(
                                    self.reach_patients(&pharmacy, &packs, *gtin, lot, h, &txh),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        self.store.followed_block(h, &lots, &alerts)
    }

    /// The canonical Digital Link of the product with ledger id `id`, if an event this
    /// repository holds names it.
    pub fn pack_of(&self, id: &[u8; 32]) -> Result<Option<String>, SupplyError> {
        use crate::store::role;
        for seq in self
            .store
            .by_identifier(id, role::EPC | role::PARENT, 0, 4)?
        {
            if let Some(s) = self.store.event(seq)?
                && let Ok(e) = carechain_epcis::Event::parse(&s.event)
                && let Some(p) = e.all_ids().find(|p| crate::custody::item_id(p).0 == *id)
            {
                return Ok(Some(p.to_string()));
            }
        }
        Ok(None)
    }

    /// The newest alerts of the actor's organization.
    pub fn alerts(&self, actor: &crate::Actor, limit: usize) -> Result<Vec<Value>, SupplyError> {
        self.store
            .alerts(&actor.organization.did().to_string(), limit)
    }
}
