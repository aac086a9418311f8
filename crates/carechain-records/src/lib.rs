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

mod links;

use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::Hash;
use carechain_fhir::{Issue, codes, validate_resource};
use carechain_vault::{
    BlobStore, EncryptionKey, PackBlobStore, PublicEncryptionKey, RecordContext, SealedRecord,
    Vault, VaultError,
};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{Value, json};

pub use links::{ActivationCode, LinkError, claim_message};

/// Versions sealed per thread at least when a batch is sealed on several threads.
const SEALS_PER_THREAD: usize = 32;
const HEADS: TableDefinition<&str, u64> = TableDefinition::new("heads");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// (patient, resource type, id) → () : the patient compartment.
const BY_PATIENT: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("by_patient");
/// (resource type/id, version) → anchoring transaction: creates committed while their anchor
/// was not yet known to be durable (see [`RecordStore::create_anchored`]).
const PENDING: TableDefinition<(&str, u64), &[u8; 32]> = TableDefinition::new("pending_anchors");
/// `(type/id, version)` → borsh `(RecordContext, ContentId)`: ciphertexts of erased versions
/// whose deletion has not finished (the wrapped keys are already gone). Written in the same
/// durable transaction that forgets the keys; removed once the blob is deleted; retried at
/// open and by every later erasure of the resource.
const ERASING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("pending_erasures");

/// Failures, each mapping to one HTTP status / OperationOutcome.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The resource does not conform to the R4 definitions (422).
    #[error("resource is not valid FHIR R4 ({} issues)", .0.len())]
    Invalid(Vec<Issue>),
    /// The request is not usable (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such resource or version (404).
    #[error("{0} not found")]
    NotFound(String),
    /// The resource was deleted (410 for read).
    #[error("{0} was deleted")]
    Deleted(String),
    /// The resource was erased (410).
    #[error("{0} was erased")]
    Erased(String),
    /// `If-Match` names another version than the current one (412).
    #[error("version conflict: current version is {current}")]
    VersionConflict {
        /// The current version.
        current: u64,
    },
    /// The vault failed (500).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The metadata database failed (500).
    #[error("record database: {0}")]
    Db(String),
}

fn db<E: std::fmt::Display>(e: E) -> RecordError {
    RecordError::Db(e.to_string())
}

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
    /// Pending anchors found durable, to be dropped from [`PENDING`] by the next commit.
    confirmed: Mutex<Vec<(String, u64)>>,
}

/// A set of locked resource keys (`type/id`).
#[derive(Default)]
struct KeyLocks {
    held: Mutex<std::collections::BTreeSet<String>>,
    free: parking_lot::Condvar,
}

/// Holds some keys of a [`KeyLocks`] until dropped.
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    keys: Vec<String>,
}

impl KeyLocks {
    /// Waits until none of `keys` is held, then holds them all (all at once, so two writers
    /// of overlapping sets cannot deadlock).
    fn lock(&self, keys: Vec<String>) -> KeyGuard<'_> {
        let mut held = self.held.lock();
        while keys.iter().any(|k| held.contains(k)) {
            self.free.wait(&mut held);
        }
        held.extend(keys.iter().cloned());
        KeyGuard { locks: self, keys }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock();
        for k in &self.keys {
            held.remove(k);
        }
        self.locks.free.notify_all();
    }
}

/// One version's metadata in a commit.
struct Entry {
    key: String,
    meta: VersionMeta,
    /// Make it the current version.
    head: bool,
    /// Record its anchor as pending (a create committed before its anchor is durable).
    pending: bool,
    /// Blob store mark its ciphertext needs synced.
    blob_mark: u64,
}

impl Entry {
    fn of(w: &Written, head: bool, pending: bool) -> Entry {
        Entry {
            key: format!("{}/{}", w.resource_type, w.id),
            meta: w.meta.clone(),
            head,
            pending,
            blob_mark: w.blob_mark,
        }
    }
}

/// Group commit of metadata writes: concurrent writers' entries share one durable redb
/// transaction. The first writer to find no commit in progress leads: it takes every pending
/// entry, commits them, and wakes the others.
#[derive(Default)]
struct Group {
    /// The batch new entries join.
    open: u64,
    /// The last batch committed (or failed).
    done: u64,
    /// A commit is in progress.
    leader: bool,
    pending: Vec<Entry>,
    failed: std::collections::BTreeMap<u64, String>,
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` for milliseconds since the Unix epoch.
pub fn format_instant(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        ms % 1000
    )
}

/// A fresh resource id: 32 hex digits, the first 12 the current time in milliseconds since the
/// epoch and the other 20 random (80 bits; the layout of a UUIDv7 without its version bits).
/// Ids made close in time sort close together, so a batch of new records lands in a few
/// B-tree pages of each index instead of one random page per record.
pub fn new_id() -> Result<String, RecordError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b[6..]).map_err(|_| RecordError::Vault(VaultError::Randomness))?;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Ok(hex::encode(b))
}

/// The patient a resource belongs to (its primary compartment): itself for a Patient, else
/// the patient its subject, patient or beneficiary names, else the first patient of its
/// compartments ([`carechain_fhir::patients_of`]).
pub fn patient_of(resource_type: &str, id: &str, r: &Value) -> Option<String> {
    primary_patient(
        resource_type,
        id,
        r,
        &carechain_fhir::patients_of(resource_type, id, r),
    )
}

fn primary_patient(
    resource_type: &str,
    id: &str,
    r: &Value,
    patients: &[String],
) -> Option<String> {
    if resource_type == "Patient" {
        return Some(format!("Patient/{id}"));
    }
    ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|f| r[*f]["reference"].as_str())
        .filter_map(carechain_fhir::patient_reference)
        .find(|p| patients.contains(p))
        .or_else(|| patients.first().cloned())
}

impl RecordStore {
    /// Opens (or creates) a store in `dir` with the node's key-encryption key.
    pub fn open(dir: &Path, kek: EncryptionKey) -> Result<RecordStore, RecordError> {
        std::fs::create_dir_all(dir).map_err(db)?;
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
        std::fs::create_dir_all(dir).map_err(db)?;
        let database = Database::create(dir.join("records.redb")).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(HEADS).map_err(db)?;
        txn.open_table(VERSIONS).map_err(db)?;
        txn.open_table(BY_PATIENT).map_err(db)?;
        txn.open_table(PENDING).map_err(db)?;
        txn.open_table(ERASING).map_err(db)?;
        Self::open_link_tables(&txn)?;
        txn.commit().map_err(db)?;
        let store = RecordStore {
            db: database,
            vault: Vault::new(blobs, kek),
            writing: KeyLocks::default(),
            group: Mutex::new(Group {
                open: 1,
                ..Group::default()
            }),
            group_cv: parking_lot::Condvar::new(),
            hidden: parking_lot::RwLock::new(std::collections::HashSet::new()),
            confirmed: Mutex::new(Vec::new()),
        };
        // Ciphertexts an earlier erasure could not delete (their keys are gone already): a
        // blob store still unreachable now leaves them pending for the next try.
        let _ = store.finish_erasures(None);
        Ok(store)
    }

    fn drop_hidden(&self, resource_type: &str, ids: &mut Vec<String>) {
        let h = self.hidden.read();
        if !h.is_empty() {
            ids.retain(|id| !h.contains(&format!("{resource_type}/{id}")));
        }
    }

    fn is_hidden(&self, key: &str) -> bool {
        let h = self.hidden.read();
        !h.is_empty() && h.contains(key)
    }

    /// The vault (for its blob store).
    pub fn vault(&self) -> &Vault<B> {
        &self.vault
    }

    fn head(&self, key: &str) -> Result<Option<u64>, RecordError> {
        if self.is_hidden(key) {
            return Ok(None);
        }
        let rt = self.db.begin_read().map_err(db)?;
        let t = rt.open_table(HEADS).map_err(db)?;
        Ok(t.get(key).map_err(db)?.map(|v| v.value()))
    }

    /// Metadata of one version (or the current one), without decrypting.
    pub fn meta(
        &self,
        resource_type: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<VersionMeta, RecordError> {
        let key = format!("{resource_type}/{id}");
        if self.is_hidden(&key) {
            return Err(RecordError::NotFound(key));
        }
        let v = match version {
            Some(v) => v,
            None => self
                .head(&key)?
                .ok_or_else(|| RecordError::NotFound(key.clone()))?,
        };
        let rt = self.db.begin_read().map_err(db)?;
        let t = rt.open_table(VERSIONS).map_err(db)?;
        let raw = t
            .get((key.as_str(), v))
            .map_err(db)?
            .ok_or_else(|| RecordError::NotFound(format!("{key}/_history/{v}")))?;
        VersionMeta::try_from_slice(raw.value()).map_err(db)
    }

    fn context(resource_type: &str, id: &str, meta: &VersionMeta) -> RecordContext {
        RecordContext {
            patient: meta.patient.clone().unwrap_or_default(),
            resource_type: resource_type.into(),
            resource_id: id.into(),
            version: meta.version,
        }
    }

    fn content(
        &self,
        resource_type: &str,
        id: &str,
        meta: &VersionMeta,
    ) -> Result<Option<Value>, RecordError> {
        let Some(sealed) = &meta.sealed else {
            return Ok(None);
        };
        let plain = self
            .vault
            .open(&Self::context(resource_type, id, meta), sealed)?;
        serde_json::from_slice(&plain).map(Some).map_err(db)
    }

    /// Creates a resource with a new id.
    pub fn create(
        &self,
        resource: Value,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let id = new_id()?;
        self.write_version(resource, &id, None, author, also, now_ms, true)
    }

    /// Updates (or creates, with a client id) a resource. `if_match` is the version the client
    /// last saw.
    pub fn update(
        &self,
        resource: Value,
        id: &str,
        if_match: Option<u64>,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        self.write_version(resource, id, if_match, author, also, now_ms, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        mut resource: Value,
        id: &str,
        if_match: Option<u64>,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
        fresh: bool,
        patient: Option<String>,
        seal: bool,
        validate: bool,
    ) -> Result<Written, RecordError> {
        let rt = resource["resourceType"]
            .as_str()
            .ok_or_else(|| RecordError::BadRequest("resourceType is missing".into()))?
            .to_string();
        if !fresh {
            match resource["id"].as_str() {
                Some(rid) if rid == id => {}
                Some(_) => {
                    return Err(RecordError::BadRequest(
                        "the resource id does not match the URL".into(),
                    ));
                }
                None => {
                    return Err(RecordError::BadRequest(
                        "an update must carry the resource id".into(),
                    ));
                }
            }
        }
        resource["id"] = json!(id);
        let key = format!("{rt}/{id}");
        let current = self.head(&key)?;
        if let (Some(want), cur) = (if_match, current)
            && Some(want) != cur
        {
            return Err(RecordError::VersionConflict {
                current: cur.unwrap_or(0),
            });
        }
        if let Some(cur) = current
            && self.meta(&rt, id, Some(cur))?.erased
        {
            return Err(RecordError::Erased(key));
        }
        let version = current.unwrap_or(0) + 1;
        // The authoring organization is the one that created the resource: an update never
        // makes its writer the author (authorship grants access).
        let stored = match current {
            Some(cur) => Some(self.meta(&rt, id, Some(cur))?),
            None => None,
        };
        let author = match &stored {
            Some(m) => m.author.clone(),
            None => author.map(str::to_string),
        };
        let patients = match &patient {
            Some(p) => vec![p.clone()],
            None => carechain_fhir::patients_of(&rt, id, &resource),
        };
        let patient = patient.or_else(|| primary_patient(&rt, id, &resource, &patients));
        // Server-assigned meta, then validation of exactly what will be stored.
        let mut meta_json = resource["meta"].as_object().cloned().unwrap_or_default();
        meta_json.insert("versionId".into(), json!(version.to_string()));
        meta_json.insert("lastUpdated".into(), json!(format_instant(now_ms)));
        resource["meta"] = Value::Object(meta_json);
        if validate || cfg!(debug_assertions) {
            validate_resource(&resource).map_err(RecordError::Invalid)?;
        }
        let meta = VersionMeta {
            version,
            last_updated_ms: now_ms,
            deleted: false,
            erased: false,
            patient,
            patients,
            author,
            categories: codes(&resource["category"]),
            labels: codes(&resource["meta"]["security"]),
            commitment: None,
            sealed: None,
            anchor: None,
        };
        let mut w = Written {
            resource_type: rt,
            id: id.to_string(),
            meta,
            resource: Some(resource),
            stored,
            blob_mark: 0,
            plaintext: Vec::new(),
        };
        if seal {
            self.seal(&mut w, also)?;
        }
        Ok(w)
    }

    /// Encrypts a prepared version and stages its ciphertext.
    fn seal(&self, w: &mut Written, also: &[PublicEncryptionKey]) -> Result<(), RecordError> {
        let resource = w
            .resource
            .as_ref()
            .ok_or_else(|| RecordError::BadRequest("nothing to seal".into()))?;
        let bytes = serde_json::to_vec(resource).map_err(db)?;
        let sealed = self.vault.seal(
            &Self::context(&w.resource_type, &w.id, &w.meta),
            &bytes,
            also,
        )?;
        w.meta.commitment = Some(sealed.commitment);
        w.meta.sealed = Some(sealed);
        w.blob_mark = self.vault.blobs().staged_mark();
        w.plaintext = bytes;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_version(
        &self,
        resource: Value,
        id: &str,
        if_match: Option<u64>,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
        fresh: bool,
    ) -> Result<Written, RecordError> {
        let rt = resource["resourceType"].as_str().unwrap_or_default();
        let _guard = self.writing.lock(vec![format!("{rt}/{id}")]);
        let w = self.prepare(
            resource, id, if_match, author, also, now_ms, fresh, None, true, true,
        )?;
        self.put_grouped(Entry::of(&w, true, false))?;
        Ok(w)
    }

    /// Writes several versions atomically: all are validated first, then `authorize` decides
    /// on them — each with the metadata of the version it replaces (`Written::stored`), read
    /// under the resources' write locks, so the decision is on the records as stored — then
    /// they are sealed, `anchor` is called with them (to put their commitments on the
    /// ledger), and all metadata is committed in one transaction with the anchors. If
    /// anything fails, nothing becomes visible (sealed blobs left behind are unreferenced
    /// ciphertext).
    pub fn write_many<E: From<RecordError>>(
        &self,
        items: Vec<NewVersion>,
        author: Option<&str>,
        now_ms: u64,
        authorize: impl FnOnce(&[Written]) -> Result<(), E>,
        anchor: impl FnOnce(&[Written]) -> Result<Vec<Anchor>, E>,
    ) -> Result<Vec<Written>, E> {
        let mut keys = std::collections::BTreeSet::new();
        for it in &items {
            let rt = it.resource["resourceType"].as_str().unwrap_or_default();
            if !keys.insert(format!("{rt}/{}", it.id)) {
                return Err(
                    RecordError::BadRequest(format!("{rt}/{} appears twice", it.id)).into(),
                );
            }
        }
        let _guard = self.writing.lock(keys.into_iter().collect());
        let mut written = Vec::with_capacity(items.len());
        let mut recipients = Vec::with_capacity(items.len());
        for it in items {
            recipients.push(it.also);
            let rt = it.resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if it.delete {
                written.push(self.deletion(&rt, &it.id, now_ms)?);
                continue;
            }
            written.push(self.prepare(
                it.resource,
                &it.id,
                it.if_match,
                author,
                &[],
                now_ms,
                it.fresh,
                it.patient,
                false,
                !it.server_built,
            )?);
        }
        authorize(&written)?;
        // Every version is valid and allowed: only now is anything encrypted and staged — on every core
        // when there are enough versions to be worth a thread (each seal serializes and
        // encrypts one version, some microseconds; starting a thread costs about as much as
        // sealing a few dozen).
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(written.len().div_ceil(SEALS_PER_THREAD));
        if threads <= 1 {
            self.seal_all(&mut written, &recipients)?;
        } else {
            self.seal_in_parallel(&mut written, &recipients, threads)?;
        }
        let anchors = anchor(&written)?;
        let mut batch = Vec::with_capacity(written.len());
        for (w, a) in written.iter_mut().zip(anchors) {
            w.meta.anchor = Some(a);
            batch.push(Entry::of(w, true, false));
        }
        // One transaction of its own (not the shared group): all or nothing.
        self.commit_batch(&batch)?;
        Ok(written)
    }

    /// Seals each of `written` but deletions, for its recipients in `also`.
    fn seal_all(
        &self,
        written: &mut [Written],
        also: &[Vec<PublicEncryptionKey>],
    ) -> Result<(), RecordError> {
        written
            .iter_mut()
            .zip(also)
            .filter(|(w, _)| !w.meta.deleted)
            .try_for_each(|(w, a)| self.seal(w, a))
    }

    /// [`RecordStore::seal_all`] on `threads` threads.
    fn seal_in_parallel(
        &self,
        written: &mut [Written],
        recipients: &[Vec<PublicEncryptionKey>],
        threads: usize,
    ) -> Result<(), RecordError> {
        let chunk = written.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = written
                .chunks_mut(chunk)
                .zip(recipients.chunks(chunk))
                .map(|(ws, also)| scope.spawn(move || self.seal_all(ws, also)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(RecordError::Db("sealing thread panicked".into())))
            })
        })
    }

    /// Writes one version's metadata durably, sharing the commit with concurrent writers.
    fn put_grouped(&self, entry: Entry) -> Result<(), RecordError> {
        let mut g = self.group.lock();
        g.pending.push(entry);
        let mine = g.open;
        loop {
            if g.done >= mine {
                return match g.failed.get(&mine) {
                    Some(e) => Err(RecordError::Db(e.clone())),
                    None => Ok(()),
                };
            }
            if g.leader {
                self.group_cv.wait(&mut g);
                continue;
            }
            g.leader = true;
            let batch = std::mem::take(&mut g.pending);
            let id = g.open;
            g.open += 1;
            let result = parking_lot::MutexGuard::unlocked(&mut g, || self.commit_batch(&batch));
            g.leader = false;
            g.done = id;
            if let Err(e) = result {
                g.failed.insert(id, e.to_string());
            }
            self.group_cv.notify_all();
        }
    }

    fn commit_batch(&self, batch: &[Entry]) -> Result<(), RecordError> {
        // The ciphertexts these versions refer to are durable first (one sync for the group;
        // none when the anchoring already synced them).
        let mark = batch.iter().map(|e| e.blob_mark).max().unwrap_or(0);
        if mark > 0 {
            self.vault.blobs().sync_through(mark)?;
        }
        let confirmed = std::mem::take(&mut *self.confirmed.lock());
        let mut txn = self.db.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        {
            let mut v = txn.open_table(VERSIONS).map_err(db)?;
            let mut h = txn.open_table(HEADS).map_err(db)?;
            let mut bp = txn.open_table(BY_PATIENT).map_err(db)?;
            let mut p = txn.open_table(PENDING).map_err(db)?;
            for (key, version) in &confirmed {
                p.remove((key.as_str(), *version)).map_err(db)?;
            }
            for e in batch {
                let (key, meta) = (e.key.as_str(), &e.meta);
                v.insert(
                    (key, meta.version),
                    borsh::to_vec(meta).map_err(db)?.as_slice(),
                )
                .map_err(db)?;
                if e.head {
                    h.insert(key, meta.version).map_err(db)?;
                }
                if let Some((rt, id)) = key.split_once('/') {
                    for pt in meta.patient.iter().chain(&meta.patients) {
                        bp.insert((pt.as_str(), rt, id), ()).map_err(db)?;
                    }
                }
                if e.pending
                    && let Some(a) = &meta.anchor
                {
                    p.insert((key, meta.version), &a.tx.0).map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)
    }

    /// Removes a create whose anchor never became durable: its metadata, compartment entry,
    /// pending mark and ciphertext.
    fn roll_back_create(&self, key: &str, version: u64) -> Result<(), RecordError> {
        let mut txn = self.db.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        let sealed = {
            let mut v = txn.open_table(VERSIONS).map_err(db)?;
            let mut h = txn.open_table(HEADS).map_err(db)?;
            let mut bp = txn.open_table(BY_PATIENT).map_err(db)?;
            let mut p = txn.open_table(PENDING).map_err(db)?;
            p.remove((key, version)).map_err(db)?;
            let raw = v
                .remove((key, version))
                .map_err(db)?
                .map(|g| g.value().to_vec());
            let meta = raw
                .map(|r| VersionMeta::try_from_slice(&r))
                .transpose()
                .map_err(db)?;
            if h.get(key).map_err(db)?.map(|g| g.value()) == Some(version) {
                h.remove(key).map_err(db)?;
            }
            match (meta, key.split_once('/')) {
                (Some(meta), Some((rt, id))) => {
                    for pt in meta.patient.iter().chain(&meta.patients) {
                        bp.remove((pt.as_str(), rt, id)).map_err(db)?;
                    }
                    let ctx = Self::context(rt, id, &meta);
                    meta.sealed.map(|s| (ctx, s))
                }
                _ => None,
            }
        };
        txn.commit().map_err(db)?;
        if let Some((ctx, sealed)) = sealed {
            self.vault.erase(&ctx, &sealed)?;
        }
        Ok(())
    }

    /// Settles the creates left pending by a crash (call once at open, before serving):
    /// those whose anchoring transaction `is_durable` are kept, the others removed (they were
    /// never acknowledged). Returns (kept, removed).
    pub fn settle_pending(
        &self,
        is_durable: impl Fn(&Hash) -> bool,
    ) -> Result<(usize, usize), RecordError> {
        let pending: Vec<(String, u64, Hash)> = {
            let rt = self.db.begin_read().map_err(db)?;
            let t = rt.open_table(PENDING).map_err(db)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                let (key, version) = k.value();
                out.push((key.to_string(), version, Hash(*v.value())));
            }
            out
        };
        let (mut kept, mut removed) = (0, 0);
        for (key, version, tx) in pending {
            if is_durable(&tx) {
                self.confirmed.lock().push((key, version));
                kept += 1;
            } else {
                self.roll_back_create(&key, version)?;
                removed += 1;
            }
        }
        if kept > 0 {
            self.commit_batch(&[])?;
        }
        Ok((kept, removed))
    }

    /// Creates a resource (new id) that becomes visible only once its anchor is durable.
    /// Validates and seals, then `submit` puts the version's commitment on its way to the
    /// ledger and returns the anchor; the metadata is committed (recording the anchor as
    /// pending) while the ledger makes its block durable, and `settle` waits for that. Only
    /// then can anyone read the resource. A crash in between is settled at the next open by
    /// [`RecordStore::settle_pending`]; a failed `settle` removes the create again. Creates
    /// of different resources run in parallel and share their commits.
    pub fn create_anchored<E: From<RecordError>>(
        &self,
        create: NewCreate<'_>,
        authorize: impl FnOnce(&Written) -> Result<(), E>,
        submit: impl FnOnce(&Written) -> Result<Anchor, E>,
        settle: impl FnOnce(&Anchor) -> Result<(), E>,
    ) -> Result<Written, E> {
        let id = new_id()?;
        let mut w = self.prepare(
            create.resource,
            &id,
            None,
            create.author,
            &[],
            create.now_ms,
            true,
            create.patient.map(str::to_string),
            false,
            true,
        )?;
        authorize(&w)?;
        self.seal(&mut w, create.also)?;
        let anchor = submit(&w)?;
        w.meta.anchor = Some(anchor.clone());
        let key = format!("{}/{}", w.resource_type, w.id);
        self.hidden.write().insert(key.clone());
        if let Err(e) = self.put_grouped(Entry::of(&w, true, true)) {
            self.hidden.write().remove(&key);
            return Err(e.into());
        }
        if let Err(e) = settle(&anchor) {
            // Never acknowledged: take it back (if that fails too, it stays hidden and the
            // next open settles it).
            if self.roll_back_create(&key, w.meta.version).is_ok() {
                self.hidden.write().remove(&key);
            }
            return Err(e);
        }
        self.hidden.write().remove(&key);
        self.confirmed.lock().push((key, w.meta.version));
        Ok(w)
    }

    /// Makes every ciphertext staged so far durable (shared by concurrent writers; the
    /// metadata commit does it too, so calling this early only moves the wait).
    pub fn sync_blobs(&self) -> Result<(), RecordError> {
        Ok(self.vault.blobs().sync()?)
    }

    /// Ids of every resource of a type (including deleted and erased ones).
    pub fn ids(&self, resource_type: &str) -> Result<Vec<String>, RecordError> {
        let rt = self.db.begin_read().map_err(db)?;
        let t = rt.open_table(HEADS).map_err(db)?;
        let prefix = format!("{resource_type}/");
        let mut out = Vec::new();
        for item in t.range(prefix.as_str()..).map_err(db)? {
            let (k, _) = item.map_err(db)?;
            let Some(id) = k.value().strip_prefix(&prefix) else {
                break;
            };
            out.push(id.to_string());
        }
        self.drop_hidden(resource_type, &mut out);
        Ok(out)
    }

    /// Ids of a patient's resources of one type.
    pub fn patient_ids(
        &self,
        patient: &str,
        resource_type: &str,
    ) -> Result<Vec<String>, RecordError> {
        let rt = self.db.begin_read().map_err(db)?;
        let t = rt.open_table(BY_PATIENT).map_err(db)?;
        let mut out = Vec::new();
        for item in t.range((patient, resource_type, "")..).map_err(db)? {
            let (k, _) = item.map_err(db)?;
            let (p, ty, id) = k.value();
            if p != patient || ty != resource_type {
                break;
            }
            out.push(id.to_string());
        }
        self.drop_hidden(resource_type, &mut out);
        Ok(out)
    }

    /// Deletes a resource (FHIR semantics: a deletion version; history stays readable).
    pub fn delete(
        &self,
        resource_type: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let _guard = self.writing.lock(vec![format!("{resource_type}/{id}")]);
        let w = self.deletion(resource_type, id, now_ms)?;
        self.put_grouped(Entry::of(&w, true, false))?;
        Ok(w)
    }

    /// The deletion version of a resource (not yet written).
    fn deletion(&self, resource_type: &str, id: &str, now_ms: u64) -> Result<Written, RecordError> {
        let key = format!("{resource_type}/{id}");
        let cur = self
            .head(&key)?
            .ok_or_else(|| RecordError::NotFound(key.clone()))?;
        let prev = self.meta(resource_type, id, Some(cur))?;
        if prev.erased {
            return Err(RecordError::Erased(key));
        }
        let meta = VersionMeta {
            version: cur + 1,
            last_updated_ms: now_ms,
            deleted: true,
            commitment: None,
            sealed: None,
            anchor: None,
            ..prev.clone()
        };
        Ok(Written {
            resource_type: resource_type.into(),
            id: id.into(),
            meta,
            resource: None,
            stored: Some(prev),
            blob_mark: 0,
            plaintext: Vec::new(),
        })
    }

    /// The current version.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Value, RecordError> {
        let meta = self.meta(resource_type, id, None)?;
        self.read_version(resource_type, id, &meta)
    }

    /// One version.
    pub fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Value, RecordError> {
        let meta = self.meta(resource_type, id, Some(version))?;
        self.read_version(resource_type, id, &meta)
    }

    /// The content of the version `meta` describes (from [`RecordStore::meta`]), without
    /// looking the metadata up again.
    pub fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        meta: &VersionMeta,
    ) -> Result<Value, RecordError> {
        let key = format!("{resource_type}/{id}");
        if meta.erased {
            return Err(RecordError::Erased(key));
        }
        if meta.deleted {
            return Err(RecordError::Deleted(key));
        }
        self.content(resource_type, id, meta)?
            .ok_or(RecordError::Erased(key))
    }

    /// All versions, newest first.
    pub fn history(&self, resource_type: &str, id: &str) -> Result<Vec<HistoryEntry>, RecordError> {
        let key = format!("{resource_type}/{id}");
        let cur = self
            .head(&key)?
            .ok_or_else(|| RecordError::NotFound(key.clone()))?;
        let mut out = Vec::new();
        for v in (1..=cur).rev() {
            let meta = self.meta(resource_type, id, Some(v))?;
            let resource = if meta.erased || meta.deleted {
                None
            } else {
                self.content(resource_type, id, &meta)?
            };
            out.push(HistoryEntry { meta, resource });
        }
        Ok(out)
    }

    /// Erases every version: ciphertext destroyed, data keys dropped; the metadata keeps only
    /// what the ledger already has (version, time, commitment).
    ///
    /// `tombstone` is called first, under the resource's write lock, with the commitments of
    /// the versions about to be destroyed (to put their tombstone on the ledger); only if it
    /// succeeds is anything destroyed. So a destroyed version always has its tombstone, and a
    /// failed tombstone leaves the resource as it was (the erasure can be asked again).
    /// Returns those commitments and what `tombstone` returned. A resource with nothing left
    /// to destroy is [`RecordError::Erased`].
    pub fn erase<T, E: From<RecordError>>(
        &self,
        resource_type: &str,
        id: &str,
        tombstone: impl FnOnce(&[Hash]) -> Result<T, E>,
    ) -> Result<(Vec<Hash>, T), E> {
        let key = format!("{resource_type}/{id}");
        let _guard = self.writing.lock(vec![key.clone()]);
        let cur = self
            .head(&key)?
            .ok_or_else(|| RecordError::NotFound(key.clone()))?;
        let mut metas = Vec::new();
        {
            let rt = self.db.begin_read().map_err(db)?;
            let t = rt.open_table(VERSIONS).map_err(db)?;
            for v in 1..=cur {
                if let Some(g) = t.get((key.as_str(), v)).map_err(db)? {
                    metas.push((v, VersionMeta::try_from_slice(g.value()).map_err(db)?));
                }
            }
        }
        let doomed: Vec<Hash> = metas
            .iter()
            .filter_map(|(_, m)| m.sealed.as_ref().map(|s| s.commitment))
            .collect();
        if doomed.is_empty() && metas.iter().any(|(_, m)| m.erased) {
            self.finish_erasures(Some(&key))?;
            return Err(RecordError::Erased(key).into());
        }
        let out = tombstone(&doomed)?;
        // The metadata forgets the wrapped data keys first (durably, with the ciphertexts to
        // delete recorded as pending), then the ciphertext goes.
        let mut txn = self.db.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        {
            let mut t = txn.open_table(VERSIONS).map_err(db)?;
            let mut pending = txn.open_table(ERASING).map_err(db)?;
            for (v, mut meta) in metas {
                if let Some(s) = meta.sealed.take() {
                    let ctx = Self::context(resource_type, id, &meta);
                    pending
                        .insert(
                            (key.as_str(), v),
                            borsh::to_vec(&(ctx, s.blob)).map_err(db)?.as_slice(),
                        )
                        .map_err(db)?;
                }
                meta.erased = true;
                meta.categories.clear();
                meta.labels.clear();
                t.insert(
                    (key.as_str(), v),
                    borsh::to_vec(&meta).map_err(db)?.as_slice(),
                )
                .map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        // The keys are gone: the erasure holds. A ciphertext the blob store cannot delete now
        // stays pending (see `pending_erasures`) and is deleted by a later try.
        let _ = self.finish_erasures(Some(&key));
        Ok((doomed, out))
    }

    /// Deletes the ciphertexts of erased versions still pending (of the resource `only`, as
    /// `type/id`, or all). Returns how many were deleted; the first blob-store error, if any,
    /// after removing those that were.
    pub fn finish_erasures(&self, only: Option<&str>) -> Result<usize, RecordError> {
        let mut todo = Vec::new();
        {
            let rt = self.db.begin_read().map_err(db)?;
            let t = rt.open_table(ERASING).map_err(db)?;
            let rows = match only {
                Some(k) => t.range((k, 0)..=(k, u64::MAX)).map_err(db)?,
                None => t.iter().map_err(db)?,
            };
            for row in rows {
                let (k, v) = row.map_err(db)?;
                let (key, version) = k.value();
                let (ctx, blob): (RecordContext, carechain_vault::ContentId) =
                    borsh::from_slice(v.value()).map_err(db)?;
                todo.push((key.to_string(), version, ctx, blob));
            }
        }
        let mut done = Vec::new();
        let mut failed = None;
        for (key, version, ctx, blob) in todo {
            match self.vault.erase_blob(&ctx, &blob) {
                Ok(()) => done.push((key, version)),
                Err(e) => {
                    failed.get_or_insert(RecordError::from(e));
                }
            }
        }
        if !done.is_empty() {
            let txn = self.db.begin_write().map_err(db)?;
            {
                let mut t = txn.open_table(ERASING).map_err(db)?;
                for (key, version) in &done {
                    t.remove((key.as_str(), *version)).map_err(db)?;
                }
            }
            txn.commit().map_err(db)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done.len()),
        }
    }

    /// How many erased versions' ciphertexts are still waiting to be deleted.
    pub fn pending_erasures(&self) -> Result<u64, RecordError> {
        let rt = self.db.begin_read().map_err(db)?;
        redb::ReadableTableMetadata::len(&rt.open_table(ERASING).map_err(db)?).map_err(db)
    }
}
