//! The records service: what the `/fhir` API does for each request. It authenticates the caller
//! (bearer tokens from `private_key_jwt` assertions, SMART v2 scopes), decides access with the
//! patient's consents (scopes narrow, never widen), performs the interaction on the encrypted
//! record store, anchors every written version on the ledger (only a salted commitment leaves
//! the node), and records an audit event — allowed or denied — that is itself encrypted,
//! readable by the patient, and anchored so that it can be verified offline against a signed
//! checkpoint.

mod anchor;
mod audit;
pub mod auth;
mod envelope;
mod search;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use borsh::BorshDeserialize;
use carechain_crypto::{Did, Hash, SecretKey, sha256_parts};
use carechain_fhir::consent::{Action, Actor, Basis, Decision, Policy, Request};
use carechain_node::{Node, now_ms};
use carechain_records::{Anchor, RecordError, RecordStore, VersionMeta, Written, format_instant};
use carechain_state::{Identity, StateView, identity_key};
use carechain_types::{Payload, Role, encode};
use carechain_vault::{BlobStore, EncryptionKey, PublicEncryptionKey};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

pub use auth::{AuthError, Scope, Session, Tokens, make_assertion, verify_assertion};
pub use envelope::open_envelope;
pub use search::parse_since;

const DID_SYSTEM: &str = "urn:ietf:rfc:3986";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const AUDIT_NAMESPACE: &[u8] = b"carechain/v1/audit-event\0";
/// How an audit event's `outcomeDesc` starts when the access was by break-glass.
const BREAK_GLASS: &str = "break-glass";

/// The audit note of an access by break-glass: the marker, the reason, then `note`.
fn break_glass_note(purpose: &Purpose, note: &str) -> String {
    let reason = purpose.break_glass_reason.as_deref().unwrap_or_default();
    if note.is_empty() {
        format!("{BREAK_GLASS}: {reason}")
    } else {
        format!("{BREAK_GLASS}: {reason}; {note}")
    }
}

/// Whether an audit event records an access by break-glass (the patient's alerts).
pub fn is_break_glass(event: &Value) -> bool {
    event["outcomeDesc"]
        .as_str()
        .is_some_and(|d| d.starts_with(BREAK_GLASS))
}

/// A failure with its HTTP status and OperationOutcome issue code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// OperationOutcome `issue.code` (`invalid`, `not-found`, `forbidden`, `conflict`, ...).
    pub code: &'static str,
    /// Diagnostics (never health data).
    pub message: String,
    /// Validation issues, if any (`expression`, `diagnostics`).
    pub issues: Vec<(String, String)>,
}

impl ServiceError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError {
            status,
            code,
            message: message.into(),
            issues: vec![],
        }
    }

    /// The FHIR OperationOutcome for this error.
    pub fn outcome(&self) -> Value {
        let mut issues: Vec<Value> = self
            .issues
            .iter()
            .map(|(path, msg)| json!({"severity": "error", "code": self.code, "diagnostics": msg, "expression": [path]}))
            .collect();
        if issues.is_empty() {
            issues
                .push(json!({"severity": "error", "code": self.code, "diagnostics": self.message}));
        }
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

impl From<RecordError> for ServiceError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Invalid(issues) => ServiceError {
                status: 422,
                code: "processing",
                message: "resource does not conform to FHIR R4".into(),
                issues: issues.into_iter().map(|i| (i.path, i.message)).collect(),
            },
            RecordError::BadRequest(m) => ServiceError::new(400, "invalid", m),
            RecordError::NotFound(m) => {
                ServiceError::new(404, "not-found", format!("{m} not found"))
            }
            RecordError::Deleted(m) => {
                ServiceError::new(410, "deleted", format!("{m} was deleted"))
            }
            RecordError::Erased(m) => ServiceError::new(410, "deleted", format!("{m} was erased")),
            RecordError::VersionConflict { current } => ServiceError::new(
                412,
                "conflict",
                format!("version conflict: current version is {current}"),
            ),
            other => {
                tracing::error!(error = %other, "record store failure");
                ServiceError::new(500, "exception", "internal error")
            }
        }
    }
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        ServiceError::new(401, "login", e.to_string())
    }
}

/// Why the caller is asking (purpose of use), and the break-glass reason if any.
#[derive(Clone, Debug)]
pub struct Purpose {
    /// v3 ActReason code; `TREAT` if the caller gives none.
    pub code: String,
    /// Required with `ETREAT`.
    pub break_glass_reason: Option<String>,
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

/// The service.
pub struct Service {
    node: Arc<Node>,
    key: SecretKey,
    records: RecordStore<Box<dyn BlobStore>>,
    tokens: Tokens,
    /// Browser sign-in challenges waiting for their signature.
    challenges: auth::Challenges,
    /// The anchoring requests waiting to be signed and submitted together, with the node
    /// key's next nonce (see `anchor.rs`).
    anchoring: (Mutex<anchor::Queue>, parking_lot::Condvar),
    /// Each patient's active consents and their compiled policy (`None`: they do not compile,
    /// so everything but the owner is denied). Replaced under the write lock on every Consent
    /// write, so a revoke takes effect for the next request.
    consents: RwLock<BTreeMap<String, PatientConsents>>,
    patients: RwLock<BTreeMap<Did, String>>,
    /// The reverse: `Patient/<id>` → the patient's did (to wrap their records' keys to them).
    patient_dids: RwLock<BTreeMap<String, Did>>,
    /// Serializes conditional creates (a check-then-create must not race another).
    conditional: Mutex<()>,
    token_audience: String,
    audit_queue: Arc<audit::AuditQueue>,
    /// The key of patient pseudonyms on the ledger (derived from the node's key-encryption
    /// seed: without it, a pseudonym links to nobody).
    pseudonym_key: [u8; 32],
    /// The node's did as text (the observer of every audit event).
    node_did: String,
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

/// `Type/id` of a request URL naming one resource.
fn type_and_id(url: &str) -> Option<(String, String)> {
    let (t, id) = url.split_once('/')?;
    (carechain_fhir::model().is_resource(t) && !id.is_empty() && !id.contains(['/', '?']))
        .then(|| (t.to_string(), id.to_string()))
}

/// What the ledger gets for a deletion version: a hash of the resource and version only.
fn deletion_tombstone(w: &Written) -> Hash {
    carechain_crypto::sha256_parts(&[
        b"carechain/v1/deletion\0",
        format!("{}/{}", w.resource_type, w.id).as_bytes(),
        &w.meta.version.to_le_bytes(),
    ])
}

/// A did:key from a sign-in request.
fn parse_did(did: &str) -> Result<Did, ServiceError> {
    did.trim()
        .parse()
        .map_err(|_| ServiceError::new(400, "invalid", "not a did:key"))
}

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
                    .map_err(|e| ServiceError::from(RecordError::from(e)))?,
            ),
        };
        let records = RecordStore::open_with(dir, EncryptionKey::from_seed(kek_seed), blobs)?;
        let node_did = key.public().did().to_string();
        let svc = Service {
            node,
            key,
            records,
            tokens: Tokens::default(),
            challenges: auth::Challenges::default(),
            anchoring: Default::default(),
            consents: RwLock::new(BTreeMap::new()),
            patients: RwLock::new(BTreeMap::new()),
            patient_dids: RwLock::new(BTreeMap::new()),
            conditional: Mutex::new(()),
            token_audience: token_audience.to_string(),
            audit_queue: Arc::new(audit::AuditQueue::new()),
            pseudonym_key: sha256_parts(&[b"carechain/v1/pseudonym-key\0", kek_seed]).0,
            node_did,
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
        // Rebuild the in-memory indexes (consents by patient, patient by did) from the store.
        for id in svc.records.ids("Patient")? {
            if let Ok(p) = svc.records.read("Patient", &id)
                && let Some(d) = did_of(&p)
            {
                svc.patients.write().insert(d, format!("Patient/{id}"));
                svc.patient_dids.write().insert(format!("Patient/{id}"), d);
            }
        }
        for id in svc.records.ids("Consent")? {
            if let Ok(c) = svc.records.read("Consent", &id) {
                svc.index_consent(&id, Some(c));
            }
        }
        let svc = Arc::new(svc);
        audit::spawn_writer(svc.audit_queue.clone(), Arc::downgrade(&svc))
            .map_err(|_| ServiceError::new(500, "exception", "cannot start the audit writer"))?;
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

    fn identity(&self, did: &Did) -> Option<Identity> {
        let snap = self.node.snapshot().ok()?;
        let raw = snap.get(&identity_key(&did.public_key())).ok()??;
        Identity::try_from_slice(&raw).ok()
    }

    /// `client_credentials` with a `private_key_jwt` assertion: returns (token, expires_in s,
    /// granted scope string).
    pub fn issue_token(
        &self,
        assertion: &str,
        scope: &str,
    ) -> Result<(String, u64, String), ServiceError> {
        let now = now_ms();
        let a = verify_assertion(assertion, &self.token_audience, now / 1000, |d| {
            self.identity(d).filter(|i| i.active).map(|i| i.current_key)
        })?;
        let ident = self.identity(&a.client).ok_or(AuthError::UnknownClient)?;
        let mut scopes = Vec::new();
        for s in scope.split_whitespace() {
            let sc = Scope::parse(s)?;
            // Patients get patient/ scopes only; system/ scopes are for organizations.
            let allowed = match ident.role {
                Role::Patient => sc.context == "patient",
                Role::Organization | Role::Operator => true,
                _ => sc.context != "system",
            };
            if allowed {
                scopes.push(sc);
            }
        }
        if scopes.is_empty() {
            return Err(ServiceError::new(
                400,
                "invalid",
                "no requested scope can be granted",
            ));
        }
        let organization = match ident.role {
            Role::Organization => Some(ident.id.did()),
            _ => ident.parent.map(|p| p.did()),
        };
        let granted = scopes
            .iter()
            .map(|s| format!("{}/{}.{}", s.context, s.resource_type, s.permissions))
            .collect::<Vec<_>>()
            .join(" ");
        let session = Session {
            did: a.client,
            role: ident.role,
            organization,
            scopes,
            expires_ms: now + 3_600_000,
        };
        let token = self.tokens.issue(session)?;
        Ok((token, 3600, granted))
    }

    /// A sign-in challenge for a browser: the text the identity signs (WebCrypto Ed25519,
    /// over the `Challenge` namespace) to get a session. Only active identities get one.
    pub fn login_challenge(&self, did: &str) -> Result<String, ServiceError> {
        let did = parse_did(did)?;
        if !self.identity(&did).is_some_and(|i| i.active) {
            return Err(AuthError::UnknownClient.into());
        }
        Ok(self
            .challenges
            .issue(&did, &self.token_audience, now_ms())?)
    }

    /// Answers a sign-in challenge: `signature` (hex, 64 bytes) must verify under the
    /// identity's current key over `Challenge` ‖ `challenge`. Returns a bearer token for a
    /// browser session (8 hours; scopes by role, see [`auth::web_scopes`]) and its session.
    pub fn login(
        &self,
        did: &str,
        challenge: &str,
        signature: &str,
    ) -> Result<(String, Session), ServiceError> {
        let did = parse_did(did)?;
        let now = now_ms();
        self.challenges.take(&did, challenge, now)?;
        let sig = hex::decode(signature.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(carechain_crypto::Signature)
            .ok_or(AuthError::BadSignature)?;
        let ident = self
            .identity(&did)
            .filter(|i| i.active)
            .ok_or(AuthError::UnknownClient)?;
        ident
            .current_key
            .verify(
                carechain_crypto::Namespace::Challenge,
                challenge.as_bytes(),
                &sig,
            )
            .map_err(|_| AuthError::BadSignature)?;
        let session = Session {
            did,
            role: ident.role,
            organization: match ident.role {
                Role::Organization => Some(ident.id.did()),
                _ => ident.parent.map(|p| p.did()),
            },
            scopes: auth::web_scopes(ident.role),
            expires_ms: now + 8 * 3_600_000,
        };
        let token = self.tokens.issue(session.clone())?;
        Ok((token, session))
    }

    /// Ends a session: its token stops working at once.
    pub fn logout(&self, bearer: &str) {
        self.tokens.revoke(bearer);
    }

    /// The patient record (`Patient/<id>`) a session's identity is, if it is one.
    pub fn patient_reference(&self, s: &Session) -> Option<String> {
        self.patients.read().get(&s.did).cloned()
    }

    /// The session of a bearer token.
    pub fn session(&self, bearer: Option<&str>) -> Result<Session, ServiceError> {
        let t = bearer.ok_or(AuthError::BadToken)?;
        let s = self.tokens.session(t, now_ms())?;
        // Deactivated after the token was issued: refused at once.
        if !self.identity(&s.did).is_some_and(|i| i.active) {
            return Err(AuthError::UnknownClient.into());
        }
        Ok(s)
    }

    fn actor(&self, s: &Session) -> Actor {
        let reference = self
            .patients
            .read()
            .get(&s.did)
            .cloned()
            .unwrap_or_else(|| s.did.to_string());
        Actor {
            reference,
            organization: s.organization.map(|o| o.to_string()),
            practitioner: s.role == Role::Practitioner,
        }
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
        if let Some(c) = consent
            && let Some(p) = c["patient"]["reference"].as_str()
        {
            let pc = idx.entry(p.to_string()).or_default();
            pc.resources.push(c);
            pc.recompile();
        }
    }

    fn decide(
        &self,
        s: &Session,
        purpose: &Purpose,
        action: Action,
        rt: &str,
        meta: &VersionMeta,
    ) -> Decision {
        let actor = self.actor(s);
        let Some(patient) = &meta.patient else {
            // Not a patient's record (Organization, Practitioner, ...): any authenticated caller.
            return Decision::Permit(Basis::Owner);
        };
        let policy = match self.consents.read().get(patient) {
            None => Arc::new(Policy::default()),
            Some(PatientConsents {
                policy: Some(p), ..
            }) => p.clone(),
            Some(PatientConsents { policy: None, .. }) => {
                return if self.actor(s).reference == *patient {
                    Decision::Permit(Basis::Owner)
                } else {
                    Decision::Deny(Basis::NoConsent)
                };
            }
        };
        let now = (now_ms() / 1000) as i64;
        policy.decide(&Request {
            actor: &actor,
            action,
            purpose: &purpose.code,
            resource_type: rt,
            categories: &meta.categories,
            security_labels: &meta.labels,
            patient,
            author_organization: meta.author.as_deref(),
            now,
        })
    }

    /// Who a record's data key is wrapped to beside the node: the patient, when they are an
    /// identity on the ledger (their current key, in X25519 form), so that they can decrypt
    /// their own records without the node.
    fn recipients(
        &self,
        rt: &str,
        patient: Option<&str>,
        resource: &Value,
    ) -> Vec<PublicEncryptionKey> {
        let did = if rt == "Patient" {
            did_of(resource)
        } else {
            patient.and_then(|p| self.patient_dids.read().get(p).copied())
        };
        did.map(|d| self.encryption_keys(&d)).unwrap_or_default()
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

    /// Anchors written versions (new content or deletions) in order and waits until their
    /// blocks are durable: the anchors the record store then commits with the versions.
    fn anchor_versions(&self, ws: &[Written]) -> Result<Vec<Anchor>, ServiceError> {
        let (payloads, commitments): (Vec<Payload>, Vec<Hash>) = ws
            .iter()
            .map(|w| {
                let (kind, c) = match w.meta.commitment {
                    Some(c) => ("record", c),
                    None => ("deletion", deletion_tombstone(w)),
                };
                (self.record_anchor(kind, w, c), c)
            })
            .unzip();
        let txs = self.anchor_many(payloads)?;
        Ok(txs
            .into_iter()
            .zip(commitments)
            .map(|(tx, commitment)| Anchor {
                tx,
                commitment,
                salt: None,
                batch: None,
            })
            .collect())
    }

    /// Writes one version (an update or a deletion) anchored first: its metadata is
    /// committed only once its anchor is durable, so no crash leaves a visible version
    /// without one, and a failed anchor leaves the previous version current. Returns the
    /// version with its anchoring transaction.
    fn write_one_anchored(
        &self,
        item: carechain_records::NewVersion,
        author: Option<&str>,
    ) -> Result<(Written, Hash), ServiceError> {
        let mut ws =
            self.records
                .write_many(vec![item], author, now_ms(), |ws: &[Written]| {
                    self.anchor_versions(ws)
                })?;
        let w = ws
            .pop()
            .ok_or_else(|| ServiceError::new(500, "exception", "no version written"))?;
        let tx = w.meta.anchor.as_ref().map(|a| a.tx).unwrap_or_default();
        Ok((w, tx))
    }

    /// The SMART scope check of every interaction: `perm` (`c r u d s`) on `rt`. A refusal is
    /// audited as `interaction`, with the BALP action that `perm` stands for.
    #[allow(clippy::too_many_arguments)]
    fn check_scope(
        &self,
        s: &Session,
        purpose: &Purpose,
        interaction: &str,
        rt: &str,
        perm: char,
        what: &str,
        patient: Option<&str>,
    ) -> Result<(), ServiceError> {
        if s.allows(rt, perm) {
            return Ok(());
        }
        let action = match perm {
            'c' => "C",
            'u' => "U",
            'd' => "D",
            's' => "E",
            _ => "R",
        };
        Err(self.refuse(
            s,
            purpose,
            interaction,
            action,
            what,
            patient,
            "denied: outside the token's scopes",
            format!("the token's scopes do not allow '{perm}' on {rt}"),
        ))
    }

    /// Who may delete (or `$erase` is separate): the patient, the authoring organization or an
    /// operator — never audit events. Checks the scope too; a refusal is audited. Returns the
    /// current version's metadata.
    fn may_delete(
        &self,
        s: &Session,
        purpose: &Purpose,
        interaction: &str,
        rt: &str,
        id: &str,
    ) -> Result<VersionMeta, ServiceError> {
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, None)?;
        self.check_scope(
            s,
            purpose,
            interaction,
            rt,
            'd',
            &what,
            meta.patient.as_deref(),
        )?;
        let owner = self.is_owner(s, meta.patient.as_deref());
        let author = meta.author.is_some() && meta.author == s.organization.map(|o| o.to_string());
        if !(owner || author || s.role == Role::Operator) || rt == "AuditEvent" {
            return Err(self.refuse(
                s,
                purpose,
                interaction,
                "D",
                &what,
                meta.patient.as_deref(),
                "denied: not allowed to delete",
                format!(
                    "only the patient, the authoring organization or an operator may delete {what}"
                ),
            ));
        }
        Ok(meta)
    }

    /// The read gate shared by read, vread and history: consent decides; break-glass needs a
    /// reason. A refusal is audited. Returns whether access is by break-glass.
    fn gate_read(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        meta: &VersionMeta,
        interaction: &str,
        what: &str,
    ) -> Result<bool, ServiceError> {
        self.consent_gate(s, purpose, rt, meta)
            .map_err(|(note, message)| {
                self.refuse(
                    s,
                    purpose,
                    interaction,
                    "R",
                    what,
                    meta.patient.as_deref(),
                    note,
                    message,
                )
            })
    }

    /// The patient's consent for a read, with the break-glass rule (a practitioner's ETREAT
    /// read needs a reason): whether access is by break-glass, or why it is refused (audit
    /// note, message).
    fn consent_gate(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        meta: &VersionMeta,
    ) -> Result<bool, (&'static str, &'static str)> {
        let decision = self.decide(s, purpose, Action::Access, rt, meta);
        let break_glass = decision == Decision::Permit(Basis::BreakGlass);
        if break_glass
            && purpose
                .break_glass_reason
                .as_deref()
                .is_none_or(str::is_empty)
        {
            Err((
                "denied: break-glass without a reason",
                "break-glass (purpose ETREAT) requires a reason",
            ))
        } else if !decision.permitted() {
            Err((
                "denied by consent",
                "access denied by the patient's consent",
            ))
        } else {
            Ok(break_glass)
        }
    }

    /// Reads the current version (or `version`) of a resource, if consent allows.
    pub fn read(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<Served, ServiceError> {
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, version)?;
        let patient = meta.patient.clone();
        let interaction = if version.is_some() { "vread" } else { "read" };
        self.check_scope(s, purpose, interaction, rt, 'r', &what, patient.as_deref())?;
        let break_glass = self.gate_read(s, purpose, rt, &meta, interaction, &what)?;
        let resource = self.records.read_version(rt, id, &meta);
        let note = if break_glass {
            break_glass_note(purpose, "")
        } else {
            "allowed".to_string()
        };
        match resource {
            Ok(r) => {
                self.audit(
                    s,
                    purpose,
                    interaction,
                    "R",
                    &what,
                    patient.as_deref(),
                    "0",
                    &note,
                );
                Ok(Served {
                    resource: Some(r),
                    version: meta.version,
                    tx: None,
                    break_glass,
                })
            }
            Err(e) => {
                self.audit(
                    s,
                    purpose,
                    interaction,
                    "R",
                    &what,
                    patient.as_deref(),
                    "4",
                    "not available",
                );
                Err(e.into())
            }
        }
    }

    /// Creates (`id` = None) or updates a resource.
    pub fn write(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: Option<&str>,
        if_match: Option<u64>,
        resource: Value,
    ) -> Result<Served, ServiceError> {
        let what = id.map_or_else(|| rt.to_string(), |i| format!("{rt}/{i}"));
        let perm = if id.is_some() { 'u' } else { 'c' };
        if resource["resourceType"].as_str() != Some(rt) {
            return Err(ServiceError::new(
                400,
                "invalid",
                "resourceType does not match the URL",
            ));
        }
        let patient = match rt {
            "Patient" => id.map(|i| format!("Patient/{i}")),
            _ => carechain_records::patient_of(rt, "", &resource),
        };
        let interaction = if id.is_some() { "update" } else { "create" };
        self.check_scope(s, purpose, interaction, rt, perm, &what, patient.as_deref())?;
        if let Err(e) = self.may_write(s, rt, id, patient.as_deref(), &resource) {
            self.audit(
                s,
                purpose,
                if id.is_some() { "update" } else { "create" },
                if id.is_some() { "U" } else { "C" },
                &what,
                patient.as_deref(),
                "4",
                "denied: not allowed to write this resource",
            );
            return Err(e);
        }
        let author = s.organization.map(|o| o.to_string());
        let (w, tx) = match id {
            Some(i) => {
                let also = self.recipients(rt, patient.as_deref(), &resource);
                self.write_one_anchored(
                    carechain_records::NewVersion {
                        resource,
                        id: i.to_string(),
                        if_match,
                        fresh: false,
                        patient: None,
                        also,
                        delete: false,
                        server_built: false,
                    },
                    author.as_deref(),
                )?
            }
            None => {
                // Visible only once anchored; the metadata commit runs while the anchor's
                // block is made durable.
                let also = self.recipients(rt, patient.as_deref(), &resource);
                let w = self.records.create_anchored(
                    resource,
                    None,
                    author.as_deref(),
                    &also,
                    now_ms(),
                    |w: &Written| {
                        let commitment = w
                            .meta
                            .commitment
                            .ok_or_else(|| ServiceError::new(500, "exception", "no commitment"))?;
                        let txs =
                            self.submit_anchors(vec![self.record_anchor("record", w, commitment)])?;
                        Ok::<_, ServiceError>(Anchor {
                            tx: txs.first().copied().unwrap_or_default(),
                            commitment,
                            salt: None,
                            batch: None,
                        })
                    },
                    |a: &Anchor| self.wait_durable(&a.tx).map(|_| ()),
                )?;
                let tx = w.meta.anchor.as_ref().map(|a| a.tx).unwrap_or_default();
                (w, tx)
            }
        };
        self.after_write(&w);
        let target = format!("{rt}/{}/_history/{}", w.id, w.meta.version);
        self.audit(
            s,
            purpose,
            if id.is_some() { "update" } else { "create" },
            if id.is_some() { "U" } else { "C" },
            &target,
            w.meta.patient.as_deref(),
            "0",
            "allowed",
        );
        Ok(Served {
            resource: w.resource,
            version: w.meta.version,
            tx: Some(tx),
            break_glass: false,
        })
    }
}

impl Service {
    /// Audits a refused Bundle (nothing of it was written).
    fn audit_bundle_refused(&self, s: &Session, purpose: &Purpose, why: &str) {
        self.audit(
            s,
            purpose,
            "transaction",
            "C",
            "Bundle",
            None,
            "4",
            &format!("bundle refused ({why}): nothing written"),
        );
    }

    /// Audits a refused interaction and returns the 403 to answer with.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        s: &Session,
        purpose: &Purpose,
        interaction: &str,
        action: &str,
        what: &str,
        patient: Option<&str>,
        note: &str,
        message: impl Into<String>,
    ) -> ServiceError {
        self.audit(s, purpose, interaction, action, what, patient, "4", note);
        ServiceError::new(403, "forbidden", message)
    }

    /// Whether the caller is the patient `patient` (their did is linked to that Patient).
    fn is_owner(&self, s: &Session, patient: Option<&str>) -> bool {
        patient.is_some_and(|p| p == self.actor(s).reference)
    }

    /// Who may write: the patient writes their own Patient and Consent resources; consents
    /// are the patient's alone; organizations, practitioners and devices write clinical data;
    /// audit events are the node's.
    fn may_write(
        &self,
        s: &Session,
        rt: &str,
        id: Option<&str>,
        patient: Option<&str>,
        resource: &Value,
    ) -> Result<(), ServiceError> {
        let owner = self.is_owner(s, patient);
        let allowed = match (rt, s.role) {
            ("Consent", _) => owner,
            ("AuditEvent", _) => false,
            (_, Role::Patient) => {
                rt == "Patient" && (owner || (id.is_none() && did_of(resource) == Some(s.did)))
            }
            (_, Role::Organization | Role::Practitioner | Role::Device | Role::Operator) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ServiceError::new(
                403,
                "forbidden",
                format!("this identity may not write {rt}"),
            ))
        }
    }

    fn after_write(&self, w: &Written) {
        if let Some(r) = &w.resource {
            match w.resource_type.as_str() {
                "Patient" => {
                    if let Some(d) = did_of(r) {
                        self.patients.write().insert(d, format!("Patient/{}", w.id));
                        self.patient_dids
                            .write()
                            .insert(format!("Patient/{}", w.id), d);
                    }
                }
                "Consent" => self.index_consent(&w.id, Some(r.clone())),
                _ => {}
            }
        }
    }

    /// A `transaction` (all or nothing, `urn:uuid` references resolved) or `batch` Bundle.
    pub fn bundle(
        &self,
        s: &Session,
        purpose: &Purpose,
        bundle: Value,
    ) -> Result<Value, ServiceError> {
        if bundle["resourceType"] != "Bundle" {
            return Err(ServiceError::new(
                400,
                "invalid",
                "POST /fhir takes a Bundle",
            ));
        }
        if let Err(issues) = carechain_fhir::validate_resource(&bundle) {
            self.audit_bundle_refused(s, purpose, &format!("{} validation issues", issues.len()));
            return Err(ServiceError {
                status: 400,
                code: "structure",
                message: "the Bundle does not conform to FHIR R4".into(),
                issues: issues.into_iter().map(|i| (i.path, i.message)).collect(),
            });
        }
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        if entries.len() > 10_000 {
            return Err(ServiceError::new(
                413,
                "too-costly",
                "at most 10000 entries per Bundle",
            ));
        }
        match bundle["type"].as_str() {
            Some("transaction") => self.transaction(s, purpose, entries),
            Some("batch") => Ok(self.batch(s, purpose, entries)),
            _ => Err(ServiceError::new(
                400,
                "invalid",
                "Bundle.type must be transaction or batch",
            )),
        }
    }

    fn batch(&self, s: &Session, purpose: &Purpose, entries: Vec<Value>) -> Value {
        let out: Vec<Value> = entries
            .into_iter()
            .map(|e| {
                let method = e["request"]["method"].as_str().unwrap_or_default().to_string();
                let url = e["request"]["url"].as_str().unwrap_or_default().to_string();
                if method == "GET" && (url.contains('?') || !url.contains('/')) {
                    let (rt, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
                    let params = search::query_pairs(query);
                    return match self.search(s, purpose, rt, &params, "") {
                        Ok(b) => json!({"resource": b, "response": {"status": "200 OK"}}),
                        Err(e) => json!({"response": {"status": format!("{}", e.status), "outcome": e.outcome()}}),
                    };
                }
                let (rt, id) = url.split_once('/').map_or((url.as_str(), None), |(a, b)| (a, Some(b)));
                let r = match method.as_str() {
                    "POST" | "PUT" => self.write(s, purpose, rt, id, None, e["resource"].clone()),
                    "GET" => match id {
                        Some(id) => self.read(s, purpose, rt, id, None),
                        None => Err(ServiceError::new(400, "invalid", "GET needs Type/id or Type?query")),
                    },
                    "DELETE" => match id {
                        Some(id) => self.delete(s, purpose, rt, id),
                        None => Err(ServiceError::new(400, "not-supported", "conditional delete is not supported inside a transaction (use DELETE [type]?query)")),
                    },
                    _ => Err(ServiceError::new(400, "invalid", "unknown request method")),
                };
                match r {
                    Ok(sv) => {
                        let id = sv.resource.as_ref().and_then(|x| x["id"].as_str()).map(str::to_string).or(id.map(str::to_string)).unwrap_or_default();
                        let status = match method.as_str() { "POST" => "201 Created", "DELETE" => "204 No Content", _ => "200 OK" };
                        let mut entry = json!({"response": {"status": status, "location": format!("{rt}/{id}/_history/{}", sv.version), "etag": format!("W/\"{}\"", sv.version)}});
                        if method == "GET" && let Some(r) = sv.resource {
                            entry["resource"] = r;
                        }
                        entry
                    }
                    Err(e) => json!({"response": {"status": format!("{}", e.status), "outcome": e.outcome()}}),
                }
            })
            .collect();
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": out})
    }

    fn transaction(
        &self,
        s: &Session,
        purpose: &Purpose,
        entries: Vec<Value>,
    ) -> Result<Value, ServiceError> {
        // 1. Identify every entry: POST gets a new id (or, with ifNoneExist, the id of the one
        //    visible match), PUT keeps its own; GETs run after the writes; map fullUrls.
        let conditional = entries
            .iter()
            .any(|e| e["request"]["ifNoneExist"].is_string());
        let _one_at_a_time = conditional.then(|| self.conditional.lock());
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        let mut plan = Vec::with_capacity(entries.len());
        let mut reads = Vec::new();
        let mut deletes: Vec<(usize, String, String)> = Vec::new();
        let mut existing: BTreeMap<usize, String> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let method = e["request"]["method"].as_str().unwrap_or_default();
            let url = e["request"]["url"].as_str().unwrap_or_default();
            let rt = e["resource"]["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (id, fresh) = match method {
                "GET" | "DELETE" => {
                    let Some((t, id)) = type_and_id(url) else {
                        return Err(ServiceError::new(
                            400,
                            "not-supported",
                            format!(
                                "entry {i}: {method} in a transaction must name Type/id (no searches, no conditional delete)"
                            ),
                        ));
                    };
                    if method == "GET" {
                        reads.push((i, t, id));
                    } else {
                        deletes.push((i, t, id));
                    }
                    continue;
                }
                "POST" => {
                    if let Some(q) = e["request"]["ifNoneExist"].as_str()
                        && let Some(id) = self.existing_match(s, purpose, &rt, q)?
                    {
                        existing.insert(i, format!("{rt}/{id}"));
                        if let Some(full) = e["fullUrl"].as_str() {
                            map.insert(full.to_string(), format!("{rt}/{id}"));
                        }
                        continue;
                    }
                    (carechain_records::new_id()?, true)
                }
                "PUT" => match url.split_once('/') {
                    Some((t, id)) if t == rt && !id.contains(['/', '?']) => (id.to_string(), false),
                    _ => {
                        return Err(ServiceError::new(
                            400,
                            "invalid",
                            format!("entry {i}: PUT url must be {rt}/<id>"),
                        ));
                    }
                },
                other => {
                    return Err(ServiceError::new(
                        400,
                        "not-supported",
                        format!(
                            "entry {i}: {other} is not supported in a transaction (DELETE, POST, PUT and GET are)"
                        ),
                    ));
                }
            };
            if let Some(full) = e["fullUrl"].as_str() {
                map.insert(full.to_string(), format!("{rt}/{id}"));
            }
            plan.push((i, rt, id, fresh));
        }
        // Patients created in this bundle with a did: their records here are wrapped to them.
        let bundle_dids: BTreeMap<String, Did> = plan
            .iter()
            .filter(|(_, rt, _, _)| rt == "Patient")
            .filter_map(|(i, _, id, _)| {
                did_of(&entries[*i]["resource"]).map(|d| (format!("Patient/{id}"), d))
            })
            .collect();
        // 2. Check permissions for every entry before writing any; deletions first (FHIR order),
        //    then resolve references.
        let mut items = Vec::with_capacity(plan.len() + deletes.len());
        for (_, rt, id) in &deletes {
            self.may_delete(s, purpose, "transaction", rt, id)?;
            items.push(carechain_records::NewVersion::deletion(rt, id));
        }
        for (i, rt, id, fresh) in &plan {
            let mut resource = entries[*i]["resource"].clone();
            resolve_references(&mut resource, &map);
            if !*fresh {
                resource["id"] = json!(id);
            }
            let patient = if rt == "Patient" {
                Some(format!("Patient/{id}"))
            } else {
                carechain_records::patient_of(rt, id, &resource)
            };
            let perm = if *fresh { 'c' } else { 'u' };
            self.check_scope(s, purpose, "transaction", rt, perm, rt, patient.as_deref())?;
            if let Err(e) = self.may_write(
                s,
                rt,
                (!*fresh).then_some(id.as_str()),
                patient.as_deref(),
                &resource,
            ) {
                self.audit(
                    s,
                    purpose,
                    "transaction",
                    "C",
                    rt,
                    patient.as_deref(),
                    "4",
                    "denied: not allowed to write this resource",
                );
                return Err(e);
            }
            let mut also = self.recipients(rt, patient.as_deref(), &resource);
            if also.is_empty()
                && let Some(d) = patient.as_ref().and_then(|p| bundle_dids.get(p))
            {
                also = self.encryption_keys(d);
            }
            items.push(carechain_records::NewVersion {
                also,
                resource,
                id: id.clone(),
                if_match: None,
                fresh: *fresh,
                patient: None,
                delete: false,
                server_built: false,
            });
        }
        // 3. All or nothing: validate and seal all, anchor all, commit all.
        let author = s.organization.map(|o| o.to_string());
        let written =
            self.records
                .write_many(items, author.as_deref(), now_ms(), |ws: &[Written]| {
                    self.anchor_versions(ws)
                });
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                // Nothing was written; the refusal itself is audited (no content in the note).
                self.audit_bundle_refused(s, purpose, &format!("{} {}", e.status, e.code));
                return Err(e);
            }
        };
        for w in &written {
            if w.meta.deleted {
                if w.resource_type == "Consent" {
                    self.index_consent(&w.id, None);
                }
            } else {
                self.after_write(w);
            }
        }
        let patient = written.iter().find_map(|w| w.meta.patient.clone());
        let what = written
            .iter()
            .map(|w| format!("{}/{}", w.resource_type, w.id))
            .take(1)
            .collect::<Vec<_>>()
            .join(",");
        self.audit(
            s,
            purpose,
            "transaction",
            "C",
            &what,
            patient.as_deref(),
            "0",
            &format!("transaction of {} resources", written.len()),
        );
        // Responses in the order of the request's entries.
        let mut out = vec![Value::Null; entries.len()];
        let (deleted, written) = written.split_at(deletes.len());
        for (w, (i, _, _)) in deleted.iter().zip(&deletes) {
            out[*i] = json!({"response": {
                "status": "204 No Content",
                "etag": format!("W/\"{}\"", w.meta.version),
                "lastModified": format_instant(w.meta.last_updated_ms),
            }});
        }
        for (w, (i, _, _, fresh)) in written.iter().zip(&plan) {
            out[*i] = json!({"response": {
                "status": if *fresh || w.meta.version == 1 { "201 Created" } else { "200 OK" },
                "location": format!("{}/{}/_history/{}", w.resource_type, w.id, w.meta.version),
                "etag": format!("W/\"{}\"", w.meta.version),
                "lastModified": format_instant(w.meta.last_updated_ms),
            }});
        }
        for (i, reference) in existing {
            out[i] = json!({"response": {"status": "200 OK", "location": reference}});
        }
        // 4. Reads run last (FHIR order: DELETE, POST, PUT, GET), each consent-checked.
        for (i, rt, id) in reads {
            out[i] = match self.read(s, purpose, &rt, &id, None) {
                Ok(sv) => json!({
                    "resource": sv.resource,
                    "response": {"status": "200 OK", "etag": format!("W/\"{}\"", sv.version)}
                }),
                Err(e) => {
                    json!({"response": {"status": e.status.to_string(), "outcome": e.outcome()}})
                }
            };
        }
        Ok(json!({"resourceType": "Bundle", "type": "transaction-response", "entry": out}))
    }

    /// Deletes a resource (history stays), if the caller may write it.
    pub fn delete(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
    ) -> Result<Served, ServiceError> {
        let what = format!("{rt}/{id}");
        let meta = self.may_delete(s, purpose, "delete", rt, id)?;
        let (w, tx) =
            self.write_one_anchored(carechain_records::NewVersion::deletion(rt, id), None)?;
        if rt == "Consent" {
            self.index_consent(id, None);
        }
        self.audit(
            s,
            purpose,
            "delete",
            "D",
            &format!("{what}/_history/{}", w.meta.version),
            meta.patient.as_deref(),
            "0",
            "allowed",
        );
        Ok(Served {
            resource: None,
            version: w.meta.version,
            tx: Some(tx),
            break_glass: false,
        })
    }

    /// The history of a resource (versions the caller may read).
    pub fn history(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
    ) -> Result<Vec<(VersionMeta, Option<Value>)>, ServiceError> {
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, None)?;
        self.check_scope(
            s,
            purpose,
            "history-instance",
            rt,
            'r',
            &what,
            meta.patient.as_deref(),
        )?;
        self.gate_read(s, purpose, rt, &meta, "history-instance", &what)?;
        let h = self.records.history(rt, id)?;
        self.audit(
            s,
            purpose,
            "history-instance",
            "R",
            &what,
            meta.patient.as_deref(),
            "0",
            "allowed",
        );
        Ok(h.into_iter().map(|e| (e.meta, e.resource)).collect())
    }

    /// Erases a resource: its patient or an operator. Returns the signed erasure certificate.
    pub fn erase(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
    ) -> Result<Value, ServiceError> {
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, None)?;
        let owner = self.is_owner(s, meta.patient.as_deref());
        if !(owner || s.role == Role::Operator) || rt == "AuditEvent" {
            return Err(self.refuse(
                s,
                purpose,
                "erase",
                "D",
                &what,
                meta.patient.as_deref(),
                "denied: only the patient or an operator may erase",
                "only the patient or an operator may erase a record",
            ));
        }
        // The tombstone is on the ledger before anything is destroyed.
        let (destroyed, (tombstone, tx)) = self.records.erase(rt, id, |doomed: &[Hash]| {
            let mut parts: Vec<&[u8]> = vec![b"carechain/v1/tombstone\0"];
            parts.extend(doomed.iter().map(|h| h.0.as_slice()));
            let tombstone = sha256_parts(&parts);
            let tx = self.anchor(self.tagged_anchor("tombstone", rt, &meta, tombstone))?;
            Ok::<_, ServiceError>((tombstone, tx))
        })?;
        if rt == "Consent" {
            self.index_consent(id, None);
        }
        let body = json!({
            "type": "carechain-erasure-certificate",
            "chain_id": self.node.store().genesis().chain_id,
            "resource": what,
            "erased_at": format_instant(now_ms()),
            "destroyed_commitments": destroyed.iter().map(Hash::to_hex).collect::<Vec<_>>(),
            "tombstone": tombstone.to_hex(),
            "tombstone_tx": tx.to_hex(),
            "issuer": self.node_did,
        });
        let sig = self.key.sign(
            carechain_crypto::Namespace::Certificate,
            &serde_json::to_vec(&body).unwrap_or_default(),
        );
        self.audit(
            s,
            purpose,
            "erase",
            "D",
            &what,
            meta.patient.as_deref(),
            "0",
            "erased",
        );
        Ok(json!({"certificate": body, "signature": sig.to_hex()}))
    }

    /// The patient's access log: every audit event about their records, each with the data to
    /// verify it offline (salt, commitment, raw anchoring transaction). Only for the patient.
    pub fn access_log(&self, s: &Session, patient_id: &str) -> Result<Vec<Value>, ServiceError> {
        let patient = format!("Patient/{patient_id}");
        if self.actor(s).reference != patient {
            return Err(ServiceError::new(
                403,
                "forbidden",
                "only the patient may read their access log",
            ));
        }
        // Every access up to this request is in the log.
        self.flush_audit();
        let snap = self
            .node
            .snapshot()
            .map_err(|_| ServiceError::new(500, "exception", "storage"))?;
        let mut out = Vec::new();
        for id in self.records.patient_ids(&patient, "AuditEvent")? {
            let meta = self.records.meta("AuditEvent", &id, None)?;
            let Ok(event) = self.records.read_version("AuditEvent", &id, &meta) else {
                continue;
            };
            let mut entry = json!({"event": event});
            if let Some(a) = &meta.anchor {
                entry["commitment"] = json!(a.commitment.to_hex());
                entry["salt"] = json!(a.salt.map(hex::encode));
                entry["tx_hash"] = json!(a.tx.to_hex());
                if let Some(b) = &a.batch {
                    entry["batch"] = json!({
                        "index": b.index,
                        "size": b.size,
                        "proof": b.proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                    });
                }
                if let Ok(Some(loc)) = snap.tx_location(&a.tx)
                    && let Ok(Some(block)) = snap.block(loc.height)
                    && let Some(tx) = block.txs.get(loc.position as usize)
                {
                    entry["tx"] = json!(hex::encode(encode(tx)));
                    entry["height"] = json!(loc.height);
                }
            }
            out.push(entry);
        }
        out.sort_by(|a, b| {
            b["event"]["recorded"]
                .as_str()
                .cmp(&a["event"]["recorded"].as_str())
        });
        Ok(out)
    }
}

/// Replaces every `reference` that names a bundle entry's `fullUrl` by the entry's new
/// `Type/id`.
fn resolve_references(v: &mut Value, map: &BTreeMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "reference"
                    && let Some(r) = x.as_str()
                    && let Some(new) = map.get(r)
                {
                    *x = json!(new);
                } else {
                    resolve_references(x, map);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_references(x, map)),
        _ => {}
    }
}

/// The commitment anchored for an audit event: `SHA-256(ns || salt || canonical JSON)`.
pub fn audit_commitment(salt: &[u8; 32], event: &Value) -> Hash {
    audit_commitment_of_bytes(salt, &serde_json::to_vec(event).unwrap_or_default())
}

/// [`audit_commitment`] of an event already serialized.
pub(crate) fn audit_commitment_of_bytes(salt: &[u8; 32], json: &[u8]) -> Hash {
    sha256_parts(&[AUDIT_NAMESPACE, salt, json])
}

/// Checks one access-log entry offline: the audit event matches the commitment its
/// transaction carries (with the entry's salt) — directly, or through the entry's inclusion
/// proof in the batch whose Merkle root the transaction carries — and that transaction is a
/// leaf of the log under a checkpoint signed by `verifier`. Returns the checkpoint's log size.
pub fn verify_receipt(
    entry: &Value,
    verifier: &carechain_log::NoteVerifier,
) -> Result<u64, String> {
    let salt: [u8; 32] = hex::decode(entry["salt"].as_str().ok_or("entry has no salt")?)
        .map_err(|_| "salt is not hex")?
        .try_into()
        .map_err(|_| "salt is not 32 bytes")?;
    let commitment = audit_commitment(&salt, &entry["event"]);
    let raw = hex::decode(entry["tx"].as_str().ok_or("entry has no transaction")?)
        .map_err(|_| "tx is not hex")?;
    let tx = carechain_types::decode_tx(&raw).map_err(|e| e.to_string())?;
    let anchored = match &entry["batch"] {
        Value::Null => commitment,
        b => {
            let proof = hashes(&b["proof"]).map_err(|e| format!("batch proof: {e}"))?;
            carechain_log::proof::root_from_inclusion(
                b["index"].as_u64().ok_or("batch has no index")?,
                b["size"].as_u64().ok_or("batch has no size")?,
                &carechain_crypto::merkle::leaf_hash(&commitment.0),
                &proof,
            )
            .map_err(|e| format!("batch proof: {e}"))?
        }
    };
    match &tx.body.payload {
        Payload::Anchor { commitment: c, .. } | Payload::TaggedAnchor { commitment: c, .. }
            if *c == anchored => {}
        _ => {
            return Err(
                "the transaction does not carry this event's commitment: the event was altered"
                    .into(),
            );
        }
    }
    let inc = &entry["inclusion"];
    let cp = verifier
        .verify_checkpoint(
            inc["checkpoint"]
                .as_str()
                .ok_or("entry has no checkpoint")?,
        )
        .map_err(|e| e.to_string())?;
    let proof = hashes(&inc["proof"])?;
    let index = inc["log_index"].as_u64().ok_or("entry has no log index")?;
    carechain_log::proof::verify_inclusion(
        index,
        cp.size,
        &carechain_crypto::merkle::leaf_hash(&tx.hash().0),
        &proof,
        &cp.root,
    )
    .map_err(|e| format!("inclusion proof: {e}"))?;
    Ok(cp.size)
}

/// A JSON array of hex hashes.
fn hashes(v: &Value) -> Result<Vec<Hash>, String> {
    v.as_array()
        .ok_or("entry has no proof")?
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap_or("")).map_err(|e| e.to_string()))
        .collect()
}
