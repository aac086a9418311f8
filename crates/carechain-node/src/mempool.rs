//! The mempool: admission checks and the ordered queue of pending transactions.

use std::collections::{HashMap, HashSet, VecDeque};

use borsh::BorshDeserialize;
use carechain_crypto::{BatchItem, Hash, Namespace, PublicKey, verify_batch};
use carechain_state::{Identity, StateView, identity_key};
use carechain_storage::Snapshot;
use carechain_types::{DecodeError, Payload, Role, SignedTx, decode_tx, encode};

/// Why a transaction was not admitted. Each has a stable code and an HTTP status.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The bytes are not a transaction (or too large).
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The bytes exceed the size limit.
    #[error("transaction too large: {0}")]
    TooLarge(String),
    /// The chain id is not this chain's.
    #[error("transaction is for chain {got:?}, this node serves {want:?}")]
    WrongChain {
        /// The node's chain.
        want: String,
        /// The transaction's chain.
        got: String,
    },
    /// The signer is not registered (and this is not a patient self-registration).
    #[error("signer is not a registered identity")]
    UnknownSigner,
    /// The signer is deactivated.
    #[error("signer identity is deactivated")]
    SignerDeactivated,
    /// The signature does not verify under the signer's current key.
    #[error("signature does not verify under the signer's current key")]
    BadSignature,
    /// The nonce was already used.
    #[error("nonce {got} was already used (next is {expected})")]
    NonceReplayed {
        /// Next valid nonce.
        expected: u64,
        /// Nonce given.
        got: u64,
    },
    /// The nonce skips ahead.
    #[error("nonce {got} skips ahead (next is {expected})")]
    NonceGap {
        /// Next valid nonce.
        expected: u64,
        /// Nonce given.
        got: u64,
    },
    /// Already pending or committed.
    #[error("transaction {0} is already pending or committed")]
    Duplicate(String),
    /// The mempool is full: retry later.
    #[error("node is busy: mempool is full, retry later")]
    Busy,
    /// The node stopped after a fatal error.
    #[error("node has stopped after a fatal storage error")]
    Stopped,
    /// Internal storage read failure.
    #[error("storage read failed")]
    Storage,
}

impl SubmitError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::Malformed(_) => "malformed_tx",
            SubmitError::TooLarge(_) => "tx_too_large",
            SubmitError::WrongChain { .. } => "wrong_chain",
            SubmitError::UnknownSigner => "unknown_signer",
            SubmitError::SignerDeactivated => "signer_deactivated",
            SubmitError::BadSignature => "bad_signature",
            SubmitError::NonceReplayed { .. } => "nonce_replayed",
            SubmitError::NonceGap { .. } => "nonce_gap",
            SubmitError::Duplicate(_) => "duplicate_tx",
            SubmitError::Busy => "busy",
            SubmitError::Stopped => "node_stopped",
            SubmitError::Storage => "storage_error",
        }
    }
}

impl From<DecodeError> for SubmitError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TooLarge { .. } => SubmitError::TooLarge(e.to_string()),
            _ => SubmitError::Malformed(e.to_string()),
        }
    }
}

/// An admitted transaction.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// Its hash (id).
    pub hash: Hash,
}

pub(crate) struct Pending {
    pub tx: SignedTx,
    pub hash: Hash,
    pub verified_key: PublicKey,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub queue: VecDeque<Pending>,
    /// Pending (or in-flight) transactions by hash, with the key that checked each signature.
    hashes: HashMap<Hash, PublicKey>,
    /// signer → (next nonce after its pending txs, number of its txs pending or in flight)
    nonces: HashMap<PublicKey, (u64, usize)>,
}

/// The signer's key and next nonce as the state sees them.
fn signer_view(snap: &Snapshot, tx: &SignedTx) -> Result<(PublicKey, u64), SubmitError> {
    let raw = snap
        .get(&identity_key(&tx.body.signer))
        .map_err(|_| SubmitError::Storage)?;
    match raw {
        Some(bytes) => {
            let ident = Identity::try_from_slice(&bytes).map_err(|_| SubmitError::Storage)?;
            if !ident.active {
                return Err(SubmitError::SignerDeactivated);
            }
            Ok((ident.current_key, ident.next_nonce))
        }
        None => match &tx.body.payload {
            Payload::Register {
                subject,
                role: Role::Patient,
                parent: None,
            } if *subject == tx.body.signer => Ok((tx.body.signer, 0)),
            _ => Err(SubmitError::UnknownSigner),
        },
    }
}

/// Refuses a transaction for another chain.
fn same_chain(chain_id: &str, body: &carechain_types::TxBody) -> Result<(), SubmitError> {
    if body.chain_id == chain_id {
        Ok(())
    } else {
        Err(SubmitError::WrongChain {
            want: chain_id.into(),
            got: body.chain_id.clone(),
        })
    }
}

/// Signs `bodies` with `key` (no lock held). The signatures are made here, so they need no
/// check; the signer must be registered with `key` as its current key.
pub(crate) fn presign(
    chain_id: &str,
    snap: &Snapshot,
    key: &carechain_crypto::SecretKey,
    bodies: Vec<carechain_types::TxBody>,
) -> Vec<Result<(SignedTx, Hash, PublicKey), SubmitError>> {
    bodies
        .into_iter()
        .map(|body| {
            same_chain(chain_id, &body)?;
            let tx = body.sign(key);
            let (current, _) = signer_view(snap, &tx)?;
            if current != key.public() {
                return Err(SubmitError::BadSignature);
            }
            let hash = tx.hash();
            Ok((tx, hash, current))
        })
        .collect()
}

/// Decodes and signature-checks a batch (no lock held). Returns per input the decoded tx
/// with the key that verified it, or the error.
pub(crate) fn precheck(
    chain_id: &str,
    snap: &Snapshot,
    raw: &[Vec<u8>],
) -> Vec<Result<(SignedTx, Hash, PublicKey), SubmitError>> {
    let mut out: Vec<Result<(SignedTx, Hash, PublicKey), SubmitError>> = raw
        .iter()
        .map(|bytes| {
            let tx = decode_tx(bytes)?;
            same_chain(chain_id, &tx.body)?;
            let (key, _) = signer_view(snap, &tx)?;
            let hash = carechain_crypto::sha256(bytes);
            Ok((tx, hash, key))
        })
        .collect();
    let bodies: Vec<Option<Vec<u8>>> = out
        .iter()
        .map(|r| r.as_ref().ok().map(|(tx, _, _)| encode(&tx.body)))
        .collect();
    let idx: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_ok()).collect();
    for chunk in idx.chunks(256) {
        let items: Vec<BatchItem<'_>> = chunk
            .iter()
            .filter_map(|&i| {
                let (tx, _, key) = out[i].as_ref().ok()?;
                Some(BatchItem {
                    key,
                    ns: Namespace::Transaction,
                    message: bodies[i].as_deref()?,
                    sig: &tx.signature,
                })
            })
            .collect();
        if verify_batch(&items).is_ok() {
            continue;
        }
        let bad: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| match (&out[i], &bodies[i]) {
                (Ok((tx, _, key)), Some(body)) => key
                    .verify(Namespace::Transaction, body, &tx.signature)
                    .is_err(),
                _ => false,
            })
            .collect();
        for i in bad {
            out[i] = Err(SubmitError::BadSignature);
        }
    }
    out
}

impl Queue {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains_key(hash)
    }

    /// Nonce and duplicate checks against fresh state, then enqueue.
    pub fn admit(
        &mut self,
        snap: &Snapshot,
        capacity: usize,
        tx: SignedTx,
        hash: Hash,
        verified_key: PublicKey,
    ) -> Result<Admitted, SubmitError> {
        if self.hashes.contains_key(&hash) {
            return Err(SubmitError::Duplicate(hash.to_hex()));
        }
        if self.queue.len() >= capacity {
            return Err(SubmitError::Busy);
        }
        let (_, state_nonce) = signer_view(snap, &tx)?;
        let signer = tx.body.signer;
        let expected = self.nonces.get(&signer).map_or(state_nonce, |(n, _)| *n);
        let got = tx.body.nonce;
        if got < expected {
            // Only a transaction with a used nonce can be one already committed: the tx index
            // is asked then, not for every fresh transaction.
            if snap
                .tx_location(&hash)
                .map_err(|_| SubmitError::Storage)?
                .is_some()
            {
                return Err(SubmitError::Duplicate(hash.to_hex()));
            }
            return Err(SubmitError::NonceReplayed { expected, got });
        }
        if got > expected {
            return Err(SubmitError::NonceGap { expected, got });
        }
        let e = self.nonces.entry(signer).or_insert((expected, 0));
        e.0 = expected + 1;
        e.1 += 1;
        self.hashes.insert(hash, verified_key);
        self.queue.push_back(Pending {
            tx,
            hash,
            verified_key,
        });
        Ok(Admitted { hash })
    }

    /// Takes up to `max` transactions for the next block (they stay counted as in flight).
    pub fn take(&mut self, max: usize) -> Vec<Pending> {
        let n = max.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    /// The key that checked the signature of the pending transaction `hash`, if any.
    pub fn verified_key(&self, hash: &Hash) -> Option<PublicKey> {
        self.hashes.get(hash).copied()
    }

    /// Up to `max` pending transactions in queue order, left in the queue, skipping those
    /// `skip` names (already in a block that is not final yet).
    pub fn peek(&self, max: usize, skip: impl Fn(&Hash) -> bool) -> Vec<&Pending> {
        self.queue
            .iter()
            .filter(|p| !skip(&p.hash))
            .take(max)
            .collect()
    }

    /// Drops the transactions of a block finalized by consensus (whether or not this node
    /// admitted them) and those it made stale: a pending transaction whose nonce the block
    /// used up can never apply. The books are updated for what goes, not rebuilt: a signer's
    /// remaining transactions all have higher nonces than its dropped ones (a block uses a
    /// signer's lowest nonces, and every lower one is stale), so its next nonce stays.
    pub fn finalized(&mut self, block: &[SignedTx], snap: &Snapshot) {
        let mut used: HashMap<PublicKey, u64> = HashMap::new();
        let mut gone: HashSet<Hash> = HashSet::new();
        for tx in block {
            let h = tx.hash();
            if self.hashes.contains_key(&h) {
                gone.insert(h);
            }
            used.entry(tx.body.signer).or_insert(0);
        }
        // Next nonce of every signer of the block, as the new state says.
        for (signer, next) in used.iter_mut() {
            *next = snap
                .get(&identity_key(signer))
                .ok()
                .flatten()
                .and_then(|b| Identity::try_from_slice(&b).ok())
                .map_or(0, |i| i.next_nonce);
        }
        let (hashes, nonces) = (&mut self.hashes, &mut self.nonces);
        self.queue.retain(|p| {
            let stays = !gone.contains(&p.hash)
                && used
                    .get(&p.tx.body.signer)
                    .is_none_or(|next| p.tx.body.nonce >= *next);
            if !stays {
                hashes.remove(&p.hash);
                if let Some(e) = nonces.get_mut(&p.tx.body.signer) {
                    e.1 = e.1.saturating_sub(1);
                    if e.1 == 0 {
                        nonces.remove(&p.tx.body.signer);
                    }
                }
            }
            stays
        });
    }

    /// Forgets transactions once their block is durable.
    pub fn committed<'a>(&mut self, txs: impl Iterator<Item = (&'a PublicKey, &'a Hash)>) {
        for (signer, hash) in txs {
            self.hashes.remove(hash);
            if let Some(e) = self.nonces.get_mut(signer) {
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
                    self.nonces.remove(signer);
                }
            }
        }
    }
}
