//! The redb tables of the record store (the link tables are in `links.rs`).

use redb::TableDefinition;

pub(crate) const HEADS: TableDefinition<&str, u64> = TableDefinition::new("heads");
pub(crate) const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// (patient, resource type, id) → () : the patient compartment.
pub(crate) const BY_PATIENT: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("by_patient");
/// (resource type/id, version) → anchoring transaction: creates committed while their anchor
/// was not yet known to be durable (see [`RecordStore::create_anchored`]).
pub(crate) const PENDING: TableDefinition<(&str, u64), &[u8; 32]> =
    TableDefinition::new("pending_anchors");
/// `(type/id, version)` → borsh `(RecordContext, ContentId)`: ciphertexts of erased versions
/// whose deletion has not finished (the wrapped keys are already gone). Written in the same
/// durable transaction that forgets the keys; removed once the blob is deleted; retried at
/// open and by every later erasure of the resource.
pub(crate) const ERASING: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("pending_erasures");
