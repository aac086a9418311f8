//! The node: mempool + block producer thread driving the ledger application.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use carechain_consensus::Executed;
use carechain_consensus::{Application, Ledger, LedgerError};
use carechain_crypto::{Hash, PublicKey, SecretKey};
use carechain_storage::{Snapshot, StorageError, Store};
use carechain_types::{Block, SignedTx, TxBody};
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::{
    Admitted, NodeMetrics, SubmitError,
    mempool::{Pending, Queue, precheck, presign},
};

/// Tunables of block production and admission.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Cut a block at least this often when transactions are pending. Unless
    /// `fixed_interval`, pending transactions are cut into a block at once when no block is
    /// being committed (group commit: while one block is made durable, the next one fills).
    pub block_interval: Duration,
    /// Cut blocks only every `block_interval` (or when full), even when the node is idle:
    /// fewer, larger blocks on a quiet chain, at the price of latency.
    pub fixed_interval: bool,
    /// Cut a block as soon as this many transactions are pending.
    pub max_block_txs: usize,
    /// Most pending transactions; beyond it, submissions get [`SubmitError::Busy`].
    pub mempool_capacity: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            block_interval: Duration::from_millis(20),
            fixed_interval: false,
            max_block_txs: 8_192,
            mempool_capacity: 200_000,
        }
    }
}

/// Node failures.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The ledger or its storage failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node stopped after a fatal error.
    #[error("the node stopped after a fatal error")]
    Stopped,
    /// The producer thread could not start.
    #[error("could not start the block producer: {0}")]
    Spawn(String),
}

/// Milliseconds since the Unix epoch (the proposer's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Shared {
    ledger: Ledger,
    config: NodeConfig,
    queue: Mutex<Queue>,
    wake: Condvar,
    stop: AtomicBool,
    failed: AtomicBool,
    /// A block is being made durable (cleared, and the producer woken, under the queue lock).
    committing: AtomicBool,
    metrics: NodeMetrics,
    committed: watch::Sender<u64>,
    durable: (Mutex<u64>, Condvar),
    publish_latencies: Mutex<Vec<Duration>>,
    /// Counts admissions (an external engine waits on it for transactions to propose).
    admissions: watch::Sender<u64>,
    /// Passes newly admitted transactions on (a cluster's mempool gossip).
    gossip: parking_lot::RwLock<Option<Gossip>>,
    /// The consensus engine's metrics, when one orders this node's blocks.
    engine_metrics: parking_lot::RwLock<Option<EngineMetrics>>,
    /// Checkpoint cosignatures by log size (this validator's and those peers sent), with the
    /// height of the block that produced the checkpoint once it is durable here.
    cosignatures: Mutex<std::collections::BTreeMap<u64, Cosigned>>,
    /// Passes this validator's cosignatures on (to the other validators).
    cosign_out: parking_lot::RwLock<Option<CosignGossip>>,
    /// The checkpoint cosigners (the validators) of recent epochs, by epoch.
    cosigner_sets: Mutex<std::collections::BTreeMap<u64, Arc<CosignerSet>>>,
    /// Consensus faults the engine reported, oldest first (at most [`MAX_FAULTS`]).
    faults: Mutex<Vec<Fault>>,
}

/// How many consensus faults a node keeps to show (the oldest go first).
pub const MAX_FAULTS: usize = 1_000;

/// A consensus fault of a validator, observed by this node's engine, with its proof: the
/// offender's own signed messages, opaque here (the engine's encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The consensus epoch.
    pub epoch: u64,
    /// The view (round) in the epoch.
    pub view: u64,
    /// The offender's identity (`did:key`).
    pub offender: String,
    /// What it did, e.g. `conflicting_notarize` or `invalid_proposal`.
    pub kind: String,
    /// The signed messages that prove it.
    pub proof: Vec<u8>,
}

/// The cosignature lines held for one checkpoint.
#[derive(Default)]
struct Cosigned {
    /// The height of the block that produced this node's checkpoint of that size.
    height: Option<u64>,
    lines: Vec<String>,
}

/// The validators of one epoch as checkpoint cosigners, and how many make a quorum.
struct CosignerSet {
    verifiers: Vec<carechain_log::CosignatureVerifier>,
    quorum: usize,
}

/// Receives this validator's cosignature lines `(log size, line)` for its peers.
pub type CosignGossip = Box<dyn Fn(u64, String) + Send + Sync>;

/// Cosignatures are kept for this many of the latest log sizes.
const COSIGNED_SIZES: usize = 1024;

/// Receives the encoded transactions this node admitted from its own clients.
pub type Gossip = Box<dyn Fn(Vec<Vec<u8>>) + Send + Sync>;

/// Renders an external consensus engine's metrics (OpenMetrics text) for `/metrics`.
pub type EngineMetrics = Box<dyn Fn() -> String + Send + Sync>;

/// A running single node.
pub struct Node {
    shared: Arc<Shared>,
    producer: Mutex<Option<JoinHandle<()>>>,
}

impl Node {
    /// Starts a node over `store`, signing with `key`, that makes its own blocks.
    pub fn start(
        store: Arc<Store>,
        key: SecretKey,
        config: NodeConfig,
    ) -> Result<Arc<Node>, NodeError> {
        Self::start_with(store, key, config, true)
    }

    /// Starts a node whose blocks are ordered by an external consensus engine: no producer
    /// thread; the engine takes transactions with [`Node::proposal`], executes blocks with
    /// the [`Node::ledger`] and commits finalized ones with [`Node::commit_finalized`].
    pub fn start_external(
        store: Arc<Store>,
        key: SecretKey,
        config: NodeConfig,
    ) -> Result<Arc<Node>, NodeError> {
        Self::start_with(store, key, config, false)
    }

    fn start_with(
        store: Arc<Store>,
        key: SecretKey,
        config: NodeConfig,
        producer: bool,
    ) -> Result<Arc<Node>, NodeError> {
        let ledger = Ledger::new(store, key)?;
        let head = ledger.store().head();
        let (committed, _) = watch::channel(head);
        let metrics = NodeMetrics::new();
        metrics.head_height.set(head as i64);
        metrics.log_size.set(ledger.store().log().size() as i64);
        let shared = Arc::new(Shared {
            ledger,
            config,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            committing: AtomicBool::new(false),
            metrics,
            committed,
            durable: (Mutex::new(head), Condvar::new()),
            publish_latencies: Mutex::new(Vec::new()),
            admissions: watch::channel(0).0,
            gossip: parking_lot::RwLock::new(None),
            engine_metrics: parking_lot::RwLock::new(None),
            cosignatures: Mutex::new(std::collections::BTreeMap::new()),
            cosign_out: parking_lot::RwLock::new(None),
            cosigner_sets: Mutex::new(std::collections::BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
        });
        if !producer {
            return Ok(Arc::new(Node {
                shared,
                producer: Mutex::new(None),
            }));
        }
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("carechain-producer".into())
            .spawn(move || produce(&s))
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        Ok(Arc::new(Node {
            shared,
            producer: Mutex::new(Some(handle)),
        }))
    }

    /// The ledger (for reads).
    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        self.shared.ledger.store()
    }

    /// A read snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.store().snapshot()
    }

    /// Metrics.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.shared.metrics
    }

    /// Sets where the consensus engine's metrics come from (a cluster validator's engine).
    pub fn set_engine_metrics(&self, source: EngineMetrics) {
        *self.shared.engine_metrics.write() = Some(source);
    }

    /// All metrics as one OpenMetrics exposition: the node's (`carechain_…`), then the
    /// consensus engine's, if one is set (p2p, simplex, marshal, the engine's runtime).
    pub fn render_metrics(&self) -> String {
        let mut out = self.shared.metrics.render();
        if let Some(engine) = self.shared.engine_metrics.read().as_ref() {
            // One exposition ends with one `# EOF`.
            if let Some(body) = out.strip_suffix("# EOF\n") {
                out.truncate(body.len());
            }
            out.push_str(&engine());
            if !out.ends_with("# EOF\n") {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("# EOF\n");
            }
        }
        out
    }

    /// Whether the node stopped after a fatal error.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Pending transactions.
    pub fn mempool_len(&self) -> usize {
        self.shared.queue.lock().len()
    }

    /// Whether a transaction is admitted but not yet durable.
    pub fn is_pending(&self, hash: &carechain_crypto::Hash) -> bool {
        self.shared.queue.lock().contains(hash)
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// A receiver of the last durable height (changes after each commit).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    /// Blocks the calling thread until the durable height exceeds `height` or `timeout`
    /// passes (for synchronous callers; async callers use [`Node::subscribe`]). Returns the
    /// durable height.
    pub fn wait_past(&self, height: u64, timeout: Duration) -> u64 {
        let (m, cv) = &self.shared.durable;
        let deadline = Instant::now() + timeout;
        let mut h = m.lock();
        while *h <= height && !self.is_failed() {
            if cv.wait_until(&mut h, deadline).timed_out() {
                break;
            }
        }
        *h
    }

    /// Checkpoint publication latencies recorded so far (cut → served), and clears them.
    pub fn take_publish_latencies(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.shared.publish_latencies.lock())
    }

    /// Submits one encoded transaction.
    pub fn submit(&self, raw: Vec<u8>) -> Result<Admitted, SubmitError> {
        self.submit_batch(vec![raw])
            .pop()
            .unwrap_or(Err(SubmitError::Storage))
    }

    /// Submits many encoded transactions (signatures are batch-verified).
    pub fn submit_batch(&self, raw: Vec<Vec<u8>>) -> Vec<Result<Admitted, SubmitError>> {
        let n = raw.len();
        self.admit_with(n, true, |chain_id, snap| precheck(chain_id, snap, &raw))
    }

    /// Submits transactions another validator gossiped (not passed on again).
    pub fn submit_gossiped(&self, raw: Vec<Vec<u8>>) -> Vec<Result<Admitted, SubmitError>> {
        let n = raw.len();
        self.admit_with(n, false, |chain_id, snap| precheck(chain_id, snap, &raw))
    }

    /// Sets where newly admitted transactions are passed on (a cluster's mempool gossip).
    pub fn set_gossip(&self, gossip: Gossip) {
        *self.shared.gossip.write() = Some(gossip);
    }

    /// Sets where this validator's checkpoint cosignatures are passed on.
    pub fn set_cosign_gossip(&self, gossip: CosignGossip) {
        *self.shared.cosign_out.write() = Some(gossip);
    }

    /// Records a cosignature line for the checkpoint at log size `size` (from a peer). Kept
    /// only if it is a valid cosignature of a validator of this chain on this node's own
    /// checkpoint at that size (or, for a size not reached yet, once it is); at most one per
    /// validator and size.
    pub fn add_cosignature(&self, size: u64, line: String) -> bool {
        if line.len() > 512 || !line.ends_with('\n') || line.matches('\n').count() != 1 {
            return false;
        }
        let head_size = self.store().log().size();
        if size > head_size + 100_000 {
            return false;
        }
        let height = self.checkpoint_height(size);
        let set = self.cosigner_set(height);
        if size <= head_size
            && self
                .own_checkpoint(size)
                .and_then(|(_, text)| valid_cosigner(&set, &text, &line))
                .is_none()
        {
            return false;
        }
        let mut all = self.shared.cosignatures.lock();
        let held = all.entry(size).or_default();
        if held.lines.len() < 2 * set.verifiers.len() && !held.lines.contains(&line) {
            held.lines.push(line);
        }
        while all.len() > COSIGNED_SIZES {
            all.pop_first();
        }
        true
    }

    /// This node's checkpoint at log size `size` and its signed body.
    fn own_checkpoint(&self, size: u64) -> Option<(String, String)> {
        let note = self.snapshot().ok()?.checkpoint(size).ok()??;
        let text = carechain_log::SignedNote::parse(&note).ok()?.text;
        Some((note, text))
    }

    /// The height of the block that produced this node's checkpoint at log size `size`, if
    /// known; else the durable head (the checkpoints cosigned are the newest ones).
    fn checkpoint_height(&self, size: u64) -> u64 {
        self.shared
            .cosignatures
            .lock()
            .get(&size)
            .and_then(|c| c.height)
            .unwrap_or_else(|| self.store().head())
    }

    /// The cosigners of the checkpoint made at `height`: the validator set in force at that
    /// height by the ledger's schedule (the genesis validators if it cannot be read).
    fn cosigner_set(&self, height: u64) -> Arc<CosignerSet> {
        cosigner_set(&self.shared, height)
    }

    /// Records a consensus fault the engine observed (once: the same epoch, view, offender
    /// and kind again is ignored), keeping the newest [`MAX_FAULTS`].
    pub fn record_fault(&self, fault: Fault) {
        let mut faults = self.shared.faults.lock();
        let same = |f: &Fault| {
            (f.epoch, f.view, &f.offender, &f.kind)
                == (fault.epoch, fault.view, &fault.offender, &fault.kind)
        };
        if faults.iter().any(same) {
            return;
        }
        if faults.len() == MAX_FAULTS {
            faults.remove(0);
        }
        faults.push(fault);
    }

    /// The consensus faults recorded, oldest first.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults.lock().clone()
    }

    /// The latest checkpoint cosigned by a quorum of validators (this node's signed note
    /// followed by one valid cosignature line per cosigning validator), or, when none has a
    /// quorum yet, the latest checkpoint with the cosignatures it has. `None` before the
    /// first block.
    pub fn cosigned_checkpoint(&self) -> Option<String> {
        let sizes: Vec<u64> = self
            .shared
            .cosignatures
            .lock()
            .keys()
            .rev()
            .copied()
            .collect();
        let mut fallback = None;
        for size in sizes {
            let Some((note, text)) = self.own_checkpoint(size) else {
                continue;
            };
            let lines = self
                .shared
                .cosignatures
                .lock()
                .get(&size)
                .map(|c| c.lines.clone())
                .unwrap_or_default();
            let set = self.cosigner_set(self.checkpoint_height(size));
            let mut seen = Vec::new();
            let mut out = note;
            for l in lines {
                if let Some(who) = valid_cosigner(&set, &text, &l)
                    && !seen.contains(&who)
                {
                    seen.push(who);
                    out.push_str(&l);
                }
            }
            if seen.len() >= set.quorum {
                return Some(out);
            }
            if fallback.is_none() {
                fallback = Some(out);
            }
        }
        fallback.or_else(|| self.store().latest_checkpoint())
    }

    /// The checkpoint cosigners (verifier keys) of the validator set in force at the durable
    /// head, and how many make a quorum.
    pub fn cosigners(&self) -> (Vec<String>, usize) {
        let set = self.cosigner_set(self.store().head());
        (
            set.verifiers.iter().map(|c| c.to_vkey()).collect(),
            set.quorum,
        )
    }

    /// A receiver that changes whenever transactions are admitted.
    pub fn admissions(&self) -> watch::Receiver<u64> {
        self.shared.admissions.subscribe()
    }

    /// Up to `max` pending transactions for a proposal, in admission order, with the keys
    /// that checked their signatures; they stay pending until a block with them is final.
    /// `skip` names transactions already in an executed block that is not final yet.
    pub fn proposal(
        &self,
        max: usize,
        skip: impl Fn(&Hash) -> bool,
    ) -> (Vec<SignedTx>, Vec<Option<PublicKey>>) {
        self.shared
            .queue
            .lock()
            .peek(max, skip)
            .into_iter()
            .map(|p| (p.tx.clone(), Some(p.verified_key)))
            .unzip()
    }

    /// For each transaction hash, the key that already checked its signature when this node
    /// admitted it (`None`: not pending here, so not checked yet). A transaction's hash covers
    /// its signature, so a block's copy is the very transaction that was checked.
    pub fn verified_keys(&self, tx_hashes: &[Hash]) -> Vec<Option<PublicKey>> {
        let q = self.shared.queue.lock();
        tx_hashes.iter().map(|h| q.verified_key(h)).collect()
    }

    /// Makes a block finalized by an external engine durable (executed by this node on its
    /// parent), then drops its transactions and those it made stale from the mempool and
    /// wakes waiters. A failure is fatal, as for the node's own blocks. Returns the signed
    /// checkpoint.
    pub fn commit_finalized(
        &self,
        block: &Block,
        executed: &Executed,
    ) -> Result<String, NodeError> {
        let s = &self.shared;
        if s.failed.load(Ordering::SeqCst) {
            return Err(NodeError::Stopped);
        }
        let t = Instant::now();
        let checkpoint = match s.ledger.finalize(block, executed) {
            Ok(c) => c,
            Err(e) => {
                fail(s, &e.to_string());
                return Err(e.into());
            }
        };
        s.metrics.commit_seconds.observe(t.elapsed().as_secs_f64());
        cosign(s, &checkpoint, block.header.height);
        {
            let mut q = s.queue.lock();
            let snap = s.ledger.store().snapshot()?;
            q.finalized(&block.txs, &snap);
            s.metrics.mempool_size.set(q.len() as i64);
        }
        published(s, block, executed);
        Ok(checkpoint)
    }

    /// Signs `bodies` with `key` and submits them, in order. The signatures are made here, so
    /// they are not verified again (the bulk of [`Node::submit_batch`]'s work); the signer
    /// must be registered with `key` as its current key.
    pub fn sign_and_submit(
        &self,
        key: &SecretKey,
        bodies: Vec<TxBody>,
    ) -> Vec<Result<Admitted, SubmitError>> {
        let n = bodies.len();
        self.admit_with(n, true, |chain_id, snap| {
            presign(chain_id, snap, key, bodies)
        })
    }

    /// Admission of `n` transactions checked by `check` (outside the queue lock); `gossip`:
    /// pass the admitted ones on.
    fn admit_with(
        &self,
        n: usize,
        gossip: bool,
        check: impl FnOnce(&str, &Snapshot) -> Vec<Result<(SignedTx, Hash, PublicKey), SubmitError>>,
    ) -> Vec<Result<Admitted, SubmitError>> {
        let s = &self.shared;
        if s.failed.load(Ordering::SeqCst) || s.stop.load(Ordering::SeqCst) {
            return (0..n).map(|_| Err(SubmitError::Stopped)).collect();
        }
        // Refuse early, before any decoding or signature work, when the mempool is full.
        if s.queue.lock().len() + n > s.config.mempool_capacity {
            let labels = vec![("code".to_string(), "busy".to_string())];
            s.metrics
                .txs_refused
                .get_or_create(&labels)
                .inc_by(n as u64);
            return (0..n).map(|_| Err(SubmitError::Busy)).collect();
        }
        let chain_id = &s.ledger.store().genesis().chain_id;
        let checked = match s.ledger.store().snapshot() {
            Ok(snap) => check(chain_id, &snap),
            Err(_) => return (0..n).map(|_| Err(SubmitError::Storage)).collect(),
        };
        let mut out = Vec::with_capacity(checked.len());
        let passing_on = gossip && s.gossip.read().is_some();
        let mut gossiped = Vec::new();
        let mut q = s.queue.lock();
        // The snapshot is taken under the queue lock, so it is ordered with respect to
        // commits: the producer updates the queue's nonce book under the same lock.
        let snap = match s.ledger.store().snapshot() {
            Ok(snap) => snap,
            Err(_) => return (0..n).map(|_| Err(SubmitError::Storage)).collect(),
        };
        for c in checked {
            let r = c.and_then(|(tx, hash, key)| {
                let raw = passing_on.then(|| carechain_types::encode(&tx));
                let r = q.admit(&snap, s.config.mempool_capacity, tx, hash, key);
                if let (Ok(_), Some(raw)) = (&r, raw) {
                    gossiped.push(raw);
                }
                r
            });
            match &r {
                Ok(_) => {
                    s.metrics.txs_admitted.inc();
                }
                Err(e) => {
                    let labels = vec![("code".to_string(), e.code().to_string())];
                    s.metrics.txs_refused.get_or_create(&labels).inc();
                }
            }
            out.push(r);
        }
        s.metrics.mempool_size.set(q.len() as i64);
        drop(q);
        s.wake.notify_one();
        s.admissions.send_modify(|n| *n += 1);
        if !gossiped.is_empty()
            && let Some(g) = s.gossip.read().as_ref()
        {
            g(gossiped);
        }
        out
    }

    /// Stops block production after the block in progress and waits for the producer.
    pub fn shutdown(&self) {
        {
            // Set under the queue lock: the producer checks the flag under it before waiting,
            // so the wake-up cannot be lost.
            let _q = self.shared.queue.lock();
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        self.shared.wake.notify_all();
        if let Some(h) = self.producer.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Waits until a block should be cut (transactions pending and no block being committed,
/// enough transactions, the interval elapsed, or stop) and takes its transactions. Empty
/// means: stop.
fn next_batch(s: &Shared) -> Vec<Pending> {
    let mut q = s.queue.lock();
    let deadline = Instant::now() + s.config.block_interval;
    loop {
        if s.stop.load(Ordering::SeqCst) || q.len() >= s.config.max_block_txs {
            break;
        }
        if q.len() == 0 {
            s.wake.wait(&mut q);
            continue;
        }
        if !s.config.fixed_interval && !s.committing.load(Ordering::SeqCst) {
            break;
        }
        if s.wake.wait_until(&mut q, deadline).timed_out() {
            break;
        }
    }
    let taken = q.take(s.config.max_block_txs);
    s.metrics.mempool_size.set(q.len() as i64);
    taken
}

/// A block being committed by its own thread while the next one is executed.
struct InFlight {
    data: Arc<(Block, Executed)>,
    handle: JoinHandle<bool>,
}

/// The block producer: executes block k+1 while block k is being made durable (at most one
/// block in flight), then hands it to a committer thread. Blocks are committed in order: each
/// commit starts only after the previous one finished.
fn produce(s: &Arc<Shared>) {
    let mut inflight: Option<InFlight> = None;
    loop {
        let batch = next_batch(s);
        if batch.is_empty() {
            // Stop requested and nothing pending: finish the block in flight.
            if let Some(f) = inflight.take() {
                let _ = f.handle.join();
            }
            return;
        }
        let cut = Instant::now();
        let (txs, verified): (Vec<_>, Vec<_>) = batch
            .iter()
            .map(|p| (p.tx.clone(), Some(p.verified_key)))
            .unzip();
        let parent = inflight.as_ref().map(|f| f.data.clone());
        let proposed = s.ledger.propose_after(
            parent.as_deref().map(|(b, e)| (b, e)),
            txs,
            verified,
            now_ms(),
        );
        // The previous block must be durable before this one is committed.
        if let Some(f) = inflight.take()
            && !f.handle.join().unwrap_or(false)
        {
            return;
        }
        let (block, executed) = match proposed {
            Ok(p) => p,
            Err(e) => {
                fail(s, &e.to_string());
                return;
            }
        };
        let data = Arc::new((block, executed));
        s.committing.store(true, Ordering::SeqCst);
        let (sh, d) = (s.clone(), data.clone());
        let handle = std::thread::Builder::new()
            .name("carechain-commit".into())
            .spawn(move || commit(&sh, &d, &batch, cut));
        match handle {
            Ok(handle) => inflight = Some(InFlight { data, handle }),
            Err(e) => {
                fail(s, &e.to_string());
                return;
            }
        }
    }
}

fn fail(s: &Shared, error: &str) {
    // A failed durable write is fatal: stop producing and refuse submissions.
    tracing::error!(error, "block production failed; node stops producing");
    s.failed.store(true, Ordering::SeqCst);
    let _g = s.durable.0.lock();
    s.durable.1.notify_all();
}

/// Makes one block durable, then wakes waiters and updates the books. Returns success.
fn commit(s: &Shared, data: &(Block, Executed), batch: &[Pending], cut: Instant) -> bool {
    let (block, executed) = data;
    let t = Instant::now();
    let result = s.ledger.finalize(block, executed);
    s.metrics.commit_seconds.observe(t.elapsed().as_secs_f64());
    match result {
        Ok(checkpoint) => cosign(s, &checkpoint, block.header.height),
        Err(e) => {
            fail(s, &e.to_string());
            return false;
        }
    }
    // The next block may be cut now (the producer checks the flag under the queue lock).
    let publish = cut.elapsed();
    s.metrics
        .checkpoint_publish_seconds
        .observe(publish.as_secs_f64());
    {
        let mut l = s.publish_latencies.lock();
        if l.len() < 1_000_000 {
            l.push(publish);
        }
    }
    {
        let mut q = s.queue.lock();
        q.committed(batch.iter().map(|p| (&p.tx.body.signer, &p.hash)));
        s.committing.store(false, Ordering::SeqCst);
    }
    s.wake.notify_one();
    published(s, block, executed);
    true
}

/// The cosigner (validator did) of `set` whose valid cosignature `line` is on the checkpoint
/// body `text`.
fn valid_cosigner(set: &CosignerSet, text: &str, line: &str) -> Option<String> {
    let sig = carechain_log::NoteSignature::parse_line(line.strip_suffix('\n')?).ok()?;
    set.verifiers
        .iter()
        .find(|c| c.check(text, &sig).is_ok())
        .map(|c| c.name.clone())
}

/// How many epochs' cosigner sets are kept.
const COSIGNER_EPOCHS: usize = 4;

/// The validators in force at `height` as checkpoint cosigners (kept per epoch: sets change
/// only at an epoch's first height).
fn cosigner_set(s: &Shared, height: u64) -> Arc<CosignerSet> {
    let epoch = height / carechain_types::EPOCH_LENGTH;
    if let Some(set) = s.cosigner_sets.lock().get(&epoch) {
        return set.clone();
    }
    let verifiers = match s.ledger.validator_schedule() {
        Ok(schedule) => carechain_consensus::cosigners_of(schedule.at(height)),
        Err(e) => {
            tracing::warn!(error = %e, "validator schedule unreadable; genesis cosigners");
            carechain_consensus::validator_cosigners(s.ledger.store().genesis())
        }
    };
    let set = Arc::new(CosignerSet {
        quorum: carechain_consensus::cosign_quorum(verifiers.len()),
        verifiers,
    });
    // Only a set whose epoch is fixed (its first height reached) is kept.
    if height <= s.ledger.store().head() {
        let mut sets = s.cosigner_sets.lock();
        sets.insert(epoch, set.clone());
        while sets.len() > COSIGNER_EPOCHS {
            sets.pop_first();
        }
    }
    set
}

/// This validator cosigns the checkpoint it just published (by the block at `height`), keeps
/// the line and passes it on.
fn cosign(s: &Shared, checkpoint: &str, height: u64) {
    let Ok(parsed) = carechain_log::SignedNote::parse(checkpoint) else {
        return;
    };
    let Ok(cp) = carechain_log::Checkpoint::parse_text(&parsed.text) else {
        return;
    };
    let line = s.ledger.cosign(&parsed.text, now_ms() / 1000);
    {
        let mut all = s.cosignatures.lock();
        let held = all.entry(cp.size).or_default();
        held.height = Some(height);
        // One line of our own per size: the newest.
        let me = s.ledger.node_key().did().to_string();
        let prefix = format!("\u{2014} {me} ");
        held.lines.retain(|l| !l.starts_with(&prefix));
        held.lines.push(line.clone());
        while all.len() > COSIGNED_SIZES {
            all.pop_first();
        }
    }
    if let Some(g) = s.cosign_out.read().as_ref() {
        g(cp.size, line);
    }
}

/// After a block became durable: metrics, and wake everybody waiting for it.
fn published(s: &Shared, block: &Block, executed: &Executed) {
    let receipts = &executed.execution.receipts;
    let applied = executed.execution.applied.len() as u64;
    s.metrics.txs_applied.inc_by(applied);
    s.metrics
        .txs_rejected
        .inc_by(receipts.len() as u64 - applied);
    s.metrics.blocks.inc();
    s.metrics.head_height.set(block.header.height as i64);
    s.metrics.log_size.set(block.header.log_size as i64);
    let _ = s.committed.send(block.header.height);
    {
        let (m, cv) = &s.durable;
        *m.lock() = block.header.height;
        cv.notify_all();
    }
}
