//! Anchoring commitments on the ledger: concurrent callers' anchors are combined into one
//! batch, signed with the node key on submission (so the node need not verify them), and each
//! caller waits until its own transactions are durable.

use std::{sync::Arc, time::Duration};

use carechain_crypto::Hash;
use carechain_node::SubmitError;
use carechain_records::{VersionMeta, Written};
use carechain_types::{Payload, TxBody};
use carechain_vault::pseudonym;
use parking_lot::Mutex;

use crate::{ErrorKind, Service, ServiceError};

/// How long a caller waits for its anchor to become durable.
const ANCHOR_WAIT: Duration = Duration::from_secs(10);

/// Anchoring requests waiting to be submitted, whether a submission is under way, and the
/// node key's next nonce (`None`: read it from the ledger; only the submitter uses it).
#[derive(Default)]
pub(crate) struct Queue {
    queue: Vec<Arc<Request>>,
    submitting: bool,
    nonce: Option<u64>,
}

/// One caller's anchors, waiting to be signed and submitted.
pub(crate) struct Request {
    anchors: Vec<Payload>,
    /// Filled by whoever submitted the request (transaction hashes in order).
    result: Mutex<Option<Result<Vec<Hash>, ServiceError>>>,
}

fn internal(m: &str) -> ServiceError {
    ServiceError::new(ErrorKind::Internal, m.to_string())
}

impl Service {
    /// An anchor with no tags (audit events: the access log says whose they are).
    pub(crate) fn plain_anchor(kind: &str, commitment: Hash) -> Payload {
        Payload::Anchor {
            kind: kind.into(),
            commitment,
        }
    }

    /// The anchor of a record version (or of its deletion or erasure): the commitment with
    /// the resource type, the version and the patient's pseudonym (a keyed hash under the
    /// node's secret; zero for resources outside any patient's compartment).
    pub(crate) fn record_anchor(&self, kind: &str, w: &Written, commitment: Hash) -> Payload {
        self.tagged_anchor(kind, &w.resource_type, &w.meta, commitment)
    }

    /// [`Service::record_anchor`] from a version's metadata.
    pub(crate) fn tagged_anchor(
        &self,
        kind: &str,
        resource_type: &str,
        meta: &VersionMeta,
        commitment: Hash,
    ) -> Payload {
        Payload::TaggedAnchor {
            kind: kind.into(),
            commitment,
            subject: meta
                .patient
                .as_deref()
                .map_or(Hash::ZERO, |p| pseudonym(&self.pseudonym_key, p)),
            label: resource_type.to_string(),
            version: meta.version,
        }
    }

    /// Anchors one payload and waits until it is durable (see [`Service::anchor_many`]).
    pub(crate) fn anchor(&self, payload: Payload) -> Result<Hash, ServiceError> {
        let hashes = self.anchor_many(vec![payload])?;
        hashes.first().copied().ok_or_else(|| internal("no anchor"))
    }

    /// Anchors several payloads in order (one transaction each), makes the staged
    /// ciphertexts durable while the block is produced, and waits until all are durable.
    pub(crate) fn anchor_many(&self, anchors: Vec<Payload>) -> Result<Vec<Hash>, ServiceError> {
        let hashes = self.submit_anchors(anchors)?;
        self.records.sync_blobs()?;
        // One signer's transactions are committed in nonce order: the last one durable means
        // all are.
        if let Some(last) = hashes.last() {
            self.wait_durable(last)?;
        }
        Ok(hashes)
    }

    /// Signs and submits anchoring transactions without waiting for their block; returns
    /// their hashes. Concurrent callers are combined: each queues its anchors; whoever finds
    /// no submission under way takes every queued request, signs and submits them as one
    /// batch (one signing pass and one mempool admission for many callers), hands out the
    /// results and wakes the others; the rest wait for their result.
    pub(crate) fn submit_anchors(&self, anchors: Vec<Payload>) -> Result<Vec<Hash>, ServiceError> {
        if anchors.is_empty() {
            return Ok(vec![]);
        }
        let mine = Arc::new(Request {
            anchors,
            result: Mutex::new(None),
        });
        let (state, cv) = &self.anchoring;
        let mut st = state.lock();
        st.queue.push(mine.clone());
        loop {
            if let Some(r) = mine.result.lock().take() {
                return r;
            }
            if st.submitting {
                cv.wait(&mut st);
                continue;
            }
            st.submitting = true;
            let batch = std::mem::take(&mut st.queue);
            let mut nonce = st.nonce;
            parking_lot::MutexGuard::unlocked(&mut st, || {
                let results = self.sign_and_submit(&mut nonce, &batch);
                for (req, r) in batch.iter().zip(results) {
                    *req.result.lock() = Some(r);
                }
            });
            st.nonce = nonce;
            st.submitting = false;
            cv.notify_all();
        }
    }

    /// Signs every request's anchors with consecutive nonces and submits them as one batch;
    /// returns each request's outcome. When the cached nonce turns out stale and nothing was
    /// admitted, it is re-read from the ledger and the batch re-signed (twice at most).
    fn sign_and_submit(
        &self,
        nonce: &mut Option<u64>,
        batch: &[Arc<Request>],
    ) -> Vec<Result<Vec<Hash>, ServiceError>> {
        let chain_id = self.node.store().genesis().chain_id.clone();
        let all: Vec<&Payload> = batch.iter().flat_map(|r| &r.anchors).collect();
        let mut attempt = 0;
        let results = loop {
            attempt += 1;
            let n0 = match *nonce {
                Some(n) => n,
                None => match self.identity(&self.key.public().did()) {
                    Some(i) => i.next_nonce,
                    None => {
                        return batch
                            .iter()
                            .map(|_| Err(internal("node identity missing")))
                            .collect();
                    }
                },
            };
            let bodies: Vec<TxBody> = all
                .iter()
                .enumerate()
                .map(|(i, payload)| TxBody {
                    chain_id: chain_id.clone(),
                    signer: self.key.public(),
                    nonce: n0 + i as u64,
                    payload: (*payload).clone(),
                })
                .collect();
            let results = self.node.sign_and_submit(&self.key, bodies);
            let accepted = results.iter().take_while(|r| r.is_ok()).count();
            *nonce = if accepted == all.len() {
                Some(n0 + accepted as u64)
            } else {
                None
            };
            let retry = accepted == 0
                && attempt < 3
                && matches!(
                    results.first(),
                    Some(Err(
                        SubmitError::NonceGap { .. } | SubmitError::NonceReplayed { .. }
                    ))
                );
            if !retry {
                break results;
            }
        };
        // Each request gets its own hashes, or the first refusal among its transactions.
        let mut at = 0;
        batch
            .iter()
            .map(|req| {
                let range = at..at + req.anchors.len();
                at = range.end;
                match results[range.clone()].iter().find_map(|r| r.as_ref().err()) {
                    None => Ok(results[range]
                        .iter()
                        .filter_map(|r| r.as_ref().ok().map(|a| a.hash))
                        .collect()),
                    Some(SubmitError::Busy) => {
                        Err(ServiceError::new(ErrorKind::Busy, "ledger is busy; retry"))
                    }
                    Some(other) => Err(internal(&other.to_string())),
                }
            })
            .collect()
    }

    /// Waits until the transaction `hash` is in a durable block.
    pub(crate) fn wait_durable(&self, hash: &Hash) -> Result<Hash, ServiceError> {
        let deadline = std::time::Instant::now() + ANCHOR_WAIT;
        loop {
            let head = self.node.store().head();
            if self.is_durable(hash) {
                return Ok(*hash);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.node.is_failed() {
                return Err(ServiceError::new(
                    ErrorKind::Busy,
                    "ledger did not commit in time",
                ));
            }
            self.node.wait_past(head, left);
        }
    }

    /// Whether the transaction `hash` is in a durable block.
    pub(crate) fn is_durable(&self, hash: &Hash) -> bool {
        self.node
            .store()
            .tx_location(hash)
            .is_ok_and(|loc| loc.is_some())
    }
}
