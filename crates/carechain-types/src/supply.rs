//! The drug supply chain's ledger payloads: a batch of product events (each by its event
//! hash, anchored) and what each does to custody. Products are named by an opaque 32-byte id
//! (the layer above derives it from the product's canonical identifier); GTINs, lots, expiry
//! dates and GS1 company prefixes are public ledger data (trade data, never health data).

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, PublicKey};

/// Most events one [`crate::Payload::Supply`] batch carries.
pub const MAX_SUPPLY_EVENTS: usize = 2_000;
/// Most products one event names.
pub const MAX_SUPPLY_ITEMS: usize = 2_000;
/// Longest lot number, in bytes (GS1 AI 10 allows 20).
pub const MAX_LOT: usize = 20;
/// Deepest nesting of containers (a pack in a case in a pallet in a ...).
pub const MAX_NESTING: usize = 8;

/// A product or logistic unit: an opaque id (the layer above: SHA-256 of its canonical
/// Digital Link under a namespace).
pub type ItemId = Hash;

/// One product event of a batch.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SupplyEvent {
    /// The event's hash (the digest of its CBV 2.0 event hash): anchored by the batch.
    pub hash: Hash,
    /// When it happened (milliseconds since the Unix epoch, UTC), as the event says.
    pub time_ms: i64,
    /// Where, as a GLN (13 digits), if the event names a location: it must lie under a company
    /// prefix of the capturing organization.
    pub location: Option<u64>,
    /// What it does to custody.
    pub step: SupplyStep,
}

/// What an event does to the products it names.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SupplyStep {
    /// Nothing to custody (an inspection, an observation): anchored only.
    Observe,
    /// New serialized products of `gtin` (14 digits) in custody of the capturing
    /// organization, which must own the GTIN's company prefix.
    Commission {
        /// The trade item.
        gtin: u64,
        /// Its lot (batch) number.
        lot: String,
        /// Its expiry date as YYYYMMDD, if known.
        expiry: Option<u32>,
        /// The new products.
        items: Vec<ItemId>,
    },
    /// Children packed into `parent` (a case or pallet; created in the packer's custody if
    /// new). From then on the children travel with their outermost container.
    Pack {
        /// The container.
        parent: ItemId,
        /// What goes in.
        children: Vec<ItemId>,
    },
    /// Children taken out of `parent`: each gets the container's custody.
    Unpack {
        /// The container.
        parent: ItemId,
        /// What comes out.
        children: Vec<ItemId>,
    },
    /// Products (or containers) leave the capturing organization for `to`.
    Ship {
        /// The receiving organization, if the event names it.
        to: Option<PublicKey>,
        /// What is shipped.
        items: Vec<ItemId>,
    },
    /// Products (or containers) arrive: custody passes to the capturing organization.
    Receive {
        /// What arrives.
        items: Vec<ItemId>,
    },
    /// Products handed to a patient: they leave the supply chain.
    Dispense {
        /// What is dispensed.
        items: Vec<ItemId>,
    },
    /// Products destroyed or taken out of use.
    Decommission {
        /// What is decommissioned.
        items: Vec<ItemId>,
    },
    /// A lot recalled by its GTIN's owner.
    Recall {
        /// The trade item.
        gtin: u64,
        /// The lot.
        lot: String,
    },
    /// A product reported suspect by the organization that saw it (a scan of a serial
    /// already dispensed, or somewhere its custody is not): the product's commissioner and
    /// custodian are told through state.
    Suspect {
        /// The product.
        item: ItemId,
        /// Why.
        reason: SuspectReason,
    },
}

/// Why a product is suspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum SuspectReason {
    /// Scanned after it was dispensed or decommissioned: a copy of its serial (a clone).
    Clone = 0,
    /// Scanned by an organization that is not its custodian: diverted.
    Diverted = 1,
    /// Scanned with a lot or expiry date other than commissioned.
    Mismatch = 2,
}

impl SuspectReason {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SuspectReason::Clone => "clone",
            SuspectReason::Diverted => "diverted",
            SuspectReason::Mismatch => "mismatch",
        }
    }
}

/// Where a product is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ItemStatus {
    /// With its custodian.
    Active,
    /// Shipped by its custodian, not yet received.
    InTransit {
        /// The organization it was shipped to, if named.
        to: Option<PublicKey>,
    },
    /// Dispensed to a patient (at this height).
    Dispensed {
        /// The height.
        height: u64,
    },
    /// Decommissioned (at this height).
    Decommissioned {
        /// The height.
        height: u64,
    },
}

impl ItemStatus {
    /// Stable lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemStatus::Active => "active",
            ItemStatus::InTransit { .. } => "in_transit",
            ItemStatus::Dispensed { .. } => "dispensed",
            ItemStatus::Decommissioned { .. } => "decommissioned",
        }
    }
}
