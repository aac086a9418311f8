//! Wiring one validator: simplex consensus (votes, certificates, its resolver), marshal
//! (block dissemination by buffered broadcast, backfill of missing blocks from peers, ordered
//! delivery of finalized blocks to the [`Finalizer`]), the inline-verification wrapper around
//! [`App`], and the mempool gossip — over any Commonware runtime and p2p network (simulated
//! in tests, authenticated TCP in `cluster up`).

use std::{
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use carechain_node::Node;
use commonware_broadcast::buffered;
use commonware_consensus::{
    marshal::{self, core::Actor, resolver::p2p as marshal_resolver, standard::Inline},
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
    },
    types::{Epoch, Height, ViewDelta},
};
use commonware_cryptography::{
    Digested, Digestible,
    certificate::Verifier as _,
    ed25519::{PrivateKey, PublicKey},
};
use commonware_p2p::{
    Blocker, Provider, Receiver, Recipients, Sender,
    utils::mux::{Builder as _, Muxer},
};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{NZU16, NZU64, NZUsize, vec::NonEmptyVec};
use futures::StreamExt;
use rand_core::CryptoRng;

use crate::{
    Scheme,
    app::{App, Finalized, Finalizer},
    block::ChainBlock,
    chain::Chain,
    early::{Early, Prepended},
    entered::{self, Entered},
    epoch::{self, EpochSchemes},
    evidence::{EvidenceLog, Recorder},
};

/// Namespace of every consensus signature (votes and certificates).
pub const CONSENSUS_NAMESPACE: &[u8] = b"carechain/v1/consensus";

/// Tunables of one validator.
#[derive(Clone, Debug)]
pub struct ValidatorConfig {
    /// Storage partition prefix (unique per validator on one storage).
    pub partition: String,
    /// How long to wait for a leader's proposal before voting to skip the view.
    pub leader_timeout: Duration,
    /// How long to wait for a notarized proposal to certify.
    pub certification_timeout: Duration,
    /// How often to retry a timed-out view.
    pub timeout_retry: Duration,
    /// How long an idle leader waits for transactions before proposing an empty block on a
    /// parent that is not final yet (on a final parent it waits for transactions).
    pub idle_wait: Duration,
    /// The longest the leader of an epoch's first block waits for the epoch's validators to
    /// enter it (see [`App::epoch_start_wait`] and [`crate::entered`]). At most half the
    /// `leader_timeout` is used: the others must not give up on a leader while it waits.
    pub epoch_start_wait: Duration,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Largest encoded block (also bounds p2p messages that carry blocks).
    pub max_block_bytes: usize,
    /// Backfill request timeout.
    pub fetch_timeout: Duration,
    /// Fault injection for tests (a Byzantine proposer); `None` in production.
    pub proposal_fault: Option<crate::app::ProposalFault>,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            partition: "carechain".into(),
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(3),
            idle_wait: Duration::from_millis(500),
            epoch_start_wait: Duration::from_millis(40),
            max_block_txs: 8_192,
            max_block_bytes: 8 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(2),
            proposal_fault: None,
        }
    }
}

/// The p2p channels one validator uses, each a (sender, receiver) pair.
pub struct Channels<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex's own resolver (missing certificates).
    pub resolver: (S, R),
    /// Marshal backfill (missing blocks and finalizations).
    pub backfill: (S, R),
    /// Block dissemination (buffered broadcast).
    pub blocks: (S, R),
    /// Mempool gossip.
    pub gossip: (S, R),
    /// Checkpoint cosignatures.
    pub cosign: (S, R),
    /// Announcements of epochs entered.
    pub entered: (S, R),
}

/// Channel numbers on the p2p network.
pub mod channel {
    /// Simplex votes.
    pub const VOTES: u64 = 0;
    /// Simplex certificates.
    pub const CERTIFICATES: u64 = 1;
    /// Simplex resolver.
    pub const RESOLVER: u64 = 2;
    /// Marshal backfill.
    pub const BACKFILL: u64 = 3;
    /// Block broadcast.
    pub const BLOCKS: u64 = 4;
    /// Mempool gossip.
    pub const GOSSIP: u64 = 5;
    /// Checkpoint cosignatures.
    pub const COSIGN: u64 = 6;
    /// Announcements of epochs entered.
    pub const ENTERED: u64 = 7;
    /// Every channel, in the order of [`super::Channels`]' fields.
    pub const ALL: [u64; 8] = [
        VOTES,
        CERTIFICATES,
        RESOLVER,
        BACKFILL,
        BLOCKS,
        GOSSIP,
        COSIGN,
        ENTERED,
    ];
}

/// A running validator.
pub struct Validator {
    /// The chain it executes.
    pub chain: Arc<Chain>,
    /// Consensus faults it observed (equivocations), with their signed evidence.
    pub evidence: EvidenceLog,
    /// The consensus task (it runs each epoch's simplex instance).
    pub engine: Handle<()>,
}

/// What moves the orchestrator between epochs.
enum EpochEvent {
    /// The given epoch's previous epoch ended: its last block is durable here.
    Enter(Epoch),
    /// A peer voted in a later epoch than this validator's current one.
    Ahead(u64, PublicKey),
}

/// Starts a validator: `key` signs votes in every epoch whose validator set (from the
/// ledger's schedule) holds it and follows the others' certificates in the rest; `node` was
/// started with [`Node::start_external`]; faults seen are recorded in `evidence`.
#[allow(clippy::too_many_arguments)]
pub async fn start<E, S, R, P, B>(
    context: E,
    config: ValidatorConfig,
    key: PrivateKey,
    node: Arc<Node>,
    peer_provider: P,
    blocker: B,
    channels: Channels<S, R>,
    evidence: EvidenceLog,
) -> Validator
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics + Send + Sync + 'static,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey> + Clone,
{
    let public = commonware_cryptography::Signer::public_key(&key);
    let schemes = EpochSchemes::new(node.clone(), key);
    let chain = Arc::new(Chain::new(
        node.clone(),
        config.max_block_txs,
        config.max_block_bytes,
    ));
    let genesis = ChainBlock::genesis(node.store().genesis().hash());
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(256));
    let mailbox_size = NZUsize!(1024);
    let buffer = NZUsize!(64 * 1024);
    let prefix = config.partition.clone();

    // Marshal: finalized blocks and their certificates in archives, blocks received by
    // broadcast or fetched from peers.
    let marshal_config = marshal::Config {
        provider: schemes.clone(),
        epocher: epoch::epocher(),
        start: marshal::Start::Genesis(Digested::precomputed(genesis.clone(), genesis.digest())),
        mailbox_size,
        view_retention: ViewDelta::new(32),
        max_repair: NZUsize!(64),
        max_pending_acks: NZUsize!(1),
        block_codec_config: config.max_block_bytes,
        partition_prefix: prefix.clone(),
        prunable_items_per_section: NZU64!(1024),
        replay_buffer: buffer,
        key_write_buffer: buffer,
        value_write_buffer: buffer,
        page_cache: page_cache.clone(),
        strategy: Sequential,
    };
    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: public.clone(),
            peer_provider: peer_provider.clone(),
            blocker: blocker.clone(),
            mailbox_size,
            fetch_timeout: commonware_utils::NonZeroDuration::new(config.fetch_timeout)
                .expect("nonzero fetch timeout"),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );
    let (broadcast_engine, broadcast) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: public.clone(),
            mailbox_size,
            deque_size: 16,
            priority: false,
            codec_config: config.max_block_bytes,
            peer_provider,
            strategy: Sequential,
        },
    );
    broadcast_engine.start(channels.blocks);
    let finalizations_by_height = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations",
            &page_cache,
            buffer,
            Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .expect("finalizations archive");
    let finalized_blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(
            &prefix,
            "blocks",
            &page_cache,
            buffer,
            config.max_block_bytes,
        ),
    )
    .await
    .expect("blocks archive");
    let (actor, mailbox, _floor) = Actor::init(
        context.child("marshal"),
        finalizations_by_height,
        finalized_blocks,
        marshal_config,
    )
    .await;
    // What moves the orchestrator (below) between epochs.
    let (events, mut next_event) = futures::channel::mpsc::unbounded::<EpochEvent>();
    let ended = events.clone();
    let committer = Finalizer::start(context.child("committer"), chain.clone(), move |next| {
        let _ = ended.unbounded_send(EpochEvent::Enter(next));
    });
    actor.start(committer.clone(), broadcast, resolver);

    // Consensus over the application.
    let entered = Arc::new(Entered::default());
    let app = App::new(
        chain.clone(),
        (
            config.idle_wait,
            config.epoch_start_wait.min(config.leader_timeout / 2),
        ),
        entered.clone(),
        schemes.clone(),
        evidence.clone(),
        config.proposal_fault.clone(),
    );
    let inline = Inline::new(
        context.child("application"),
        app,
        mailbox.clone(),
        epoch::epocher(),
    );
    let reporter = Recorder::new(
        Finalized::new(inline.clone(), committer),
        evidence.clone(),
        schemes.clone(),
    );
    // One simplex instance per epoch, over that epoch's validator set: the orchestrator
    // starts the instance of the epoch after the durable tip, and the next one as soon as
    // marshal has delivered an epoch's last block to the Finalizer, durable (then stops the
    // old one).
    let genesis_hash = node.store().genesis().hash();
    let tip = node.clone();
    let (mut announce, mut announcements) = channels.entered;
    let entered_now = entered.clone();
    let orchestrator = context.child("orchestrator").spawn(move |ctx| async move {
        // Each mux's backup queue gets the messages of epochs without a sub-channel; those of
        // the next epochs are kept until this validator enters them (see `early`).
        let mut current = epoch::epoch_of(tip.store().head() + 1);
        let entered = Arc::new(AtomicU64::new(current.get()));
        let (mux, mut vote_mux, future_votes) =
            Muxer::builder(ctx.child("vote_mux"), channels.votes.0, channels.votes.1)
                .with_backup()
                .build();
        mux.start();
        let (mux, mut certificate_mux, future_certificates) = Muxer::builder(
            ctx.child("certificate_mux"),
            channels.certificates.0,
            channels.certificates.1,
        )
        .with_backup()
        .build();
        mux.start();
        let (mux, mut resolver_mux, future_requests) = Muxer::builder(
            ctx.child("resolver_mux"),
            channels.resolver.0,
            channels.resolver.1,
        )
        .with_backup()
        .build();
        mux.start();
        let [early_votes, early_certificates, early_requests] =
            [(); 3].map(|_| Early::new(entered.clone()));
        for (name, mut backup, early, hint) in [
            (
                "future_votes",
                future_votes,
                early_votes.clone(),
                Some(events),
            ),
            (
                "future_certificates",
                future_certificates,
                early_certificates.clone(),
                None,
            ),
            (
                "future_requests",
                future_requests,
                early_requests.clone(),
                None,
            ),
        ] {
            ctx.child(name).spawn(move |_| async move {
                while let Some((epoch, (from, message))) = backup.recv().await {
                    // Votes of a later epoch also mean this validator may have missed the end
                    // of its own epoch (the others moved on): ask their sender for that
                    // epoch's last block.
                    if let Some(events) = &hint
                        && events
                            .unbounded_send(EpochEvent::Ahead(epoch, from.clone()))
                            .is_err()
                    {
                        return;
                    }
                    early.keep(epoch, (from, message));
                }
            });
        }
        let mut engines: std::collections::BTreeMap<u64, Handle<()>> = Default::default();
        let mut enter = Some(current);
        let mut hinted = std::collections::BTreeSet::new();
        loop {
            if let Some(epoch) = enter.take() {
                let Some(scheme) = schemes.scheme(epoch) else {
                    tracing::error!(
                        epoch = epoch.get(),
                        "no validator set for the epoch entered"
                    );
                    return;
                };
                // An epoch starts on the previous epoch's last block (genesis for the first).
                let start = match epoch.previous() {
                    None => genesis_hash,
                    Some(previous) => match tip
                        .store()
                        .snapshot()
                        .ok()
                        .and_then(|s| s.block(epoch::last_height(previous)).ok().flatten())
                    {
                        Some(b) => b.header.hash(),
                        None => {
                            tracing::error!(
                                epoch = epoch.get(),
                                "the previous epoch's last block is not durable"
                            );
                            return;
                        }
                    },
                };
                let engine = simplex::Engine::new(
                    ctx.child("simplex").with_attribute("epoch", epoch.get()),
                    simplex::config::Config {
                        scheme: (*scheme).clone(),
                        elector: crate::leader::SecondLeadsFirst::default(),
                        blocker: blocker.clone(),
                        automaton: inline.clone(),
                        relay: inline.clone(),
                        reporter: reporter.clone(),
                        strategy: Sequential,
                        partition: simplex_partition(&prefix, epoch.get()),
                        mailbox_size,
                        epoch,
                        floor: simplex::config::Floor::Genesis(crate::block::digest_of(&start)),
                        replay_buffer: buffer,
                        write_buffer: buffer,
                        page_cache: page_cache.clone(),
                        leader_timeout: config.leader_timeout,
                        certification_timeout: config.certification_timeout,
                        timeout_retry: config.timeout_retry,
                        view_retention: ViewDelta::new(32),
                        skip: SkipPolicy::Enabled {
                            timeout: config.timeout_retry + config.certification_timeout,
                            budget: SkipBudget::Participants,
                        },
                        fetch_timeout: commonware_utils::NonZeroDuration::new(config.fetch_timeout)
                            .expect("nonzero fetch timeout"),
                        fetch_retry_delay: Duration::from_millis(100),
                        forward: ForwardPolicy::SilentLeader,
                        track_historical_votes: false,
                    },
                );
                let (Ok(votes), Ok(certificates), Ok(resolver)) = (
                    vote_mux.register(epoch.get()).await,
                    certificate_mux.register(epoch.get()).await,
                    resolver_mux.register(epoch.get()).await,
                ) else {
                    tracing::error!(epoch = epoch.get(), "consensus channels closed");
                    return;
                };
                // Messages arriving from here on go to the new sub-channels; those kept
                // before go ahead of them (and any still queued behind the backup are no
                // longer kept).
                entered.store(epoch.get(), Ordering::SeqCst);
                let prepend = |(sender, receiver), early: &Early| {
                    (sender, Prepended::new(early.take(epoch.get()), receiver))
                };
                engines.insert(
                    epoch.get(),
                    engine.start(
                        prepend(votes, &early_votes),
                        prepend(certificates, &early_certificates),
                        prepend(resolver, &early_requests),
                    ),
                );
                tracing::info!(
                    epoch = epoch.get(),
                    voting = schemes.is_member(epoch),
                    "entered epoch"
                );
                entered_now.enter(epoch.get(), public.clone());
                let _ = announce.send(Recipients::All, entered::encode(epoch.get()), true);
                // The previous epoch ended with a finalized block this validator has made
                // durable: its instance has nothing left to decide.
                while let Some(entry) = engines.first_entry() {
                    if *entry.key() >= epoch.get() {
                        break;
                    }
                    entry.remove().abort();
                }
                schemes.forget_before(epoch);
                hinted.clear();
                // The journals of instances stopped an epoch ago or earlier are not read again
                // (a restart enters the epoch after the durable tip): reclaim them. Two epochs
                // back, so a restart between two transitions leaves nothing behind.
                for old in [2, 3] {
                    if let Some(e) = epoch.get().checked_sub(old) {
                        let _ = ctx.remove(&simplex_partition(&prefix, e), None).await;
                    }
                }
            }
            match next_event.next().await {
                None => return,
                Some(EpochEvent::Enter(e)) => {
                    if e > current {
                        current = e;
                        enter = Some(e);
                    }
                }
                Some(EpochEvent::Ahead(theirs, from)) => {
                    if theirs > current.get() && hinted.insert(from.clone()) {
                        mailbox.hint_finalized(
                            Height::new(epoch::last_height(current)),
                            NonEmptyVec::new(from),
                        );
                    }
                }
            }
        }
    });
    context.child("entered").spawn(move |_| async move {
        while let Ok((peer, msg)) = announcements.recv().await {
            if let Some(epoch) = entered::decode(msg.as_ref()) {
                entered.record(epoch, peer);
            }
        }
    });
    gossip(context.child("gossip"), node.clone(), channels.gossip);
    cosignatures(context.child("cosign"), node, channels.cosign);
    Validator {
        chain,
        evidence,
        engine: orchestrator,
    }
}

/// The storage partition of the simplex instance of `epoch`.
pub fn simplex_partition(prefix: &str, epoch: u64) -> String {
    format!("{prefix}-simplex-{epoch}")
}

fn archive_config<C: Clone>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    buffer: NonZeroUsize,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: buffer,
        freezer_key_write_buffer: buffer,
        freezer_value_write_buffer: buffer,
        ordinal_write_buffer: buffer,
    }
}

/// Mempool gossip: transactions this node admits from its clients go to every peer; those
/// peers send are admitted here (not passed on again). Gossip is best effort: a transaction
/// a peer misses still reaches the chain when the node that admitted it leads.
fn gossip<E, S, R>(context: E, node: Arc<Node>, (mut sender, mut receiver): (S, R))
where
    E: Spawner + Clock + Metrics + Send + 'static,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let (tx, mut rx) = futures::channel::mpsc::unbounded::<Vec<Vec<u8>>>();
    node.set_gossip(Box::new(move |batch| {
        let _ = tx.unbounded_send(batch);
    }));
    context.child("out").spawn(move |_| async move {
        use futures::StreamExt;
        while let Some(batch) = rx.next().await {
            for chunk in batch.chunks(256) {
                let msg = crate::gossip::encode_batch(chunk);
                let _ = sender.send(Recipients::All, msg, false);
            }
        }
    });
    context.child("in").spawn(move |_| async move {
        while let Ok((_peer, msg)) = receiver.recv().await {
            if let Some(batch) = crate::gossip::decode_batch(msg.as_ref()) {
                let _ = node.submit_gossiped(batch);
            }
        }
    });
}

/// Checkpoint cosignatures: this validator's go to every peer as `size (8 bytes) || line`;
/// those peers send are kept by the node if valid (see [`Node::add_cosignature`]).
fn cosignatures<E, S, R>(context: E, node: Arc<Node>, (mut sender, mut receiver): (S, R))
where
    E: Spawner + Clock + Metrics + Send + 'static,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let (tx, mut rx) = futures::channel::mpsc::unbounded::<(u64, String)>();
    node.set_cosign_gossip(Box::new(move |size, line| {
        let _ = tx.unbounded_send((size, line));
    }));
    context.child("out").spawn(move |_| async move {
        use futures::StreamExt;
        while let Some((size, line)) = rx.next().await {
            let mut msg = size.to_be_bytes().to_vec();
            msg.extend_from_slice(line.as_bytes());
            let _ = sender.send(Recipients::All, msg, false);
        }
    });
    context.child("in").spawn(move |_| async move {
        while let Ok((_peer, msg)) = receiver.recv().await {
            let msg: &[u8] = msg.as_ref();
            if msg.len() < 8 || msg.len() > 8 + 512 {
                continue;
            }
            let size = u64::from_be_bytes(msg[..8].try_into().unwrap_or_default());
            if let Ok(line) = std::str::from_utf8(&msg[8..]) {
                node.add_cosignature(size, line.to_string());
            }
        }
    });
}
