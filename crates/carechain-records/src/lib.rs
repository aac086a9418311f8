//! The versioned FHIR resource store: every version of every resource is validated against
//! the R4 definitions, encrypted in the vault under its own data key, and described by a small
//! metadata record (version, time, patient, authoring organization, categories, security
//! labels, the sealed key material) in an off-chain redb database. Each write returns the
//! version's salted commitment for the caller to anchor on the ledger; nothing identifying
//! leaves this crate except through [`RecordStore::read`] and friends.
//!
//! FHIR semantics: create assigns the id; update creates a new version (and honours
//! `If-Match`); delete writes a deleted version and keeps history; erase destroys the
//! ciphertext of every version (the commitments stay, marked erased) after which reads are
//! `Gone`.

mod anchor;
mod compartment;
mod erase;
mod error;
mod group;
mod ids;
mod links;
mod locks;
mod read;
mod rewrap;
mod tables;
mod write;

use std::path::Path;

use std::sync::atomic::AtomicBool;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::Hash;
use carechain_vault::{
    BlobStore, EncryptionKey, PackBlobStore, PublicEncryptionKey, SealedRecord, Vault,
};
use parking_lot::Mutex;
use redb::Database;
use serde_json::{Value, json};

pub use compartment::patient_of;
pub use error::RecordError;
pub use ids::{format_instant, new_id};
pub use links::{ActivationCode, LinkError, claim_message};

use group::Group;
use locks::KeyLocks;
use tables::{BY_PATIENT, ERASING, HEADS, PENDING, VERSIONS};

/// What the store knows about one version without decrypting it (used for consent decisions).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VersionMeta {
    /// Version number (1, 2, ...).
    pub version: u64,
    /// When it was written (ms since the Unix epoch).
    pub last_updated_ms: u64,
    /// A deletion marker version (no content).
    pub deleted: bool,
    /// Content destroyed by erasure.
    pub erased: bool,
    /// The patient (`Patient/<id>`) whose record this is: the compartment its ciphertext is
    /// bound to and its audit events go to (the first of `patients` its subject, patient or
    /// beneficiary names, else the first of `patients`).
    pub patient: Option<String>,
    /// Every patient whose compartment the version is in (the official Patient compartment
    /// definition; sorted): access is decided by each of their consents.
    pub patients: Vec<String>,
    /// The organization that wrote this version.
    pub author: Option<String>,
    /// Category codes (for consent by data class).
    pub categories: Vec<String>,
    /// Security label codes.
    pub labels: Vec<String>,
    /// The salted commitment anchored on the ledger.
    pub commitment: Option<Hash>,
    /// The sealed content (absent for deletions and after erasure).
    pub sealed: Option<SealedRecord>,
    /// The ledger transaction that anchored this version, once committed.
    pub anchor: Option<Anchor>,
}

/// Where a version is anchored on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Anchor {
    /// The anchoring transaction's hash (a leaf of the verifiable log).
    pub tx: Hash,
    /// The commitment the transaction carries.
    pub commitment: Hash,
    /// The salt of that commitment, when the service chose it (audit events); record versions
    /// use the sealed record's salt.
    pub salt: Option<[u8; 32]>,
    /// When the transaction carries the Merkle root of a batch of commitments (audit events)
    /// rather than this commitment itself: where this commitment is in that batch.
    pub batch: Option<BatchPath>,
}

/// A commitment's place in a batch anchored by one transaction: the transaction carries the
/// RFC 6962 Merkle tree hash of the batch's commitments (each hashed as a leaf), and `proof`
/// is the inclusion proof of leaf `index` in that tree of `size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BatchPath {
    /// The commitment's index in the batch.
    pub index: u64,
    /// The number of commitments in the batch.
    pub size: u64,
    /// The inclusion proof (RFC 9162 §2.1.3) of that leaf under the batch root.
    pub proof: Vec<Hash>,
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct Written {
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub id: String,
    /// Its metadata.
    pub meta: VersionMeta,
    /// The resource as stored (with `id` and `meta`), or `None` for a deletion.
    pub resource: Option<Value>,
    /// The current version's metadata when this one was prepared (under the resource's write
    /// lock): what an access decision on an update or deletion is taken on.
    pub stored: Option<VersionMeta>,
    /// The blob store's mark after the ciphertext was staged (what the metadata commit
    /// must have synced).
    blob_mark: u64,
    /// The serialized resource that was sealed (empty for a deletion).
    plaintext: Vec<u8>,
}

impl Written {
    /// The exact bytes that were encrypted: the resource's JSON serialization (empty for a
    /// deletion). A commitment over them needs no second serialization.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }
}

/// One version to write with [`RecordStore::write_many`].
#[derive(Clone, Debug)]
pub struct NewVersion {
    /// The resource.
    pub resource: Value,
    /// Its id (new, from [`new_id`], for a create).
    pub id: String,
    /// `If-Match`.
    pub if_match: Option<u64>,
    /// A create (the id is assigned, not checked against the body).
    pub fresh: bool,
    /// Compartment override.
    pub patient: Option<String>,
    /// Who else the data key is wrapped to (the patient), beside the node.
    pub also: Vec<PublicEncryptionKey>,
    /// A deletion (FHIR DELETE) of the resource `resource["resourceType"]`/`id` rather than a
    /// new version of content.
    pub delete: bool,
    /// Built by the node itself from a fixed template (audit events), not received: checked
    /// against the R4 definitions only in debug builds (every test still validates each one).
    pub server_built: bool,
}

impl NewVersion {
    /// A new version of `resource` under `id` (an update unless `fresh` is set).
    pub fn content(resource: Value, id: String) -> NewVersion {
        NewVersion {
            resource,
            id,
            if_match: None,
            fresh: false,
            patient: None,
            also: Vec::new(),
            delete: false,
            server_built: false,
        }
    }

    /// The deletion (FHIR DELETE) of `resource_type`/`id`.
    pub fn deletion(resource_type: &str, id: &str) -> NewVersion {
        NewVersion {
            resource: json!({"resourceType": resource_type}),
            id: id.to_string(),
            if_match: None,
            fresh: false,
            patient: None,
            also: Vec::new(),
            delete: true,
            server_built: false,
        }
    }
}

/// A create for [`RecordStore::create_anchored`].
#[derive(Clone, Debug)]
pub struct NewCreate<'a> {
    /// The resource (its id is assigned).
    pub resource: Value,
    /// Compartment override.
    pub patient: Option<&'a str>,
    /// The authoring organization.
    pub author: Option<&'a str>,
    /// Who else the data key is wrapped to (the patient), beside the node.
    pub also: &'a [PublicEncryptionKey],
    /// When (ms since the Unix epoch).
    pub now_ms: u64,
}

/// One entry of a resource's history.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// Metadata.
    pub meta: VersionMeta,
    /// Content, if it still exists.
    pub resource: Option<Value>,
}

/// The store.
pub struct RecordStore<B: BlobStore = PackBlobStore> {
    db: Database,
    vault: Vault<B>,
    /// Resources being written: writers of one resource take turns (version numbers are
    /// assigned from its head), writers of different resources run in parallel.
    writing: KeyLocks,
    group: Mutex<Group>,
    group_cv: parking_lot::Condvar,
    /// Created resources (`type/id`) whose metadata is committed but whose anchor is not yet
    /// known to be durable: they do not exist for readers until it is.
    hidden: parking_lot::RwLock<std::collections::HashSet<String>>,
    /// Pending anchors found durable, to be dropped from the pending-anchor table by the next commit.
    confirmed: Mutex<Vec<(String, u64)>>,
    /// A metadata commit failed: no more writes through this handle.
    poisoned: AtomicBool,
}

impl RecordStore {
    /// Opens (or creates) a store in `dir` with the node's key-encryption key.
    pub fn open(dir: &Path, kek: EncryptionKey) -> Result<RecordStore, RecordError> {
        std::fs::create_dir_all(dir)?;
        let blobs = PackBlobStore::open(&dir.join("blobs"))?;
        RecordStore::open_with(dir, kek, blobs)
    }
}

impl<B: BlobStore> RecordStore<B> {
    /// Opens the store under `dir` with its ciphertexts in `blobs` (e.g. S3).
    pub fn open_with(
        dir: &Path,
        kek: EncryptionKey,
        blobs: B,
    ) -> Result<RecordStore<B>, RecordError> {
        std::fs::create_dir_all(dir)?;
        let database = Database::create(dir.join("records.redb"))?;
        let txn = database.begin_write()?;
        txn.open_table(HEADS)?;
        txn.open_table(VERSIONS)?;
        txn.open_table(BY_PATIENT)?;
        txn.open_table(PENDING)?;
        txn.open_table(ERASING)?;
        Self::open_link_tables(&txn)?;
        txn.commit()?;
        let store = RecordStore {
            db: database,
            vault: Vault::new(blobs, kek),
            writing: KeyLocks::default(),
            group: Mutex::new(Group::new()),
            group_cv: parking_lot::Condvar::new(),
            hidden: parking_lot::RwLock::new(std::collections::HashSet::new()),
            confirmed: Mutex::new(Vec::new()),
            poisoned: AtomicBool::new(false),
        };
        // Ciphertexts an earlier erasure could not delete (their keys are gone already): a
        // blob store still unreachable now leaves them pending for the next try.
        let _ = store.finish_erasures(None);
        Ok(store)
    }

    /// The vault (for its blob store).
    pub fn vault(&self) -> &Vault<B> {
        &self.vault
    }
}
