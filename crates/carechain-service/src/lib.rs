//! The records service: what the `/fhir` API does for each request. It authenticates the caller
//! (bearer tokens from `private_key_jwt` assertions, SMART v2 scopes), takes one access
//! decision per record touched (`access`: scopes, role, the patients' consents, break-glass),
//! performs the interaction on the encrypted record store, anchors every written version on
//! the ledger (only a salted commitment leaves the node), and records an audit event per
//! patient touched — allowed or denied — that is itself encrypted, readable by the patient,
//! and anchored so that it can be verified offline against a signed checkpoint.
//!
//! This file is the facade: the [`Service`] and its state. Each feature is a module:
//! `session` (tokens, sign-in), `identity` (who a patient is: claims, activation codes),
//! `access` (the decision) and `authorize` (asking it, auditing the answer), `breakglass`,
//! `read` (read, vread, history), `write` (create, update, delete), `bundle` (batch and
//! transaction), `conditional`, `search`, `everything`, `peer` (records across nodes), `erase`, `envelope`, `receipt` (access log, receipt
//! verification), `audit` and `anchor`.

pub mod access;
mod anchor;
mod audit;
pub mod auth;
mod authorize;
mod breakglass;
mod bundle;
mod conditional;
mod envelope;
mod erase;
mod error;
mod everything;
mod identity;
mod ledger_consent;
mod node_tx;
pub mod peer;
mod read;
mod receipt;
mod search;
mod session;
mod write;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use borsh::BorshDeserialize;
use carechain_crypto::{Did, Hash, SecretKey, sha256_parts};
use carechain_fhir::consent::Policy;
use carechain_node::Node;
use carechain_records::{RecordStore, Written};
use carechain_state::{Identity, StateView, identity_key};
use carechain_vault::{BlobStore, EncryptionKey, PublicEncryptionKey};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

pub use audit::{Interaction, Outcome};
pub use auth::{AuthError, Scope, Session, Tokens, make_assertion, verify_assertion, web_scopes};
pub use breakglass::{BREAK_GLASS_TTL_MS, MAX_REASON};
pub use carechain_records::claim_message;
pub use envelope::open_envelope;
pub use error::{ErrorKind, ServiceError};
pub use identity::ClaimRequest;
pub use ledger_consent::{LEDGER_SYSTEM, ledger_rules};
pub use node_tx::NodeTx;
pub use receipt::{
    ReceiptTrust, audit_commitment, log_inclusion, verify_logged, verify_receipt, with_inclusion,
};
pub use search::parse_since;

const DID_SYSTEM: &str = "urn:ietf:rfc:3986";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// How an audit event's `outcomeDesc` starts when the access was by break-glass.
const BREAK_GLASS: &str = "break-glass";
/// The meta tag that marks a Consent recorded by staff on the patient's behalf.
pub const DELEGATION_SYSTEM: &str = "http://carechain.example/fhir/CodeSystem/consent-delegation";

/// Whether an audit event records an access by break-glass (the patient's alerts).
pub fn is_break_glass(event: &Value) -> bool {
    event["outcomeDesc"]
        .as_str()
        .is_some_and(|d| d.starts_with(BREAK_GLASS))
}

/// Why the caller is asking (purpose of use), and the break-glass reason if any.
#[derive(Clone, Debug)]
pub struct Purpose {
    /// v3 ActReason code; `TREAT` if the caller gives none.
    pub code: String,
    /// Given with `ETREAT` to open a break-glass grant (at most [`MAX_REASON`] bytes).
    pub break_glass_reason: Option<String>,
}

impl Purpose {
    /// Treatment, without break-glass.
    pub fn treatment() -> Purpose {
        Purpose {
            code: "TREAT".into(),
            break_glass_reason: None,
        }
    }
}

/// A successful read or write, with what the response needs.
#[derive(Clone, Debug)]
pub struct Served {
    /// The resource (absent for a deletion).
    pub resource: Option<Value>,
    /// Its version.
    pub version: u64,
    /// The anchoring transaction (writes).
    pub tx: Option<Hash>,
    /// Whether access was by break-glass.
    pub break_glass: bool,
}

impl Served {
    /// The resource's id ("" for a deletion).
    pub fn id(&self) -> &str {
        self.resource
            .as_ref()
            .and_then(|r| r["id"].as_str())
            .unwrap_or_default()
    }
}

/// The service.
pub struct Service {
    node: Arc<Node>,
    key: SecretKey,
    records: RecordStore<Box<dyn BlobStore>>,
    tokens: Tokens,
    /// Browser sign-in challenges (stateless until answered).
    challenges: auth::Challenges,
    /// The anchoring requests waiting to be signed and submitted together, with the node
    /// key's next nonce (see `anchor.rs`).
    anchoring: (Mutex<anchor::Queue>, parking_lot::Condvar),
    /// Each patient's active consents and their compiled policy (`None`: they do not compile,
    /// so everything but the owner is denied). Replaced under the write lock on every Consent
    /// write, so a revoke takes effect for the next request.
    consents: RwLock<BTreeMap<String, PatientConsents>>,
    /// The proven links between identities and Patient records (`identity.rs`).
    links: RwLock<identity::Links>,
    /// Break-glass grants, per practitioner and patient.
    glass: breakglass::Grants,
    /// Serializes conditional creates (a check-then-create must not race another).
    conditional: Mutex<()>,
    token_audience: String,
    audit_queue: Arc<audit::AuditQueue>,
    /// The key of patient pseudonyms on the ledger (derived from the node's key-encryption
    /// seed: without it, a pseudonym links to nobody).
    pseudonym_key: [u8; 32],
    /// The node's did as text (the observer of every audit event).
    node_did: String,
    /// How this node reaches other nodes (`peer`), once the HTTP edge sets it.
    transport: RwLock<Option<Arc<dyn peer::Transport>>>,
    /// Nonces of node requests served recently (each is served once).
    peer_nonces: peer::Nonces,
    /// The node's data directory.
    dir: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.drain_audit_here();
    }
}

/// One patient's consents, as stored and as compiled.
#[derive(Default)]
struct PatientConsents {
    resources: Vec<Value>,
    policy: Option<Arc<Policy>>,
}

impl PatientConsents {
    fn recompile(&mut self) {
        self.policy = Policy::compile(&self.resources).ok().map(Arc::new);
    }
}

/// The did a Patient resource names in `identifier` (system `urn:ietf:rfc:3986`): only ever
/// used to check a self-registration, never to link.
fn did_of(v: &Value) -> Option<Did> {
    v["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == DID_SYSTEM)
        .and_then(|i| i["value"].as_str()?.parse().ok())
}

impl Service {
    /// Opens the service: records under `dir` with their ciphertexts in `blobs` (default: pack
    /// files in `dir/blobs`), data keys wrapped to the node key-encryption key derived from
    /// `kek_seed`, anchors signed by `key` (the node's ledger identity).
    pub fn open(
        node: Arc<Node>,
        key: SecretKey,
        dir: &Path,
        kek_seed: &[u8; 32],
        token_audience: &str,
        blobs: Option<Box<dyn BlobStore>>,
    ) -> Result<Arc<Service>, ServiceError> {
        let blobs = match blobs {
            Some(b) => b,
            None => Box::new(
                carechain_vault::PackBlobStore::open(&dir.join("blobs"))
                    .map_err(|e| ServiceError::from(carechain_records::RecordError::from(e)))?,
            ),
        };
        let records = RecordStore::open_with(dir, EncryptionKey::from_seed(kek_seed), blobs)?;
        let node_did = key.public().did().to_string();
        let svc = Service {
            node,
            key,
            records,
            tokens: Tokens::default(),
            challenges: auth::Challenges::new(
                &sha256_parts(&[b"carechain/v1/challenge-mac-key\0", kek_seed]).0,
            ),
            anchoring: Default::default(),
            consents: RwLock::new(BTreeMap::new()),
            links: RwLock::new(identity::Links::default()),
            glass: breakglass::Grants::default(),
            conditional: Mutex::new(()),
            token_audience: token_audience.to_string(),
            audit_queue: Arc::new(audit::AuditQueue::new()),
            pseudonym_key: sha256_parts(&[b"carechain/v1/pseudonym-key\0", kek_seed]).0,
            node_did,
            transport: RwLock::new(None),
            peer_nonces: peer::Nonces::default(),
            dir: dir.to_path_buf(),
        };
        // Creates a crash left between their metadata commit and their anchor: keep those
        // whose anchor is durable, remove the others (they were never acknowledged).
        let (kept, removed) = svc.records.settle_pending(|tx| svc.is_durable(tx))?;
        if kept + removed > 0 {
            tracing::info!(kept, removed, "settled creates pending at the last stop");
        }
        // Erased versions whose ciphertext the blob store could not delete yet (their keys are
        // gone): the open retried them; a later erasure of the resource or open tries again.
        let erasing = svc.records.pending_erasures()?;
        if erasing > 0 {
            tracing::warn!(erasing, "erased ciphertexts not deleted yet; retried later");
        }
        // The in-memory indexes: proven links (from their table, never from Patient
        // resources) and consents by patient.
        svc.load_links()?;
        for id in svc.records.ids("Consent")? {
            if let Ok(c) = svc.records.read("Consent", &id) {
                svc.index_consent(&id, Some(c));
            }
        }
        let svc = Arc::new(svc);
        audit::spawn_writer(svc.audit_queue.clone(), Arc::downgrade(&svc))
            .map_err(|e| ServiceError::internal("cannot start the audit writer", e))?;
        Ok(svc)
    }

    /// The record store.
    pub fn records(&self) -> &RecordStore<Box<dyn BlobStore>> {
        &self.records
    }

    /// The token endpoint's audience (its URL).
    pub fn token_audience(&self) -> &str {
        &self.token_audience
    }

    /// The node's did (who signs anchors and certificates).
    pub fn node_did(&self) -> &str {
        &self.node_did
    }

    /// The node's data directory (services built on this one keep their stores in it).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Signs `message` with the node key under `ns` (webhook deliveries, notices).
    pub fn sign(
        &self,
        ns: carechain_crypto::Namespace,
        message: &[u8],
    ) -> carechain_crypto::Signature {
        self.key.sign(ns, message)
    }

    fn identity(&self, did: &Did) -> Option<Identity> {
        let snap = self.node.snapshot().ok()?;
        let raw = snap.get(&identity_key(&did.public_key())).ok()??;
        Identity::try_from_slice(&raw).ok()
    }

    fn index_consent(&self, id: &str, consent: Option<Value>) {
        let mut idx = self.consents.write();
        for pc in idx.values_mut() {
            let before = pc.resources.len();
            pc.resources.retain(|c| c["id"] != id);
            if pc.resources.len() != before {
                pc.recompile();
            }
        }
        // A Consent the ledger holds is the ledger's to enforce (`ledger_consent.rs`).
        let consent =
            consent.filter(|c| self.ledger_status(c) == ledger_consent::LedgerStatus::Local);
        if let Some(c) = consent
            && let Some(p) = c["patient"]["reference"]
                .as_str()
                .and_then(carechain_fhir::patient_reference)
        {
            let pc = idx.entry(p).or_default();
            pc.resources.push(c);
            pc.recompile();
        }
    }

    /// Who a record's data key is wrapped to beside the node: its patient, when she is a
    /// proven identity on the ledger (her current key, in X25519 form), so that she can
    /// decrypt her own records without the node.
    fn recipients(&self, patient: Option<&str>) -> Vec<PublicEncryptionKey> {
        patient
            .and_then(|p| self.linked_did(p))
            .map(|d| self.encryption_keys(&d))
            .unwrap_or_default()
    }

    /// The encryption key of an active identity (its current ledger key in X25519 form).
    fn encryption_keys(&self, did: &Did) -> Vec<PublicEncryptionKey> {
        self.identity(did)
            .filter(|i| i.active)
            .and_then(|i| i.current_key.x25519().ok())
            .map(PublicEncryptionKey)
            .into_iter()
            .collect()
    }
}

/// What the ledger gets for a deletion version: a hash of the resource and version only.
fn deletion_tombstone(w: &Written) -> Hash {
    carechain_crypto::sha256_parts(&[
        b"carechain/v1/deletion\0",
        format!("{}/{}", w.resource_type, w.id).as_bytes(),
        &w.meta.version.to_le_bytes(),
    ])
}
