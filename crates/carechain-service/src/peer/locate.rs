//! Keeping the patients' record locators true: a node that holds records of a proven
//! identity says so on the ledger (`locate_records`), once it is registered to serve.

use carechain_crypto::Did;
use carechain_types::Payload;

use crate::Service;

impl Service {
    /// Puts this node in `did`'s record locator if it serves an organization and is not
    /// there yet; whether a transaction was submitted. Never fails the caller's interaction:
    /// a locator that could not be written is retried by [`Service::publish_locators`].
    pub(crate) fn publish_location(&self, did: &Did) -> bool {
        let me = self.key.public();
        let patient = did.public_key();
        let needed = self.node.store().with_durable(|d| {
            let serves = carechain_state::node_entry(d.snapshot, &me)?
                .is_some_and(|n| !n.organizations.is_empty());
            let located = carechain_state::locator(d.snapshot, &patient)?
                .iter()
                .any(|l| l.node == me);
            Ok::<_, carechain_state::ViewError>(serves && !located)
        });
        let patient_ok = self
            .identity(did)
            .is_some_and(|i| i.active && i.role == carechain_types::Role::Patient);
        if !patient_ok {
            return false;
        }
        if !matches!(needed, Ok(Ok(true))) {
            return false;
        }
        match self.submit_anchors(vec![Payload::LocateRecords {
            patient,
            held: true,
            node: me,
        }]) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot publish a record location");
                false
            }
        }
    }

    /// Publishes this node in the record locator of every proven identity it holds records
    /// of (after it is registered to serve, and at every start); how many were submitted.
    pub fn publish_locators(&self) -> usize {
        let dids: Vec<Did> = self.links.read().dids();
        dids.iter().filter(|d| self.publish_location(d)).count()
    }
}
