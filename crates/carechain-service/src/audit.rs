//! Audit events: built for every interaction (allowed or denied), queued, and written by one
//! writer thread in batches — each event sealed into the patient's compartment under a salted
//! commitment; a batch in one record-store commit, anchored on the ledger by one transaction
//! carrying the Merkle tree hash of the batch's commitments (each event keeps its inclusion
//! proof in that tree, handed out with its receipt).
//!
//! By default an interaction is answered once its event is queued (the writer drains the
//! queue continuously; a graceful shutdown and every access-log read wait for it). With
//! [`Service::set_audit_durable`] every answer waits until its event is durable and
//! anchored. The queue is bounded: when full, interactions wait; events are never dropped.

use std::{
    collections::BTreeSet,
    sync::{Arc, Weak},
    time::Duration,
};

use carechain_crypto::Hash;
use carechain_log::{MemoryLog, inclusion_proof};
use carechain_records::{Anchor, BatchPath, NewVersion, Written, format_instant};
use carechain_types::Payload;
use carechain_vault::PublicEncryptionKey;
use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::{
    ACT_REASON, DID_SYSTEM, ErrorKind, Purpose, Service, ServiceError, Session,
    receipt::audit_commitment_of_bytes,
};
use carechain_node::now_ms;

/// Events queued beyond this make interactions wait for the writer.
const QUEUE_LIMIT: usize = 65_536;
/// Events written in one batch (one commit, one ledger wait).
const BATCH_LIMIT: usize = 4_096;
/// Attempts at anchoring a batch before its events are reported lost.
const ATTEMPTS: usize = 5;
/// The anchor kind of a batch of audit events (the transaction carries the batch's Merkle root).
pub const AUDIT_BATCH: &str = "audit-batch";

#[derive(Default)]
struct State {
    /// Queued events: (ticket, event, patient compartment).
    pending: Vec<(u64, Value, Option<String>)>,
    /// The next ticket to hand out (tickets start at 1).
    next: u64,
    /// Every ticket up to this one has been handled (written, or failed).
    handled: u64,
    /// Tickets whose event could not be written.
    failed: BTreeSet<u64>,
    /// The service is closing: the writer thread exits.
    closed: bool,
}

/// The queue between interactions and the audit writer.
pub(crate) struct AuditQueue {
    state: Mutex<State>,
    work: Condvar,
    handled: Condvar,
    durable_answers: std::sync::atomic::AtomicBool,
}

impl AuditQueue {
    pub(crate) fn new() -> AuditQueue {
        AuditQueue {
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            work: Condvar::new(),
            handled: Condvar::new(),
            durable_answers: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn push(&self, event: Value, patient: Option<String>) -> u64 {
        let mut st = self.state.lock();
        while st.pending.len() >= QUEUE_LIMIT && !st.closed {
            self.handled.wait(&mut st);
        }
        let ticket = st.next;
        st.next += 1;
        st.pending.push((ticket, event, patient));
        self.work.notify_one();
        ticket
    }

    /// Waits until `ticket` is handled; whether it was written.
    fn wait(&self, ticket: u64) -> bool {
        let mut st = self.state.lock();
        while st.handled < ticket {
            self.handled.wait(&mut st);
        }
        !st.failed.contains(&ticket)
    }

    fn take(&self, block: bool) -> Option<Vec<(u64, Value, Option<String>)>> {
        let mut st = self.state.lock();
        while st.pending.is_empty() {
            if st.closed || !block {
                return None;
            }
            // Wakes now and then, so that the writer lets go of the service.
            self.work.wait_for(&mut st, Duration::from_millis(200));
            if st.pending.is_empty() {
                return None;
            }
        }
        let n = st.pending.len().min(BATCH_LIMIT);
        Some(st.pending.drain(..n).collect())
    }

    fn finish(&self, tickets: &[u64], ok: bool) {
        let mut st = self.state.lock();
        if !ok {
            st.failed.extend(tickets.iter().copied());
            // Waiters have had their chance; keep the set bounded.
            while st.failed.len() > QUEUE_LIMIT {
                st.failed.pop_first();
            }
        }
        if let Some(max) = tickets.iter().max() {
            st.handled = st.handled.max(*max);
        }
        self.handled.notify_all();
    }
}

/// Runs the writer: drains the queue in batches while the service lives, and exits once it is
/// closed and drained. It holds the service while it takes and writes a batch, so the service's
/// `Drop` never runs beside a batch in flight: if the writer holds the last reference, `Drop`
/// runs in the writer, after its batch, and drains what is left itself.
pub(crate) fn spawn_writer(queue: Arc<AuditQueue>, svc: Weak<Service>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            loop {
                let Some(s) = svc.upgrade() else {
                    return;
                };
                match queue.take(true) {
                    Some(batch) => s.write_batch(batch),
                    None if queue.state.lock().closed => return,
                    None => {}
                }
            }
        })
        .map(|_| ())
}

impl Service {
    /// Whether every answer waits until its audit event is durable and anchored (default:
    /// answered once queued).
    pub fn set_audit_durable(&self, durable: bool) {
        self.audit_queue
            .durable_answers
            .store(durable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until every audit event queued so far is written (or reported lost).
    pub fn flush_audit(&self) {
        let last = self.audit_queue.state.lock().next - 1;
        if last > 0 {
            self.audit_queue.wait(last);
        }
    }

    /// Graceful shutdown: the writer drains the queue and stops; returns once every event
    /// queued so far is written (or reported lost).
    pub fn close(&self) {
        self.audit_queue.state.lock().closed = true;
        self.audit_queue.work.notify_all();
        self.flush_audit();
    }

    /// At `Drop`: no writer can run any more (it cannot reach the service), so whatever is
    /// still queued is written here.
    pub(crate) fn drain_audit_here(&self) {
        self.audit_queue.state.lock().closed = true;
        while let Some(batch) = self.audit_queue.take(false) {
            self.write_batch(batch);
        }
    }

    fn write_batch(&self, batch: Vec<(u64, Value, Option<String>)>) {
        let tickets: Vec<u64> = batch.iter().map(|(t, _, _)| *t).collect();
        let events = batch.len();
        let ok = match self.store_audits(batch) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, events, "audit events could not be recorded");
                false
            }
        };
        self.audit_queue.finish(&tickets, ok);
    }

    /// Seals, anchors and commits a batch of audit events: all or nothing. The batch is
    /// anchored by one transaction carrying the Merkle tree hash of the events' commitments;
    /// each event's metadata keeps its inclusion proof in that tree ([`BatchPath`]), which the
    /// access log hands out with the receipt.
    fn store_audits(&self, batch: Vec<(u64, Value, Option<String>)>) -> Result<(), ServiceError> {
        let mut items = Vec::with_capacity(batch.len());
        // Each patient's key is looked up once per batch.
        let mut keys: std::collections::BTreeMap<String, Vec<PublicEncryptionKey>> =
            std::collections::BTreeMap::new();
        for (_, ev, patient) in batch {
            let also = match &patient {
                Some(p) => match keys.get(p) {
                    Some(k) => k.clone(),
                    None => {
                        let k = self.recipients(Some(p));
                        keys.insert(p.clone(), k.clone());
                        k
                    }
                },
                None => Vec::new(),
            };
            items.push(NewVersion {
                resource: ev,
                id: carechain_records::new_id()?,
                if_match: None,
                fresh: true,
                patient,
                // Like any record: wrapped to the node and to the patient, who can also read
                // it offline from its envelope.
                also,
                delete: false,
                server_built: true,
            });
        }
        self.records.write_many(
            items,
            None,
            now_ms(),
            |_| Ok(()),
            |ws: &[Written]| {
                let mut salts = Vec::with_capacity(ws.len());
                let mut tree = MemoryLog::new();
                let mut commitments: Vec<Hash> = Vec::with_capacity(ws.len());
                for w in ws {
                    if w.plaintext().is_empty() {
                        return Err(ServiceError::new(ErrorKind::Internal, "no audit content"));
                    }
                    let mut salt = [0u8; 32];
                    getrandom::fill(&mut salt)
                        .map_err(|_| ServiceError::new(ErrorKind::Internal, "randomness"))?;
                    // The sealed bytes are the event's canonical JSON (what the access log
                    // serves and a verifier hashes).
                    let c = audit_commitment_of_bytes(&salt, w.plaintext());
                    tree.append(&c.0);
                    commitments.push(c);
                    salts.push(salt);
                }
                let size = tree.size();
                let tx = self.anchor_retrying(Service::plain_anchor(AUDIT_BATCH, tree.root()))?;
                commitments
                    .into_iter()
                    .zip(salts)
                    .enumerate()
                    .map(|(i, (commitment, salt))| {
                        let proof = inclusion_proof(&tree, i as u64, size)
                            .map_err(|e| ServiceError::internal("batch proof", e))?;
                        Ok::<_, ServiceError>(Anchor {
                            tx,
                            commitment,
                            salt: Some(salt),
                            batch: Some(BatchPath {
                                index: i as u64,
                                size,
                                proof,
                            }),
                        })
                    })
                    .collect()
            },
        )?;
        Ok(())
    }

    /// Anchors one payload, retrying with a growing pause while the ledger refuses it.
    fn anchor_retrying(&self, payload: Payload) -> Result<Hash, ServiceError> {
        let mut attempt = 0;
        loop {
            match self.anchor(payload.clone()) {
                Ok(tx) => return Ok(tx),
                Err(e) if attempt + 1 < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "audit batch not anchored; retrying");
                    std::thread::sleep(Duration::from_millis(20 << attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records an audit event (IHE BALP style) for an interaction on a patient's record (or
    /// on none: `entry.patient` is `None`).
    pub(crate) fn audit(&self, s: &Session, purpose: &Purpose, entry: AuditEntry<'_>) {
        let mut agent = json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "who": {"identifier": {"system": DID_SYSTEM, "value": s.did.to_string()}},
            "requestor": true,
            "purposeOfUse": [{"coding": [{"system": ACT_REASON, "code": purpose.code}]}]
        });
        if let Some(o) = &s.organization {
            agent["extension"] = json!([{"url": "http://carechain.example/fhir/StructureDefinition/agent-organization", "valueIdentifier": {"system": DID_SYSTEM, "value": o.to_string()}}]);
        }
        let mut agents = vec![agent];
        let note = match &s.origin.peer {
            // Asked by another node for its user: that node is an agent too, and the note
            // says at which height this node decided.
            Some(p) => {
                agents.push(json!({
                    "type": {"text": "requesting node"},
                    "who": {"identifier": {"system": DID_SYSTEM, "value": p.node.to_string()}},
                    "requestor": false
                }));
                format!(
                    "{} (asked by node {} at height {})",
                    entry.note, p.node, p.height
                )
            }
            None => entry.note.to_string(),
        };
        let mut entity = vec![
            json!({"what": {"reference": entry.what}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}}),
        ];
        if let Some(p) = entry.patient {
            entity.push(json!({"what": {"reference": p}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}}));
        }
        let mut ev = json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": entry.interaction.code()}],
            "action": entry.interaction.balp_action(),
            "recorded": format_instant(now_ms()),
            "outcome": entry.outcome.code(),
            "outcomeDesc": note,
            "purposeOfEvent": [{"coding": [{"system": ACT_REASON, "code": purpose.code}]}],
            "source": {"observer": {"identifier": {"system": DID_SYSTEM, "value": self.node_did}}},
        });
        // Moved in (`json!` would copy a `Value` by serializing it).
        ev["agent"] = Value::Array(agents);
        ev["entity"] = Value::Array(entity);
        // AuditEvent has no `patient` element: the store's compartment is given alongside.
        let ticket = self.audit_queue.push(ev, entry.patient.map(str::to_string));
        if self
            .audit_queue
            .durable_answers
            .load(std::sync::atomic::Ordering::Relaxed)
            && !self.audit_queue.wait(ticket)
        {
            tracing::error!("audit event could not be recorded");
        }
    }

    /// [`Service::audit`] once for each of `patients` (once with none when it is empty): a
    /// record in several compartments is on each patient's access log.
    pub(crate) fn audit_each(
        &self,
        s: &Session,
        purpose: &Purpose,
        entry: AuditEntry<'_>,
        patients: &[String],
    ) {
        if patients.is_empty() {
            self.audit(s, purpose, entry);
        }
        for p in patients {
            self.audit(
                s,
                purpose,
                AuditEntry {
                    patient: Some(p),
                    ..entry
                },
            );
        }
    }
}

/// The FHIR restful interaction (or operation) an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interaction {
    /// `read`
    Read,
    /// `vread`
    Vread,
    /// `update`
    Update,
    /// `create`
    Create,
    /// `delete`
    Delete,
    /// `history-instance`
    HistoryInstance,
    /// `history-type`
    HistoryType,
    /// `search-type`
    SearchType,
    /// `transaction`
    Transaction,
    /// `batch`
    Batch,
    /// `$erase`
    Erase,
    /// `$envelope` (the patient takes her ciphertext)
    Envelope,
    /// The patient reads her access log.
    AccessLog,
    /// A patient claims her record, or an activation code is issued for it.
    Claim,
}

impl Interaction {
    /// The `restful-interaction` code (or this node's operation name).
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read | Interaction::Envelope => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Create => "create",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::SearchType => "search-type",
            Interaction::Transaction => "transaction",
            Interaction::Batch => "batch",
            Interaction::Erase => "erase",
            Interaction::AccessLog => "access-log",
            Interaction::Claim => "claim",
        }
    }

    /// The AuditEvent `action` (C R U D E).
    pub fn balp_action(self) -> &'static str {
        match self {
            Interaction::Create | Interaction::Transaction | Interaction::Claim => "C",
            Interaction::Update => "U",
            Interaction::Delete | Interaction::Erase => "D",
            Interaction::SearchType | Interaction::Batch => "E",
            _ => "R",
        }
    }
}

/// An audit event's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `0`: success.
    Success,
    /// `4`: refused (or a minor failure).
    Refused,
    /// `8`: a serious failure.
    Failed,
}

impl Outcome {
    /// The AuditEvent outcome code.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::Refused => "4",
            Outcome::Failed => "8",
        }
    }
}

/// What one audit event says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuditEntry<'a> {
    pub(crate) interaction: Interaction,
    /// The entity (`Type/id[/_history/n]`, or a type for searches).
    pub(crate) what: &'a str,
    /// The patient whose log it goes to.
    pub(crate) patient: Option<&'a str>,
    pub(crate) outcome: Outcome,
    /// The note (`outcomeDesc`): never health data.
    pub(crate) note: &'a str,
}

impl<'a> AuditEntry<'a> {
    pub(crate) fn new(
        interaction: Interaction,
        what: &'a str,
        patient: Option<&'a str>,
        outcome: Outcome,
        note: &'a str,
    ) -> AuditEntry<'a> {
        AuditEntry {
            interaction,
            what,
            patient,
            outcome,
            note,
        }
    }

    pub(crate) fn allowed(
        interaction: Interaction,
        what: &'a str,
        patient: Option<&'a str>,
        note: &'a str,
    ) -> AuditEntry<'a> {
        AuditEntry::new(interaction, what, patient, Outcome::Success, note)
    }
}
