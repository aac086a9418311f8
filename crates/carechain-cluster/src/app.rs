//! Commonware's application side: build a block from the mempool on the parent consensus
//! names, verify a block by re-executing it, and commit finalized blocks in order (marshal's
//! reporter).

use std::{sync::Arc, time::Duration};

use carechain_crypto::Hash;
use commonware_actor::Feedback;
use commonware_consensus::{
    Reporter,
    marshal::{Update, ancestry::Ancestry},
    simplex::types::{Activity, Context},
    types::Epoch,
};
use commonware_cryptography::{Digested, ed25519::PublicKey, sha256::Digest};
use commonware_runtime::{Clock, Spawner};
use commonware_utils::{Acknowledgement, acknowledgement::Exact};
use futures::StreamExt;

use crate::{
    Scheme,
    block::{ChainBlock, hash_of},
    chain::{Chain, ChainError},
    entered::Entered,
    epoch::{EpochSchemes, epoch_of},
    evidence::{Evidence, EvidenceLog},
};
use carechain_types::Block;

/// How far into the future a proposer's timestamp may be, by the verifier's clock.
pub const MAX_FUTURE_SKEW_MS: u64 = 5_000;
/// How far into the past a fresh proposal's timestamp may be, by the verifier's clock.
pub const MAX_PAST_SKEW_MS: u64 = 60_000;

/// Fault injection for tests: turns each block this validator proposes into another one
/// (say, with a wrong state root, re-sealed), as a Byzantine proposer would.
#[derive(Clone)]
pub struct ProposalFault(pub Arc<dyn Fn(Block) -> Block + Send + Sync>);

impl std::fmt::Debug for ProposalFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProposalFault")
    }
}

/// The application consensus drives (through marshal's inline wrapper).
#[derive(Clone)]
pub struct App {
    chain: Arc<Chain>,
    /// How long a leader with an empty mempool waits for transactions before proposing an
    /// empty block on a parent that is not final yet.
    pub idle_wait: Duration,
    /// The longest the leader of an epoch's first block waits for the epoch's validators to
    /// enter it (those still making the previous epoch's last block durable).
    pub epoch_start_wait: Duration,
    schemes: EpochSchemes,
    entered: Arc<Entered>,
    evidence: EvidenceLog,
    fault: Option<ProposalFault>,
}

impl App {
    /// The application over `chain`, with the leader's waits (`idle_wait`,
    /// `epoch_start_wait`, see the fields; who has `entered` an epoch ends the latter);
    /// invalid proposals of a validator of the proposal's epoch (`schemes`) are recorded in
    /// `evidence`.
    pub fn new(
        chain: Arc<Chain>,
        (idle_wait, epoch_start_wait): (Duration, Duration),
        entered: Arc<Entered>,
        schemes: EpochSchemes,
        evidence: EvidenceLog,
        fault: Option<ProposalFault>,
    ) -> App {
        App {
            chain,
            idle_wait,
            epoch_start_wait,
            entered,
            schemes,
            evidence,
            fault,
        }
    }

    /// Executes every block of `ancestry` the chain does not hold, oldest first, until it
    /// knows the newest one's parent. Returns false when an ancestor is invalid or the
    /// ancestry ends first.
    async fn catch_up_to(&self, mut ancestry: impl Ancestry<ChainBlock>, first: &Hash) -> bool {
        let mut missing = Vec::new();
        let mut need = *first;
        while !self.chain.knows(&need) {
            let Some(b) = ancestry.next().await else {
                return false;
            };
            let Some(sealed) = b.inner().sealed() else {
                // Genesis that is not our durable tip: another chain.
                return false;
            };
            if sealed.header.hash() != need {
                continue;
            }
            need = sealed.header.parent;
            missing.push(sealed.clone());
        }
        for b in missing.iter().rev() {
            if let Err(e) = self.chain.verify(b) {
                tracing::warn!(height = b.header.height, error = %e, "ancestor does not verify");
                return false;
            }
        }
        true
    }

    /// Waits, as the leader, for something to propose on `parent`. An idle leader does not
    /// cut empty blocks on a final parent: it waits for transactions (consensus moves on to
    /// the next leader meanwhile, and cancels this). On a parent that is not final yet it
    /// waits only briefly, so that parent gets a
    /// descendant and becomes final even on a quiet chain. Idle means: nothing pending
    /// that the parent and its not-final ancestors do not already carry (a mempool holding
    /// only those would give an empty block, a height of delay for what arrives next).
    async fn wait_for_transactions<E: Clock>(&self, rt: &E, parent: &Hash) {
        let deadline = rt.sleep(self.idle_wait);
        futures::pin_mut!(deadline);
        let on_final = *parent == self.chain.node().store().head_hash();
        loop {
            let mut admissions = self.chain.node().admissions();
            if self.chain.has_proposable(parent) {
                break;
            }
            let changed = admissions.changed();
            futures::pin_mut!(changed);
            if on_final {
                if changed.await.is_err() {
                    break;
                }
            } else if let futures::future::Either::Left(_) =
                futures::future::select(&mut deadline, changed).await
            {
                break;
            }
        }
    }
}

fn now_ms<E: Clock>(context: &E) -> u64 {
    context
        .current()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<E: Clock + Send + Sync + 'static> commonware_consensus::Application<E> for App {
    type SigningScheme = Scheme;
    type Context = Context<Digest, PublicKey>;
    type Block = ChainBlock;
    type Input = ();

    async fn propose(
        &mut self,
        context: (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
        _input: (),
    ) -> Option<Digested<Self::Block>> {
        let (rt, ctx) = context;
        let parent = hash_of(&ctx.parent.1);
        if !self.chain.knows(&parent) && !self.catch_up_to(ancestry, &parent).await {
            return None;
        }
        // The first block of an epoch (after the first) is empty, proposed once every
        // validator of the epoch has entered it (at most `epoch_start_wait`; see `entered`
        // for why): an empty block is verified by all at once, so the next leader's vote is
        // not the last to arrive. (At a cold start the leader waits for transactions as
        // usual: its peers may not be connected yet.)
        let first_of_epoch = self
            .chain
            .height_after(&parent)
            .is_some_and(|h| h > 0 && h % carechain_types::EPOCH_LENGTH == 0);
        if first_of_epoch {
            let epoch = ctx.round.epoch();
            if let Some(set) = self.schemes.participants(epoch) {
                let everyone = self.entered.wait_all(epoch.get(), &set);
                let cap = rt.sleep(self.epoch_start_wait);
                futures::pin_mut!(everyone, cap);
                futures::future::select(everyone, cap).await;
            }
        } else {
            self.wait_for_transactions(&rt, &parent).await;
        }
        let max_txs = if first_of_epoch { 0 } else { usize::MAX };
        match self.chain.propose(&parent, now_ms(&rt), max_txs) {
            Ok(e) => {
                let mut block = (*e.block).clone();
                if let Some(f) = &self.fault {
                    block = (f.0)(block);
                }
                let b = ChainBlock::block(block);
                let d = commonware_cryptography::Digestible::digest(&b);
                Some(Digested::precomputed(b, d))
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not propose");
                None
            }
        }
    }

    async fn verify(
        &mut self,
        context: (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
    ) -> bool {
        let (rt, ctx) = context;
        let Some(newest) = ancestry.peek().cloned() else {
            return false;
        };
        let Some(block) = newest.inner().sealed().cloned() else {
            return false;
        };
        let height = block.header.height;
        if self.chain.is_durable(height, &block.header.hash()) {
            return true;
        }
        // The timestamp window (by this validator's clock; the state machine reads no clock).
        let now = now_ms(&rt);
        let ts = block.header.timestamp_ms;
        if ts > now + MAX_FUTURE_SKEW_MS || ts + MAX_PAST_SKEW_MS < now {
            tracing::warn!(height, "proposal timestamp outside the allowed window");
            return false;
        }
        if !self.chain.knows(&block.header.parent) {
            let mut rest = ancestry;
            let _ = rest.next().await;
            if !self.catch_up_to(rest, &block.header.parent).await {
                return false;
            }
        }
        match self.chain.verify(&block) {
            Ok(_) => true,
            Err(ChainError::UnknownParent(_)) => false,
            Err(e) => {
                // A sealed invalid block is attributable: the proposer signed it.
                tracing::warn!(height, error = %e, "proposal rejected");
                let proposer = crate::consensus_public(&block.header.proposer);
                let epoch = ctx.round.epoch();
                let index = self
                    .schemes
                    .participants(epoch)
                    .and_then(|set| set.iter().position(|p| *p == proposer));
                if let Some(i) = index {
                    self.evidence.record(Evidence {
                        epoch: epoch.get(),
                        validator: i as u32,
                        view: ctx.round.view().get(),
                        kind: "invalid_proposal",
                        offender: block.header.proposer.did().to_string(),
                        proof: crate::evidence::invalid_proposal_proof(&block),
                    });
                }
                false
            }
        }
    }
}

/// The committer of finalized blocks, fed two ways. Marshal's reporter: each finalized
/// block, in height order, which the committer commits durably and then acknowledges; marshal
/// is not held while a block is written (it keeps serving blocks and ancestry to consensus,
/// so the next height is proposed and verified meanwhile) and delivers the next finalized
/// block only after the acknowledgement. And [`Finalized`], in front of marshal on
/// consensus' reporter: the digest of each finalization certificate as soon as consensus has
/// it, which the committer commits at once when it holds the block and every not-durable
/// ancestor executed (marshal's delivery of it is then acknowledged as already durable).
/// Marshal stores the certificate and the block in its archives and syncs them before it
/// delivers; a commit need not wait for that, because a block whose certificate this node
/// lost in a crash is still final, and marshal fetches the certificate from peers before it
/// delivers anything after it. A block that cannot be committed is never acknowledged:
/// marshal stops applying blocks and the node is failed (never half-written). When marshal
/// has delivered the last block of an epoch (durable here), the committer calls `epoch_ended`
/// with the next epoch (its validator set is fixed from then on); not at a commit from the
/// certificate, because the next epoch's instance starts on that block and the validator must
/// not vote there before its marshal holds it (its verification of the first proposal would
/// wait for marshal, and the next leader's vote could come last: see `entered`).
///
/// Architecture Invariant: a block is committed only when consensus has finalized it (a
/// certificate or marshal's delivery, which follows one) and only on the durable tip.
#[derive(Clone)]
pub struct Finalizer {
    blocks: futures::channel::mpsc::UnboundedSender<(Arc<Block>, Exact)>,
    finalized: futures::channel::mpsc::UnboundedSender<Hash>,
}

/// What the committer is handed.
enum Work {
    /// Marshal's ordered delivery, to acknowledge once durable.
    Deliver(Arc<Block>, Exact),
    /// A finalization certificate's block, to commit now if held here.
    Finalized(Hash),
}

impl Finalizer {
    /// Starts the committer for `chain` on its own task of `context`.
    pub fn start<E: Spawner>(
        context: E,
        chain: Arc<Chain>,
        epoch_ended: impl Fn(Epoch) + Send + 'static,
    ) -> Finalizer {
        let (blocks, delivered) = futures::channel::mpsc::unbounded::<(Arc<Block>, Exact)>();
        let (finalized, certified) = futures::channel::mpsc::unbounded::<Hash>();
        let mut work = futures::stream::select(
            delivered.map(|(b, ack)| Work::Deliver(b, ack)),
            certified.map(Work::Finalized),
        );
        context.dedicated().spawn(move |_| async move {
            while let Some(w) = work.next().await {
                // An error carries the height of the block that could not be committed.
                let result = match w {
                    Work::Deliver(block, ack) => {
                        let height = block.header.height;
                        chain.commit(&block).map_err(|e| (height, e)).map(|_| {
                            ack.acknowledge();
                            // The next epoch starts once marshal, too, holds this epoch's
                            // last block (its instance starts on it).
                            let next = epoch_of(height + 1);
                            if next != epoch_of(height) {
                                epoch_ended(next);
                            }
                        })
                    }
                    Work::Finalized(hash) => chain.held_path(&hash).iter().try_for_each(|b| {
                        chain
                            .commit(b)
                            .map(|_| ())
                            .map_err(|e| (b.header.height, e))
                    }),
                };
                if let Err((height, e)) = result {
                    tracing::error!(height, error = %e, "finalized block not committed; stopping");
                    return;
                }
            }
        });
        Finalizer { blocks, finalized }
    }

    /// Consensus finalized the block `hash`: commit it now if it and its not-durable
    /// ancestors are held here (executed); otherwise marshal's delivery commits it.
    pub fn finalized(&self, hash: Hash) {
        // A stopped committer fails the node; marshal's path reports it.
        let _ = self.finalized.unbounded_send(hash);
    }
}

/// Consensus' reporter in front of marshal: passes every activity on, and first hands each
/// finalization certificate's block to the [`Finalizer`] (see there).
#[derive(Clone)]
pub struct Finalized<R> {
    inner: R,
    committer: Finalizer,
}

impl<R> Finalized<R> {
    /// Wraps `inner`, telling `committer` of finalizations.
    pub fn new(inner: R, committer: Finalizer) -> Self {
        Finalized { inner, committer }
    }
}

impl<R: Reporter<Activity = Activity<Scheme, Digest>>> Reporter for Finalized<R> {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        if let Activity::Finalization(f) = &activity {
            self.committer.finalized(hash_of(&f.proposal.payload));
        }
        self.inner.report(activity)
    }
}

impl Reporter for Finalizer {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Update::Tip(..) => Feedback::Ok,
            Update::Block(block, ack) => {
                let Some(sealed) = block.inner().sealed() else {
                    ack.acknowledge();
                    return Feedback::Ok;
                };
                if self.blocks.unbounded_send((sealed.clone(), ack)).is_err() {
                    // The committer stopped on a failed commit.
                    return Feedback::Closed;
                }
                Feedback::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carechain_crypto::sha256;
    use commonware_cryptography::Digestible as _;
    use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

    /// A chain of one validator over a fresh store in `dir`.
    fn chain(dir: &std::path::Path) -> Arc<Chain> {
        Arc::new(crate::chain::tests::chain(dir))
    }

    /// Two empty blocks proposed by `chain` on the durable tip, the second on the first.
    fn two_blocks(chain: &Chain) -> [Arc<Block>; 2] {
        let head = chain.node().store().head_hash();
        let b1 = chain.propose(&head, 2, 0).expect("b1").block.clone();
        let b2 = chain.propose(&b1.header.hash(), 3, 0).expect("b2");
        [b1, b2.block.clone()]
    }

    /// Delivers `block` as marshal does and waits for its acknowledgement.
    async fn deliver(committer: &Finalizer, block: &Block) {
        let block = ChainBlock::block(block.clone());
        let digest = block.digest();
        let (ack, waiter) = Exact::handle();
        let fed = committer
            .clone()
            .report(Update::Block(Digested::precomputed(block, digest), ack));
        assert!(matches!(fed, Feedback::Ok));
        waiter.await.expect("acknowledged");
    }

    #[test]
    fn a_finalization_commits_the_held_blocks_at_once_and_marshal_delivery_is_then_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = chain(dir.path());
        let node = chain.node().clone();
        deterministic::Runner::default().start(|context| async move {
            let [b1, b2] = two_blocks(&chain);
            let committer = Finalizer::start(context.child("committer"), chain.clone(), |_| {});
            let mut heights = node.subscribe();
            // Nothing happens for a block not held here; the finalization of b2 makes b1 and
            // b2 durable, in order, without any delivery by marshal.
            committer.finalized(sha256(b"not a block"));
            committer.finalized(b2.header.hash());
            while *heights.borrow_and_update() < 2 {
                heights.changed().await.expect("node running");
            }
            assert_eq!(node.store().head_hash(), b2.header.hash());
            assert_eq!(chain.pending_len(), 0, "committed blocks are forgotten");
            // Marshal delivers them later, in order: each is acknowledged as durable.
            for b in [&b1, &b2] {
                deliver(&committer, b).await;
            }
            assert_eq!(node.store().head(), 2);
        });
    }

    #[test]
    fn blocks_not_executed_here_are_left_to_marshal_which_commits_them_in_order() {
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        // A proposed (executed) two blocks; B, on the same genesis, executed neither.
        let (a, b) = (chain(dir_a.path()), chain(dir_b.path()));
        let node = b.node().clone();
        deterministic::Runner::default().start(|context| async move {
            let [b1, b2] = two_blocks(&a);
            assert!(b.held_path(&b2.header.hash()).is_empty());
            let committer = Finalizer::start(context.child("committer"), b.clone(), |_| {});
            committer.finalized(b2.header.hash());
            for (i, blk) in [&b1, &b2].into_iter().enumerate() {
                deliver(&committer, blk).await;
                assert_eq!(node.store().head(), i as u64 + 1);
            }
            assert_eq!(node.store().head_hash(), b2.header.hash());
        });
    }
}
