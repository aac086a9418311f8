//! Applying a batch of supply events: each event checked against state, then written.

use borsh::BorshDeserialize;
use carechain_crypto::PublicKey;
use carechain_types::{
    Account, Event, ItemId, ItemStatus, MAX_EVENTS, MAX_LOT, MAX_NESTING, MAX_SUPPLY_EVENTS,
    MAX_SUPPLY_ITEMS, RejectReason, Role, SupplyEvent, SupplyReject, SupplyStep, encode,
};

use super::{
    Custody, Item, MAX_HISTORY, MAX_SUSPICIONS, Recall, Suspicion, gln_owner, gtin_owner, item_key,
    read_item, recall_key, root,
};
use crate::ViewError;
use crate::exec::{Lookup, Writer, read_identity};
use crate::network::org_node_key;

/// What one event will write, computed before anything is.
type Writes = Vec<(ItemId, Item)>;

struct Batch<'a> {
    org: PublicKey,
    height: u64,
    event: &'a SupplyEvent,
}

impl Batch<'_> {
    fn custody(&self, step: &str) -> Custody {
        Custody {
            step: step.into(),
            organization: self.org,
            height: self.height,
            event: self.event.hash,
            time_ms: self.event.time_ms,
            container: None,
        }
    }

    fn custody_in(&self, step: &str, container: ItemId) -> Custody {
        Custody {
            container: Some(container),
            ..self.custody(step)
        }
    }
}

fn push_history(item: &mut Item, c: Custody) {
    if item.history.len() >= MAX_HISTORY {
        item.history.remove(0);
    }
    item.history.push(c);
}

fn distinct(items: &[ItemId]) -> bool {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.windows(2).all(|w| w[0] != w[1])
}

type Step = Result<Result<Writes, SupplyReject>, ViewError>;

/// Items that must be unpacked and in the organization's custody, with status `want`.
fn held(o: &dyn Lookup, b: &Batch<'_>, items: &[ItemId], step: &str) -> Step {
    let mut out = Vec::with_capacity(items.len());
    for id in items {
        let Some(mut item) = read_item(o, id)? else {
            return Ok(Err(SupplyReject::UnknownItem));
        };
        if item.parent.is_some() {
            return Ok(Err(SupplyReject::Packed));
        }
        match item.status {
            ItemStatus::Dispensed { .. } | ItemStatus::Decommissioned { .. } => {
                return Ok(Err(SupplyReject::Inactive));
            }
            ItemStatus::InTransit { .. } if step != "decommission" => {
                return Ok(Err(SupplyReject::NotCustodian));
            }
            _ => {}
        }
        if item.custodian != b.org {
            return Ok(Err(SupplyReject::NotCustodian));
        }
        push_history(&mut item, b.custody(step));
        out.push((*id, item));
    }
    Ok(Ok(out))
}

fn step_writes(o: &dyn Lookup, b: &Batch<'_>, step: &SupplyStep) -> Step {
    let items_ok =
        |items: &[ItemId]| !items.is_empty() && items.len() <= MAX_SUPPLY_ITEMS && distinct(items);
    Ok(Ok(match step {
        SupplyStep::Observe | SupplyStep::Recall { .. } | SupplyStep::Suspect { .. } => vec![],
        SupplyStep::Commission {
            gtin,
            lot,
            expiry,
            items,
        } => {
            if !items_ok(items) || lot.len() > MAX_LOT || *gtin >= 100_000_000_000_000 {
                return Ok(Err(SupplyReject::Malformed));
            }
            if gtin_owner(o, *gtin)? != Some(b.org) {
                return Ok(Err(SupplyReject::NotGtinOwner));
            }
            let mut out = Vec::with_capacity(items.len());
            for id in items {
                if read_item(o, id)?.is_some() {
                    return Ok(Err(SupplyReject::AlreadyCommissioned));
                }
                out.push((
                    *id,
                    Item {
                        gtin: Some(*gtin),
                        lot: lot.clone(),
                        expiry: *expiry,
                        commissioner: b.org,
                        custodian: b.org,
                        status: ItemStatus::Active,
                        parent: None,
                        levels: 0,
                        history: vec![b.custody("commission")],
                        suspicions: vec![],
                    },
                ));
            }
            out
        }
        SupplyStep::Pack { parent, children } => {
            if !items_ok(children) || children.contains(parent) {
                return Ok(Err(SupplyReject::Malformed));
            }
            return pack(o, b, parent, children);
        }
        SupplyStep::Unpack { parent, children } => {
            if !items_ok(children) {
                return Ok(Err(SupplyReject::Malformed));
            }
            let Some((_, top)) = root(o, parent)? else {
                return Ok(Err(SupplyReject::UnknownItem));
            };
            if top.custodian != b.org || top.status != ItemStatus::Active {
                return Ok(Err(SupplyReject::NotCustodian));
            }
            let mut out = Vec::with_capacity(children.len());
            for id in children {
                let Some(mut child) = read_item(o, id)? else {
                    return Ok(Err(SupplyReject::UnknownItem));
                };
                if child.parent != Some(*parent) {
                    return Ok(Err(SupplyReject::NotInContainer));
                }
                child.parent = None;
                child.custodian = top.custodian;
                child.status = top.status;
                push_history(&mut child, b.custody_in("unpack", *parent));
                out.push((*id, child));
            }
            out
        }
        SupplyStep::Ship { to, items } => {
            if !items_ok(items) {
                return Ok(Err(SupplyReject::Malformed));
            }
            let mut out = match held(o, b, items, "ship")? {
                Ok(w) => w,
                Err(e) => return Ok(Err(e)),
            };
            for (_, item) in &mut out {
                item.status = ItemStatus::InTransit { to: *to };
            }
            out
        }
        SupplyStep::Receive { items } => {
            if !items_ok(items) {
                return Ok(Err(SupplyReject::Malformed));
            }
            let mut out = Vec::with_capacity(items.len());
            for id in items {
                let Some(mut item) = read_item(o, id)? else {
                    return Ok(Err(SupplyReject::UnknownItem));
                };
                match item.status {
                    ItemStatus::InTransit { to } if to.is_none_or(|t| t == b.org) => {}
                    _ => return Ok(Err(SupplyReject::NotInTransit)),
                }
                item.custodian = b.org;
                item.status = ItemStatus::Active;
                push_history(&mut item, b.custody("receive"));
                out.push((*id, item));
            }
            out
        }
        SupplyStep::Dispense { items } | SupplyStep::Decommission { items } => {
            if !items_ok(items) {
                return Ok(Err(SupplyReject::Malformed));
            }
            let (name, status) = match step {
                SupplyStep::Dispense { .. } => {
                    ("dispense", ItemStatus::Dispensed { height: b.height })
                }
                _ => (
                    "decommission",
                    ItemStatus::Decommissioned { height: b.height },
                ),
            };
            let mut out = match held(o, b, items, name)? {
                Ok(w) => w,
                Err(e) => return Ok(Err(e)),
            };
            for (_, item) in &mut out {
                item.status = status;
            }
            out
        }
    }))
}

fn pack(o: &dyn Lookup, b: &Batch<'_>, parent: &ItemId, children: &[ItemId]) -> Step {
    // The container: new (created in the packer's custody) or held by the packer.
    let (mut container, depth) = match read_item(o, parent)? {
        None => (
            Item {
                gtin: None,
                lot: String::new(),
                expiry: None,
                commissioner: b.org,
                custodian: b.org,
                status: ItemStatus::Active,
                parent: None,
                levels: 0,
                history: vec![b.custody("pack")],
                suspicions: vec![],
            },
            0usize,
        ),
        Some(existing) => {
            let Some((_, top)) = root(o, parent)? else {
                return Ok(Err(SupplyReject::UnknownItem));
            };
            if top.custodian != b.org || top.status != ItemStatus::Active {
                return Ok(Err(SupplyReject::NotCustodian));
            }
            // How deep the container sits, and whether a child is one of its ancestors.
            let mut depth = 0;
            let mut up = existing.parent;
            while let Some(p) = up {
                if children.contains(&p) {
                    return Ok(Err(SupplyReject::BadNesting));
                }
                depth += 1;
                up = read_item(o, &p)?.and_then(|i| i.parent);
            }
            (existing, depth)
        }
    };
    let mut out = Vec::with_capacity(children.len() + 1);
    for id in children {
        let Some(mut child) = read_item(o, id)? else {
            return Ok(Err(SupplyReject::UnknownItem));
        };
        if child.parent.is_some() {
            return Ok(Err(SupplyReject::Packed));
        }
        if child.custodian != b.org || child.status != ItemStatus::Active {
            return Ok(Err(SupplyReject::NotCustodian));
        }
        if depth + 1 + usize::from(child.levels) > MAX_NESTING {
            return Ok(Err(SupplyReject::BadNesting));
        }
        container.levels = container.levels.max(child.levels + 1);
        child.parent = Some(*parent);
        push_history(&mut child, b.custody_in("pack", *parent));
        out.push((*id, child));
    }
    if container.history.last().map(|c| c.event) != Some(b.event.hash) {
        push_history(&mut container, b.custody("pack"));
    }
    out.push((*parent, container));
    Ok(Ok(out))
}

/// One event: checked, then written; `Err` leaves state as it was.
fn apply_event(
    o: &mut dyn Writer,
    b: &Batch<'_>,
    events: &mut Vec<Event>,
) -> Result<Result<(), SupplyReject>, ViewError> {
    if let Some(gln) = b.event.location
        && gln_owner(o, gln)? != Some(b.org)
    {
        return Ok(Err(SupplyReject::NotLocationOwner));
    }
    let writes = match step_writes(o, b, &b.event.step)? {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    let mut note = |kind: &str, attributes: Vec<(String, String)>| {
        if events.len() < MAX_EVENTS {
            events.push(Event {
                emitter: Account::Identity(b.org),
                kind: kind.into(),
                attributes,
            });
        }
    };
    match &b.event.step {
        SupplyStep::Recall { gtin, lot } => {
            if lot.is_empty() || lot.len() > MAX_LOT {
                return Ok(Err(SupplyReject::Malformed));
            }
            if gtin_owner(o, *gtin)? != Some(b.org) {
                return Ok(Err(SupplyReject::NotGtinOwner));
            }
            let r = Recall {
                by: b.org,
                height: b.height,
                event: b.event.hash,
            };
            o.put(recall_key(*gtin, lot), Some(encode(&r)));
            note(
                "supply.recall",
                vec![
                    ("gtin".into(), format!("{gtin:014}")),
                    ("lot".into(), lot.clone()),
                ],
            );
        }
        SupplyStep::Suspect { item, reason } => {
            let Some(mut it) = read_item(o, item)? else {
                return Ok(Err(SupplyReject::UnknownItem));
            };
            let custodian = root(o, item)?.map_or(it.custodian, |(_, r)| r.custodian);
            if it.suspicions.len() < MAX_SUSPICIONS {
                it.suspicions.push(Suspicion {
                    reporter: b.org,
                    reason: *reason,
                    height: b.height,
                });
            }
            note(
                "supply.suspect",
                vec![
                    ("item".into(), item.to_hex()),
                    ("reason".into(), reason.as_str().into()),
                    ("commissioner".into(), it.commissioner.did().to_string()),
                    ("custodian".into(), custodian.did().to_string()),
                ],
            );
            o.put(item_key(item), Some(encode(&it)));
        }
        _ => {}
    }
    for (id, item) in writes {
        o.put(item_key(&id), Some(encode(&item)));
    }
    Ok(Ok(()))
}

/// The signer may capture for `org`: it is the organization, or the node it registered.
fn may_capture(o: &dyn Lookup, signer: &PublicKey, org: &PublicKey) -> Result<bool, ViewError> {
    match read_identity(o, org)? {
        Some(i) if i.active && i.role == Role::Organization => {}
        _ => return Ok(false),
    }
    if signer == org {
        return Ok(true);
    }
    Ok(o.lookup(&org_node_key(org))?
        .and_then(|b| PublicKey::try_from_slice(&b).ok())
        .is_some_and(|n| n == *signer))
}

/// What a batch did: the indexes of the events it skipped and why (the receipt's data).
pub type Skipped = Vec<(u32, SupplyReject)>;

/// The events a supply batch's receipt says were skipped (none when its data is empty).
pub fn skipped_events(receipt: &carechain_types::Receipt) -> Skipped {
    if receipt.data.is_empty() {
        Vec::new()
    } else {
        borsh::from_slice(&receipt.data).unwrap_or_default()
    }
}

/// Applies a batch of supply events.
pub(crate) fn apply_batch(
    o: &mut dyn Writer,
    height: u64,
    signer: &PublicKey,
    org: &PublicKey,
    events: &[SupplyEvent],
    atomic: bool,
    emitted: &mut Vec<Event>,
) -> Result<Result<Skipped, RejectReason>, ViewError> {
    if events.is_empty() || events.len() > MAX_SUPPLY_EVENTS {
        return Ok(Err(RejectReason::Malformed));
    }
    if !may_capture(o, signer, org)? {
        return Ok(Err(RejectReason::SupplyEvent {
            index: 0,
            reason: SupplyReject::NotCapturer,
        }));
    }
    let mut skipped = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let b = Batch {
            org: *org,
            height,
            event,
        };
        if let Err(reason) = apply_event(o, &b, emitted)? {
            if atomic {
                return Ok(Err(RejectReason::SupplyEvent {
                    index: i as u32,
                    reason,
                }));
            }
            skipped.push((i as u32, reason));
        }
    }
    Ok(Ok(skipped))
}
