//! The drug supply chain as a service of a node: an EPCIS 2.0 repository (the GS1 REST
//! binding's capture, query, named queries and webhook subscriptions) whose every event is
//! hashed (CBV 2.0) and anchored on the ledger by the capturing organization, with custody
//! kept as ledger state; pack verification at the point of dispense (GS1 Lightweight
//! Verification Messaging), suspected clones and diversions reported to the organizations
//! concerned; recalls told to every holder and to every patient dispensed a recalled pack.
//!
//! Facade: the features live in [`capture`], [`query`], [`verify`], [`proof`],
//! [`subscribe`] and [`follow`] (the chain follower behind alerts and recalls).

pub mod capture;
pub mod custody;
mod error;
pub mod follow;
pub mod journey;
pub mod proof;
pub mod query;
pub mod recall;
pub mod store;
pub mod subscribe;
pub mod verify;

use std::sync::Arc;

use carechain_crypto::{Did, PublicKey};
use carechain_service::{Service, Session};
use carechain_types::Role;

pub use capture::{Behaviour, CAPTURE_LIMIT, Format, MAX_CAPTURE_BYTES};
pub use error::SupplyError;
pub use proof::{EventCheck, verify_events};
pub use query::{Query, QueryPage};
pub use store::Store;

/// The organization a caller acts for.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The caller.
    pub did: Did,
    /// Its organization.
    pub organization: PublicKey,
}

/// The supply service of one node.
pub struct Supply {
    service: Arc<Service>,
    store: Store,
    deliveries: subscribe::Deliveries,
    /// Capture jobs running now (at most [`capture::CONCURRENT_CAPTURES`]; the rest wait).
    capturing: (parking_lot::Mutex<usize>, parking_lot::Condvar),
    /// Suspicions reported from this node (item, organization, reason): each once (the set
    /// is cleared when it reaches [`verify::MAX_REPORTED`]).
    reported: parking_lot::Mutex<
        std::collections::BTreeSet<(
            carechain_crypto::Hash,
            PublicKey,
            carechain_types::SuspectReason,
        )>,
    >,
}

impl Supply {
    /// Opens the repository in the node's data directory (`epcis.redb`) and starts the chain
    /// follower and the webhook deliverer.
    pub fn open(service: Arc<Service>) -> Result<Arc<Supply>, SupplyError> {
        let store = Store::open(&service.data_dir().join("epcis.redb"))?;
        let s = Arc::new(Supply {
            service,
            store,
            deliveries: subscribe::Deliveries::default(),
            capturing: Default::default(),
            reported: Default::default(),
        });
        s.interrupted_captures()?;
        follow::start(&s);
        subscribe::start(&s);
        Ok(s)
    }

    /// The records and ledger service beneath.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The repository store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The organization `s` acts for: an organization itself, or a practitioner or device of
    /// one. Patients (and identities of no organization) have no supply chain to act in.
    pub fn actor(&self, s: &Session) -> Result<Actor, SupplyError> {
        let org = match (s.role, &s.organization) {
            (Role::Organization, _) => Some(s.did.public_key()),
            (Role::Practitioner | Role::Device, Some(o)) => Some(o.public_key()),
            _ => None,
        };
        org.map(|organization| Actor {
            did: s.did,
            organization,
        })
        .ok_or_else(|| {
            SupplyError::Forbidden("the supply chain is for organizations and their members".into())
        })
    }

    fn snapshot(&self) -> Result<carechain_storage::Snapshot, SupplyError> {
        self.service.node().snapshot().map_err(|e| {
            SupplyError::Service(carechain_service::ServiceError::internal("storage", e))
        })
    }
}
