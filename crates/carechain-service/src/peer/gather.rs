//! The requester's side: ask every node of the patient's record locator, in parallel, for
//! its user; verify each answer; audit each ask in the patient's log here.

use std::sync::Arc;

use carechain_crypto::{Did, PublicKey};
use carechain_node::now_ms;
use carechain_types::encode;
use serde_json::Value;

use super::{MAX_PEER_ANSWER, PeerOutcome, PeerQuery, PeerRequest, SignedPeerAnswer, Transport};
use crate::{Interaction, Outcome, Purpose, Service, ServiceError, Session, audit::AuditEntry};

/// What the network gave for one query.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// Each record with the base URL of the node that holds it.
    pub resources: Vec<(String, Value)>,
    /// The nodes that gave nothing: unreachable, refusing, or answering badly.
    pub unavailable: Vec<Unavailable>,
}

/// A node of the locator that gave nothing, and why.
#[derive(Clone, Debug)]
pub struct Unavailable {
    /// The node's did.
    pub node: String,
    /// Its base URL.
    pub endpoint: String,
    /// Why (no health data).
    pub reason: String,
}

impl Service {
    /// Lets this node ask other nodes (set by the HTTP edge).
    pub fn set_transport(&self, transport: Arc<dyn Transport>) {
        *self.transport.write() = Some(transport);
    }

    /// Asks every other node of `patient`'s record locator for `query` on `s`'s behalf.
    /// Nothing is asked for a session without the user's own signed sign-in, or for one that
    /// is itself another node's request (no forwarding).
    pub fn gather(
        &self,
        s: &Session,
        purpose: &Purpose,
        patient: &Did,
        query: &PeerQuery,
    ) -> Result<Gathered, ServiceError> {
        let Some(transport) = self.transport.read().clone() else {
            return Ok(Gathered::default());
        };
        let Some(proof) = s.origin.proof.clone() else {
            return Ok(Gathered::default());
        };
        if s.origin.peer.is_some() {
            return Ok(Gathered::default());
        }
        let me = self.key.public();
        let (height, nodes) = self
            .node
            .store()
            .with_durable(|d| {
                let located = carechain_state::locator(d.snapshot, &patient.public_key())?;
                let mut nodes = Vec::new();
                for l in located.into_iter().filter(|l| l.node != me) {
                    if let Some(e) = carechain_state::node_entry(d.snapshot, &l.node)? {
                        nodes.push((l.node, e.endpoint));
                    }
                }
                Ok::<_, carechain_state::ViewError>((d.height, nodes))
            })
            .map_err(|e| ServiceError::internal("cannot read the ledger", e))?
            .map_err(|e| ServiceError::internal("cannot read the record locator", e))?;
        let chain_id = self.node.store().genesis().chain_id.clone();
        let ask = |node: PublicKey, endpoint: &str| -> Result<Vec<Value>, String> {
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce).map_err(|_| "no randomness".to_string())?;
            let signed = PeerRequest {
                chain_id: chain_id.clone(),
                from: me,
                to: node,
                height,
                issued_ms: now_ms(),
                nonce,
                actor: s.did.public_key(),
                proof: proof.clone(),
                purpose: purpose.code.clone(),
                patient: patient.public_key(),
                query: query.clone(),
            }
            .sign(&self.key);
            let raw = transport.post(endpoint, encode(&signed))?;
            if raw.len() > MAX_PEER_ANSWER {
                return Err("answer too large".into());
            }
            let answer: SignedPeerAnswer =
                borsh::from_slice(&raw).map_err(|_| "not a peer answer".to_string())?;
            if !answer.verifies(&node) || answer.answer.request != signed.hash() {
                return Err("the answer is not signed by the node for this request".into());
            }
            match answer.answer.outcome {
                PeerOutcome::Served { resources } => serde_json::from_slice(&resources)
                    .map_err(|_| "the answer's records are not JSON".to_string()),
                PeerOutcome::Refused { refusal, message } => {
                    Err(format!("refused ({}): {message}", refusal.code()))
                }
            }
        };
        let answers: Vec<(PublicKey, String, Result<Vec<Value>, String>)> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = nodes
                    .iter()
                    .map(|(node, endpoint)| {
                        let ask = &ask;
                        scope.spawn(move || (*node, endpoint.clone(), ask(*node, endpoint)))
                    })
                    .collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
        let local = self.linked_patient(patient);
        let what = local.clone().unwrap_or_else(|| "Patient".into());
        let mut out = Gathered::default();
        for (node, endpoint, result) in answers {
            let (outcome, note) = match &result {
                Ok(rs) => (
                    Outcome::Success,
                    format!(
                        "asked node {} for {}: {} records",
                        node.did(),
                        query_name(query),
                        rs.len()
                    ),
                ),
                Err(e) => (
                    Outcome::Refused,
                    format!("asked node {} for {}: {e}", node.did(), query_name(query)),
                ),
            };
            self.audit(
                s,
                purpose,
                AuditEntry::new(
                    match query {
                        PeerQuery::AccessLog => Interaction::AccessLog,
                        _ => Interaction::SearchType,
                    },
                    &what,
                    local.as_deref(),
                    outcome,
                    &note,
                ),
            );
            match result {
                Ok(rs) => out
                    .resources
                    .extend(rs.into_iter().map(|r| (endpoint.clone(), r))),
                Err(reason) => out.unavailable.push(Unavailable {
                    node: node.did().to_string(),
                    endpoint,
                    reason,
                }),
            }
        }
        Ok(out)
    }
}

fn query_name(q: &PeerQuery) -> String {
    match q {
        PeerQuery::Search { resource_type, .. } => format!("a {resource_type} search"),
        PeerQuery::Everything => "$everything".into(),
        PeerQuery::AccessLog => "her access log".into(),
    }
}
