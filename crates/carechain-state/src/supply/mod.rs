//! The drug supply chain as state: GS1 company prefixes and their owners, every serialized
//! product's custody (commissioned by its GTIN's owner, packed, shipped, received, dispensed,
//! decommissioned) with its custody history, recalled lots, and suspicions reported by the
//! organizations that scanned a product. A packed product travels with its outermost
//! container: its custody is the root container's. Every check is made before anything is
//! written, so an event that fails leaves state as it was.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, PublicKey};
use carechain_types::{ItemId, ItemStatus, MAX_NESTING, RejectReason, Role, SuspectReason, encode};

use crate::exec::{Lookup, Writer, read_identity};
use crate::{StateView, ViewError};

mod apply;

pub(crate) use apply::apply_batch;
pub use apply::{Skipped, skipped_events};

/// The most custody entries an item keeps (the oldest are dropped beyond).
pub const MAX_HISTORY: usize = 32;
/// The most suspicions an item keeps.
pub const MAX_SUSPICIONS: usize = 16;

/// `gcp/<digits>` → the owning organization's key.
pub fn prefix_key(prefix: &str) -> Vec<u8> {
    [b"gcp/".as_slice(), prefix.as_bytes()].concat()
}

/// `item/<id>` → [`Item`].
pub fn item_key(id: &ItemId) -> Vec<u8> {
    [b"item/".as_slice(), &id.0].concat()
}

/// `recall/<gtin, 8 bytes big-endian><lot>` → [`Recall`].
pub fn recall_key(gtin: u64, lot: &str) -> Vec<u8> {
    [b"recall/".as_slice(), &gtin.to_be_bytes(), lot.as_bytes()].concat()
}

/// One step of a product's custody history.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Custody {
    /// What happened (`commission`, `pack`, `unpack`, `ship`, `receive`, `dispense`,
    /// `decommission`).
    pub step: String,
    /// The organization that captured it.
    pub organization: PublicKey,
    /// The ledger height.
    pub height: u64,
    /// The event's hash.
    pub event: Hash,
    /// When it happened, as the event says (ms since the Unix epoch).
    pub time_ms: i64,
    /// The container it was packed into or taken out of (`pack`, `unpack`).
    pub container: Option<ItemId>,
}

/// A suspicion reported against a product.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Suspicion {
    /// Who reported it.
    pub reporter: PublicKey,
    /// Why.
    pub reason: SuspectReason,
    /// The ledger height.
    pub height: u64,
}

/// A serialized product or a logistic unit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Item {
    /// Its trade item (`None`: a container created by packing).
    pub gtin: Option<u64>,
    /// Its lot.
    pub lot: String,
    /// Its expiry date (YYYYMMDD).
    pub expiry: Option<u32>,
    /// Who commissioned (or first packed) it.
    pub commissioner: PublicKey,
    /// Who holds it (or shipped it, while in transit); a packed item's custody is its root
    /// container's.
    pub custodian: PublicKey,
    /// Where it is in its life (a packed item's is its root container's).
    pub status: ItemStatus,
    /// The container it is packed in.
    pub parent: Option<ItemId>,
    /// How many levels of containers it holds (0: none).
    pub levels: u8,
    /// Its custody history, oldest first (at most [`MAX_HISTORY`], the newest kept).
    pub history: Vec<Custody>,
    /// Suspicions reported against it (at most [`MAX_SUSPICIONS`]).
    pub suspicions: Vec<Suspicion>,
}

/// A recalled lot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Recall {
    /// Who recalled it (the GTIN's owner).
    pub by: PublicKey,
    /// The ledger height.
    pub height: u64,
    /// The recall event's hash.
    pub event: Hash,
}

fn corrupt(what: &str) -> ViewError {
    ViewError::Corrupt(what.into())
}

fn read_item(o: &dyn Lookup, id: &ItemId) -> Result<Option<Item>, ViewError> {
    o.lookup(&item_key(id))?
        .map(|b| Item::try_from_slice(&b).map_err(|_| corrupt("item")))
        .transpose()
}

fn read_prefix(o: &dyn Lookup, prefix: &str) -> Result<Option<PublicKey>, ViewError> {
    o.lookup(&prefix_key(prefix))?
        .map(|b| PublicKey::try_from_slice(&b).map_err(|_| corrupt("gcp")))
        .transpose()
}

/// The owner of the company prefix `digits` starts with (6 to 12 digits after `skip`).
fn owner_of(o: &dyn Lookup, digits: &str, skip: usize) -> Result<Option<PublicKey>, ViewError> {
    for len in 6..=12 {
        if let Some(p) = digits.get(skip..skip + len)
            && let Some(owner) = read_prefix(o, p)?
        {
            return Ok(Some(owner));
        }
    }
    Ok(None)
}

/// The owner of a GTIN-14's company prefix (after its indicator digit).
fn gtin_owner(o: &dyn Lookup, gtin: u64) -> Result<Option<PublicKey>, ViewError> {
    owner_of(o, &format!("{gtin:014}"), 1)
}

/// The owner of a GLN's company prefix.
fn gln_owner(o: &dyn Lookup, gln: u64) -> Result<Option<PublicKey>, ViewError> {
    owner_of(o, &format!("{gln:013}"), 0)
}

// ---- queries -------------------------------------------------------------------------------

/// The product `id` in `view`.
pub fn supply_item<V: StateView + ?Sized>(
    view: &V,
    id: &ItemId,
) -> Result<Option<Item>, ViewError> {
    read_item(&crate::exec::ViewLookup(view), id)
}

/// The root container of `id` (itself when unpacked) and that root's record: where custody
/// and status are read.
pub fn supply_root<V: StateView + ?Sized>(
    view: &V,
    id: &ItemId,
) -> Result<Option<(ItemId, Item)>, ViewError> {
    root(&crate::exec::ViewLookup(view), id)
}

/// The recall of `gtin`'s `lot`, if any.
pub fn supply_recall<V: StateView + ?Sized>(
    view: &V,
    gtin: u64,
    lot: &str,
) -> Result<Option<Recall>, ViewError> {
    view.get(&recall_key(gtin, lot))?
        .map(|b| Recall::try_from_slice(&b).map_err(|_| corrupt("recall")))
        .transpose()
}

/// The owner of company prefix `prefix`.
pub fn company_prefix_owner<V: StateView + ?Sized>(
    view: &V,
    prefix: &str,
) -> Result<Option<PublicKey>, ViewError> {
    read_prefix(&crate::exec::ViewLookup(view), prefix)
}

/// The owner of the company prefix of a GTIN-14.
pub fn gtin_prefix_owner<V: StateView + ?Sized>(
    view: &V,
    gtin: u64,
) -> Result<Option<PublicKey>, ViewError> {
    gtin_owner(&crate::exec::ViewLookup(view), gtin)
}

/// The owner of the company prefix of a GLN (13 digits).
pub fn gln_prefix_owner<V: StateView + ?Sized>(
    view: &V,
    gln: u64,
) -> Result<Option<PublicKey>, ViewError> {
    gln_owner(&crate::exec::ViewLookup(view), gln)
}

fn root(o: &dyn Lookup, id: &ItemId) -> Result<Option<(ItemId, Item)>, ViewError> {
    let Some(mut item) = read_item(o, id)? else {
        return Ok(None);
    };
    let mut at = *id;
    for _ in 0..=MAX_NESTING {
        match item.parent {
            None => return Ok(Some((at, item))),
            Some(p) => {
                at = p;
                item = read_item(o, &p)?.ok_or_else(|| corrupt("item parent"))?;
            }
        }
    }
    Err(corrupt("item nesting"))
}

// ---- transactions --------------------------------------------------------------------------

/// Assigns (or withdraws) a company prefix: operators only.
pub(crate) fn assign_prefix(
    o: &mut dyn Writer,
    signer_role: Option<Role>,
    prefix: &str,
    organization: Option<PublicKey>,
) -> Result<Result<(), RejectReason>, ViewError> {
    if signer_role != Some(Role::Operator) {
        return Ok(Err(RejectReason::Unauthorized));
    }
    if !(6..=12).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Err(RejectReason::Malformed));
    }
    if let Some(org) = organization {
        match read_identity(o, &org)? {
            Some(i) if i.active && i.role == Role::Organization => {}
            _ => return Ok(Err(RejectReason::UnknownSubject)),
        }
        o.put(prefix_key(prefix), Some(encode(&org)));
    } else {
        o.put(prefix_key(prefix), None);
    }
    Ok(Ok(()))
}
