//! Cluster tests in Commonware's deterministic runtime: four validators (each with its own
//! ledger store) on a simulated network, seeded and run in one process. Each test ends by
//! checking that every honest validator holds the same blocks, state root and log root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use carechain_cluster::{
    consensus_key, consensus_public,
    engine::{self, Channels, Validator, ValidatorConfig, channel},
    evidence::Evidence,
    validator_set,
};
use carechain_crypto::{SecretKey, sha256};
use carechain_node::{Node, NodeConfig, SubmitError};
use carechain_storage::Store;
use carechain_types::{Genesis, GenesisIdentity, Payload, Role, TxBody, encode};
use commonware_cryptography::ed25519::PublicKey;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Quota, Runner, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, probability};

mod contracts;

const CHAIN: &str = "cluster-test";
const N: usize = 4;

fn key(i: u32) -> SecretKey {
    SecretKey::from_seed(&sha256(&i.to_le_bytes()).0)
}

fn validators() -> Vec<SecretKey> {
    (0..N as u32).map(key).collect()
}

fn org() -> SecretKey {
    key(100)
}

fn genesis() -> Genesis {
    let mut identities: Vec<GenesisIdentity> = validators()
        .iter()
        .map(|k| GenesisIdentity {
            key: k.public(),
            role: Role::Validator,
            parent: None,
        })
        .collect();
    identities.push(GenesisIdentity {
        key: org().public(),
        role: Role::Organization,
        parent: None,
    });
    Genesis {
        token: Default::default(),
        contracts: Default::default(),
        chain_id: CHAIN.into(),
        timestamp_ms: 1,
        identities,
    }
}

fn anchor(nonce: u64) -> Vec<u8> {
    let k = org();
    encode(
        &TxBody {
            chain_id: CHAIN.into(),
            signer: k.public(),
            nonce,
            payload: Payload::Anchor {
                kind: "t".into(),
                commitment: sha256(&nonce.to_le_bytes()),
            },
        }
        .sign(&k),
    )
}

const LINK: Link = Link {
    latency: Duration::from_millis(10),
    jitter: Duration::from_millis(2),
    success_rate: probability!(1.0),
};

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Arc<Node>>,
    /// The engines of the validators that run one (all but a conflicter).
    validators: Vec<Validator>,
    keys: Vec<PublicKey>,
    oracle: Oracle<PublicKey, deterministic::Context>,
}

async fn link_all(
    oracle: &Oracle<PublicKey, deterministic::Context>,
    keys: &[PublicKey],
    link: Link,
) {
    for a in keys {
        for b in keys {
            if a != b {
                let _ = oracle.add_link(a.clone(), b.clone(), link.clone()).await;
            }
        }
    }
}

async fn cut(oracle: &Oracle<PublicKey, deterministic::Context>, a: &[PublicKey], b: &[PublicKey]) {
    for x in a {
        for y in b {
            if x != y {
                let _ = oracle.remove_link(x.clone(), y.clone()).await;
                let _ = oracle.remove_link(y.clone(), x.clone()).await;
            }
        }
    }
}

/// What each validator runs.
#[derive(Clone)]
enum Behaviour {
    Honest,
    /// Proposes blocks turned by this function (re-sealed with its key).
    BadProposer(carechain_cluster::app::ProposalFault),
    /// Signs two conflicting votes (notarize and finalize) for every vote it sees.
    Conflicter,
    /// Votes under the wrong signature namespace (badly signed) and sends random, truncated
    /// and oversized bytes on every other channel.
    Garbage,
}

const HONEST: [Behaviour; N] = [
    Behaviour::Honest,
    Behaviour::Honest,
    Behaviour::Honest,
    Behaviour::Honest,
];

async fn start_cluster(context: &deterministic::Context, link: Link) -> Cluster {
    start_with_roles(context, link, &HONEST).await
}

async fn start_with_roles(
    context: &deterministic::Context,
    link: Link,
    roles: &[Behaviour],
) -> Cluster {
    start_configured(context, link, roles, ValidatorConfig::default()).await
}

/// Starts validators with these `roles` and `base` configuration (the partition and the
/// proposal fault are set per validator).
async fn start_configured(
    context: &deterministic::Context,
    link: Link,
    roles: &[Behaviour],
    base: ValidatorConfig,
) -> Cluster {
    let genesis = genesis();
    let participants = validator_set(&genesis);
    // The first N nodes are the genesis validators; any further ones start as followers.
    let secrets: Vec<SecretKey> = (0..roles.len() as u32).map(key).collect();
    let keys: Vec<PublicKey> = secrets
        .iter()
        .map(|k| consensus_public(&k.public()))
        .collect();
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: 16 * 1024 * 1024,
            max_peers_per_set: NZUsize!(roles.len()),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        keys.clone(),
    )
    .await;
    network.start();
    let quota = Quota::per_second(NZU32!(1_000_000));
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    let mut started = Vec::new();
    for (i, sk) in secrets.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("ledger.redb"), &genesis).unwrap();
        let node =
            Node::start_external(Arc::new(store), sk.clone(), NodeConfig::default()).unwrap();
        let control = oracle.control(keys[i].clone());
        let mut regs = Vec::new();
        for ch in channel::ALL {
            regs.push(control.register(ch, quota).await.unwrap());
        }
        let mut regs = regs.into_iter();
        let channels = Channels {
            votes: regs.next().unwrap(),
            certificates: regs.next().unwrap(),
            resolver: regs.next().unwrap(),
            backfill: regs.next().unwrap(),
            blocks: regs.next().unwrap(),
            gossip: regs.next().unwrap(),
            cosign: regs.next().unwrap(),
            entered: regs.next().unwrap(),
        };
        if matches!(roles[i], Behaviour::Conflicter) {
            let scheme = carechain_cluster::Scheme::signer(
                engine::CONSENSUS_NAMESPACE,
                participants.clone(),
                consensus_key(sk),
            )
            .unwrap();
            let conflicter = commonware_consensus::simplex::mocks::conflicter::Conflicter::<
                _,
                _,
                commonware_cryptography::Sha256,
            >::new(
                context.child("conflicter"),
                commonware_consensus::simplex::mocks::conflicter::Config { scheme },
            );
            conflicter.start(epoch_zero(context, channels.votes).await);
            dirs.push(dir);
            nodes.push(node);
            continue;
        }
        if matches!(roles[i], Behaviour::Garbage) {
            let scheme = carechain_cluster::Scheme::signer(
                b"not-the-consensus-namespace",
                participants.clone(),
                consensus_key(sk),
            )
            .unwrap();
            commonware_consensus::simplex::mocks::conflicter::Conflicter::<
                _,
                _,
                commonware_cryptography::Sha256,
            >::new(
                context.child("badly_signed"),
                commonware_consensus::simplex::mocks::conflicter::Config { scheme },
            )
            .start(epoch_zero(context, channels.votes).await);
            let senders = vec![
                channels.certificates.0,
                channels.resolver.0,
                channels.backfill.0,
                channels.blocks.0,
                channels.gossip.0,
                channels.cosign.0,
                channels.entered.0,
            ];
            context
                .child("garbage")
                .spawn(move |ctx| garbage(ctx, senders));
            dirs.push(dir);
            nodes.push(node);
            continue;
        }
        let fault = match &roles[i] {
            Behaviour::BadProposer(f) => Some(f.clone()),
            _ => None,
        };
        let v = engine::start(
            context.child("validator").with_attribute("index", i),
            ValidatorConfig {
                partition: format!("validator-{i}"),
                proposal_fault: fault,
                ..base.clone()
            },
            consensus_key(sk),
            node.clone(),
            oracle.manager(),
            oracle.control(keys[i].clone()),
            channels,
            carechain_cluster::evidence::EvidenceLog::default(),
        )
        .await;
        dirs.push(dir);
        nodes.push(node);
        started.push(v);
    }
    link_all(&oracle, &keys, link).await;
    Cluster {
        _dirs: dirs,
        nodes,
        validators: started,
        keys,
        oracle,
    }
}

/// Four honest validators whose epoch's first block waits up to `cap` for everyone to enter,
/// with leader and certification timeouts well above it (else the others give up on the
/// leader while it waits: `ValidatorConfig::epoch_start_wait`), so a stall stands out.
async fn start_with_epoch_start_wait(
    context: &deterministic::Context,
    link: Link,
    cap: Duration,
) -> Cluster {
    start_configured(
        context,
        link,
        &HONEST,
        ValidatorConfig {
            epoch_start_wait: cap,
            leader_timeout: 3 * cap,
            certification_timeout: 4 * cap,
            ..ValidatorConfig::default()
        },
    )
    .await
}

/// `e`'s proof holds on its own, against the genesis validator set, and names validator
/// `offender`.
fn assert_proven(rng: &mut deterministic::Context, e: &Evidence, offender: usize) {
    assert_eq!(
        e.offender,
        validators()[offender].public().did().to_string()
    );
    let set: Vec<_> = validators().iter().map(|k| k.public()).collect();
    carechain_cluster::evidence::verify_proof(rng, &e.fault(), &set)
        .unwrap_or_else(|err| panic!("{e:?}: {err}"));
}

/// The epoch-0 sub-channel of a consensus channel (validators run one simplex instance per
/// epoch, each on its own sub-channel).
async fn epoch_zero<S, R>(
    context: &deterministic::Context,
    (sender, receiver): (S, R),
) -> (
    commonware_p2p::utils::mux::SubSender<S>,
    commonware_p2p::utils::mux::SubReceiver<PublicKey>,
)
where
    S: commonware_p2p::Sender<PublicKey = PublicKey>,
    R: commonware_p2p::Receiver<PublicKey = PublicKey>,
{
    let (mux, mut handle) =
        commonware_p2p::utils::mux::Muxer::new(context.child("mux"), sender, receiver);
    mux.start();
    handle.register(0).await.unwrap()
}

/// Drives the chain to height `height` (at validator 0) one block at a time: one anchor
/// from nonce `nonce` on, each applied by every node in `which` before the next (their logs
/// hold `extra` entries besides the anchors). Returns the next nonce.
async fn one_block_at_a_time(
    context: &deterministic::Context,
    c: &Cluster,
    which: &[usize],
    height: u64,
    mut nonce: u64,
    extra: u64,
) -> u64 {
    while c.nodes[0].store().head() < height {
        submit(c, 0, nonce, 1);
        nonce += 1;
        wait_applied(context, c, which, nonce + extra).await;
    }
    nonce
}

/// Waits (in simulated time) until every node in `which` has applied `txs` transactions.
async fn wait_applied(context: &deterministic::Context, c: &Cluster, which: &[usize], txs: u64) {
    loop {
        if which
            .iter()
            .all(|&i| c.nodes[i].store().log().size() >= txs)
        {
            return;
        }
        context.sleep(Duration::from_millis(50)).await;
    }
}

/// Every node in `which` agrees block by block up to the lowest head, and those at the
/// same height have the same state root and log.
fn assert_agree(c: &Cluster, which: &[usize]) {
    let low = which
        .iter()
        .map(|&i| c.nodes[i].store().head())
        .min()
        .unwrap();
    let first = &c.nodes[which[0]];
    for h in 1..=low {
        let b0 = first.store().snapshot().unwrap().block(h).unwrap().unwrap();
        for &i in &which[1..] {
            let b = c.nodes[i]
                .store()
                .snapshot()
                .unwrap()
                .block(h)
                .unwrap()
                .unwrap();
            assert_eq!(
                b.header.hash(),
                b0.header.hash(),
                "validators {i} and {} differ at height {h}",
                which[0]
            );
        }
    }
    let heads: Vec<u64> = which.iter().map(|&i| c.nodes[i].store().head()).collect();
    if heads.iter().all(|&h| h == heads[0]) {
        for &i in which {
            assert_eq!(c.nodes[i].store().log().root(), first.store().log().root());
            assert_eq!(
                c.nodes[i].store().commitment().root(),
                first.store().commitment().root()
            );
        }
    }
}

/// The simulation of test `seed`. `CARECHAIN_SIM_SEEDS=k` runs every test on another
/// schedule of the same scenario (seed `seed + 1000 k`), to look beyond the schedules CI runs.
fn runner(seed: u64) -> deterministic::Runner {
    let sweep: u64 = std::env::var("CARECHAIN_SIM_SEEDS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    deterministic::Runner::new(
        deterministic::Config::default()
            .with_seed(seed + 1000 * sweep)
            .with_start_time(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .with_timeout(Some(Duration::from_secs(600))),
    )
}

#[test]
fn four_validators_finalize_transactions_submitted_anywhere() {
    runner(1).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        // Transactions of one signer go to one node (nonces in order); gossip carries them.
        let total = 200u64;
        for n in 0..total {
            let r = c.nodes[(n / 50) as usize % N].submit(anchor(n));
            if r.is_err() {
                // A node that has not yet seen the previous ones by gossip refuses a gap:
                // resubmit to node 0.
                let _ = c.nodes[0].submit(anchor(n));
            }
            if n % 50 == 49 {
                wait_applied(&context, &c, &[0, 1, 2, 3], n + 1).await;
            }
        }
        wait_applied(&context, &c, &[0, 1, 2, 3], total).await;
        // Let every node reach the same head, then compare everything.
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        for v in &c.validators {
            assert!(v.evidence.all().is_empty());
        }
        // Nothing lost, nothing twice.
        assert_eq!(c.nodes[0].store().log().size(), total);
        // Every validator serves a checkpoint cosigned by a quorum (3 of 4) of validators.
        let cosigners = carechain_consensus::validator_cosigners(&genesis());
        for n in &c.nodes {
            let note = n.cosigned_checkpoint().expect("a checkpoint");
            let (cp, who) = carechain_log::verify_cosigned(&note, &cosigners, 3)
                .unwrap_or_else(|e| panic!("{e}: {note}"));
            assert!(cp.size <= total && who.len() >= 3);
        }
        // Leaders rotate: blocks come from several validators.
        let head = c.nodes[0].store().head();
        let snap = c.nodes[0].store().snapshot().unwrap();
        let proposers: std::collections::BTreeSet<_> = (1..=head)
            .map(|h| snap.block(h).unwrap().unwrap().header.proposer)
            .collect();
        assert!(proposers.len() >= 3, "only {} proposers", proposers.len());
    });
}

/// Submits `count` anchors from nonce `from` to node `to`, in order.
fn submit(c: &Cluster, to: usize, from: u64, count: u64) {
    for n in from..from + count {
        c.nodes[to].submit(anchor(n)).expect("admitted");
    }
}

#[test]
fn one_validator_cut_off_the_rest_finalize_and_it_catches_up() {
    runner(2).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        submit(&c, 0, 0, 50);
        wait_applied(&context, &c, &[0, 1, 2, 3], 50).await;
        // Validator 3 is cut off from everybody (as good as crashed for the others).
        cut(&c.oracle, &c.keys[3..], &c.keys[..3]).await;
        let stalled = c.nodes[3].store().head();
        submit(&c, 0, 50, 300);
        wait_applied(&context, &c, &[0, 1, 2], 350).await;
        assert!(c.nodes[3].store().head() <= stalled + 1);
        assert_agree(&c, &[0, 1, 2]);
        // Healed: it fetches the blocks it missed, re-executes them and joins in again.
        link_all(&c.oracle, &c.keys, LINK).await;
        submit(&c, 0, 350, 50);
        wait_applied(&context, &c, &[0, 1, 2, 3], 400).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        assert_eq!(c.nodes[3].store().log().size(), 400);
    });
}

#[test]
fn a_two_two_partition_makes_no_progress_and_no_fork_then_heals() {
    runner(3).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        submit(&c, 0, 0, 20);
        wait_applied(&context, &c, &[0, 1, 2, 3], 20).await;
        cut(&c.oracle, &c.keys[..2], &c.keys[2..]).await;
        context.sleep(Duration::from_secs(1)).await;
        let heads: Vec<u64> = c.nodes.iter().map(|n| n.store().head()).collect();
        // Both halves hold transactions, neither has a quorum.
        submit(&c, 0, 20, 30);
        context.sleep(Duration::from_secs(20)).await;
        for (i, n) in c.nodes.iter().enumerate() {
            assert_eq!(
                n.store().head(),
                heads[i],
                "validator {i} finalized without a quorum"
            );
        }
        assert_agree(&c, &[0, 1, 2, 3]);
        link_all(&c.oracle, &c.keys, LINK).await;
        wait_applied(&context, &c, &[0, 1, 2, 3], 50).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
    });
}

#[test]
fn a_lossy_slow_network_stays_safe_and_recovers_when_it_heals() {
    runner(4).start(|context| async move {
        let lossy = Link {
            latency: Duration::from_millis(80),
            jitter: Duration::from_millis(60),
            success_rate: probability!(0.75),
        };
        let c = start_cluster(&context, lossy).await;
        submit(&c, 0, 0, 100);
        // Progress may be slow or stall while messages are dropped and reordered; whatever
        // is final agrees everywhere.
        context.sleep(Duration::from_secs(30)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        link_all(&c.oracle, &c.keys, LINK).await;
        wait_applied(&context, &c, &[0, 1, 2, 3], 100).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
    });
}

#[test]
fn a_validator_signing_conflicting_votes_is_recorded_and_changes_nothing() {
    runner(5).start(|mut context| async move {
        let roles = [
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::Conflicter,
        ];
        let c = start_with_roles(&context, LINK, &roles).await;
        // Commonware reports a conflict only while it holds both signed votes: once a view's
        // quorum has formed it keeps only who voted, and a second, different vote then gets
        // its sender blocked without proof. Whichever comes first at a validator decides (a
        // blocked sender is not heard again). An offender that wants to be counted is quick:
        // validator 3's messages take 1 ms, so both of its votes arrive before any quorum.
        let quick = Link {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            ..LINK
        };
        for i in 0..3 {
            for (a, b) in [(3, i), (i, 3)] {
                let (a, b) = (c.keys[a].clone(), c.keys[b].clone());
                let _ = c.oracle.remove_link(a.clone(), b.clone()).await;
                c.oracle.add_link(a, b, quick.clone()).await.unwrap();
            }
        }
        let nonce = one_block_at_a_time(&context, &c, &[0, 1, 2], 8, 0, 0).await;
        wait_applied(&context, &c, &[0, 1, 2], nonce).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2]);
        // Every honest validator holds signed evidence against validator 3's index, and has
        // blocked it and no one else.
        let participants = validator_set(&genesis());
        let offender = participants.iter().position(|p| *p == c.keys[3]).unwrap() as u32;
        let blocked = c.oracle.blocked().await.unwrap();
        for (i, v) in c.validators.iter().enumerate() {
            let ev = v.evidence.all();
            assert!(
                ev.iter()
                    .any(|e| e.validator == offender && e.kind.starts_with("conflicting_")),
                "validator {i}: {ev:?}"
            );
            assert!(ev.iter().all(|e| e.validator == offender), "{ev:?}");
            // Each proof is the offender's two signed votes: it verifies on its own, against
            // the epoch's set, and names validator 3.
            for e in &ev {
                assert_proven(&mut context, e, 3);
            }
            let by_i: Vec<_> = blocked.iter().filter(|(b, _)| *b == c.keys[i]).collect();
            assert!(
                !by_i.is_empty() && by_i.iter().all(|(_, x)| *x == c.keys[3]),
                "{by_i:?}"
            );
        }
    });
}

/// Validator 3 turns each block it proposes by `fault` (re-sealed with its key, so the block
/// is attributable): every honest validator rejects them all, the honest chain goes on
/// without any, and each honest validator records `invalid_proposal` evidence against it —
/// unless the fault is a matter of clocks (`provable` false), which proves nothing.
fn a_bad_proposer_is_rejected_by_every_honest_validator(
    seed: u64,
    fault: fn(carechain_types::Block) -> carechain_types::Block,
    provable: bool,
) {
    runner(seed).start(|mut context| async move {
        let bad = validators()[3].clone();
        let fault =
            carechain_cluster::app::ProposalFault(Arc::new(move |b: carechain_types::Block| {
                let b = fault(b);
                carechain_types::Block::seal(b.header, b.txs, &bad)
            }));
        let roles = [
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::BadProposer(fault),
        ];
        let c = start_with_roles(&context, LINK, &roles).await;
        // Transactions reach every mempool (validator 3's too) by gossip; a block at a time,
        // for views enough that validator 3 leads several (each honest validator then
        // verifies one of its blocks, which it may not in a run of two or three views).
        let nonce = one_block_at_a_time(&context, &c, &[0, 1, 2], 24, 0, 0).await;
        submit(&c, 0, nonce, 40);
        wait_applied(&context, &c, &[0, 1, 2], nonce + 40).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2]);
        // No block of validator 3 was finalized; its node (honest as a verifier) agrees too.
        let snap = c.nodes[0].store().snapshot().unwrap();
        for h in 1..=c.nodes[0].store().head() {
            assert_ne!(
                snap.block(h).unwrap().unwrap().header.proposer,
                validators()[3].public()
            );
        }
        assert_agree(&c, &[0, 1, 2, 3]);
        let participants = validator_set(&genesis());
        let offender = participants.iter().position(|p| *p == c.keys[3]).unwrap() as u32;
        for v in &c.validators[..3] {
            let ev = v.evidence.all();
            let convicted = ev
                .iter()
                .any(|e| e.validator == offender && e.kind == "invalid_proposal");
            assert_eq!(convicted, provable, "{ev:?}");
            assert!(ev.iter().all(|e| e.validator == offender), "{ev:?}");
            // Each proof is a header validator 3 sealed, at the height it proposed.
            for e in &ev {
                assert_proven(&mut context, e, 3);
            }
        }
    });
}

#[test]
fn proposals_with_a_wrong_state_root_are_rejected_by_every_honest_validator() {
    a_bad_proposer_is_rejected_by_every_honest_validator(
        6,
        |mut b| {
            b.header.state_root = sha256(b"not the state");
            b
        },
        true,
    );
}

#[test]
fn proposals_with_a_forged_transaction_are_rejected_by_every_honest_validator() {
    // A transaction whose signature is not its signer's, slipped in with the header's
    // transaction count and root made to match, its receipts and state as if it were not there.
    a_bad_proposer_is_rejected_by_every_honest_validator(
        15,
        |mut b| {
            let body = TxBody {
                chain_id: CHAIN.into(),
                signer: org().public(),
                nonce: 1_000_000,
                payload: Payload::Anchor {
                    kind: "forged".into(),
                    commitment: sha256(b"forged"),
                },
            };
            // Signed, but by a key that is not the signer's.
            b.txs.push(body.sign(&key(99)));
            b.header.tx_count = b.txs.len() as u32;
            b.header.tx_root = carechain_types::Block::compute_tx_root(&b.txs);
            b
        },
        true,
    );
}

#[test]
fn proposals_stamped_outside_the_time_window_are_rejected_by_every_honest_validator() {
    // Ten minutes ahead of every honest clock (the window allows
    // `carechain_cluster::app::MAX_FUTURE_SKEW_MS`): refused, but a clock is no proof.
    a_bad_proposer_is_rejected_by_every_honest_validator(
        16,
        |mut b| {
            b.header.timestamp_ms += 600_000;
            b
        },
        false,
    );
}

fn governance(signer: &SecretKey, payload: Payload) -> Vec<u8> {
    governance_at(signer, 0, payload)
}

fn governance_at(signer: &SecretKey, nonce: u64, payload: Payload) -> Vec<u8> {
    encode(
        &TxBody {
            chain_id: CHAIN.into(),
            signer: signer.public(),
            nonce,
            payload,
        }
        .sign(signer),
    )
}

#[test]
fn a_validator_removed_by_governance_proposes_no_block_from_the_effective_height() {
    runner(7).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        let vs = validators();
        let at = carechain_types::EPOCH_LENGTH;
        let change = carechain_types::GovernanceChange::RemoveValidator {
            key: vs[3].public(),
        };
        let id = carechain_types::proposal_id(&change, at);
        // Validator 2 proposes, 0 and 1 approve (3 of 4): the removal is scheduled on every
        // validator's ledger from height `at`.
        c.nodes[0]
            .submit(governance(
                &vs[2],
                Payload::ProposeChange {
                    change,
                    effective_height: at,
                },
            ))
            .unwrap();
        submit(&c, 0, 0, 1);
        wait_applied(&context, &c, &[0, 1, 2, 3], 2).await;
        for v in &vs[..2] {
            c.nodes[0]
                .submit(governance(v, Payload::ApproveChange { proposal: id }))
                .unwrap();
        }
        submit(&c, 0, 1, 1);
        wait_applied(&context, &c, &[0, 1, 2, 3], 5).await;
        for n in &c.nodes {
            let s = n.ledger().validator_schedule().unwrap();
            assert_eq!(s.at(at - 1).len(), 4);
            assert!(!s.at(at).contains(&vs[3].public()) && s.at(at).len() == 3);
        }
        // Drive the chain well past the effective height, one block at a time.
        let nonce = 2;
        one_block_at_a_time(&context, &c, &[0, 1, 2, 3], at + 16, nonce, 3).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        // From the effective height on, no block of the removed validator was accepted (its
        // turns as leader time out); before it, it proposed like the others.
        let snap = c.nodes[0].store().snapshot().unwrap();
        let proposer = |h: u64| snap.block(h).unwrap().unwrap().header.proposer;
        assert!((1..at).any(|h| proposer(h) == vs[3].public()));
        for h in at..=c.nodes[0].store().head() {
            assert_ne!(proposer(h), vs[3].public(), "height {h}");
        }
    });
}

/// Sends hostile bytes on every channel, forever: random lengths and contents, a valid-looking
/// varint prefix with nothing after it, and once in a while a message larger than any block.
async fn garbage<S>(mut rng: deterministic::Context, mut senders: Vec<S>)
where
    S: commonware_p2p::Sender<PublicKey = PublicKey>,
{
    use rand_core::Rng as _;
    let mut round = 0u64;
    loop {
        for sender in senders.iter_mut() {
            let len = (rng.next_u32() % 4096) as usize;
            let mut msg = vec![0u8; len];
            rng.fill_bytes(&mut msg);
            let _ = sender.send(commonware_p2p::Recipients::All, msg, false);
            let _ = sender.send(commonware_p2p::Recipients::All, vec![0xff; 9], false);
            if round.is_multiple_of(50) {
                let _ = sender.send(
                    commonware_p2p::Recipients::All,
                    vec![0x42; 9 * 1024 * 1024],
                    false,
                );
            }
        }
        round += 1;
        rng.sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_validator_sending_garbage_on_every_channel_is_ignored_and_blocked() {
    runner(8).start(|context| async move {
        let roles = [
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::Honest,
            Behaviour::Garbage,
        ];
        let c = start_with_roles(&context, LINK, &roles).await;
        submit(&c, 0, 0, 100);
        wait_applied(&context, &c, &[0, 1, 2], 100).await;
        submit(&c, 1, 100, 100);
        wait_applied(&context, &c, &[0, 1, 2], 200).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2]);
        assert_eq!(c.nodes[0].store().log().size(), 200);
        // The honest validators blocked the peer sending badly signed votes and garbage.
        let blocked = c.oracle.blocked().await.unwrap();
        let honest = &c.keys[..3];
        assert!(
            blocked
                .iter()
                .any(|(by, whom)| honest.contains(by) && *whom == c.keys[3]),
            "{blocked:?}"
        );
    });
}

#[test]
fn a_validator_added_by_governance_votes_from_its_epoch_on_and_counts_in_the_quorum() {
    runner(9).start(|context| async move {
        // Five nodes: the four genesis validators and a newcomer that follows the chain.
        let roles: Vec<Behaviour> = (0..=N).map(|_| Behaviour::Honest).collect();
        let c = start_with_roles(&context, LINK, &roles).await;
        let vs = validators();
        let newcomer = key(N as u32);
        let at = carechain_types::EPOCH_LENGTH;
        let add = carechain_types::GovernanceChange::AddValidator {
            key: newcomer.public(),
        };
        let remove = carechain_types::GovernanceChange::RemoveValidator {
            key: vs[3].public(),
        };
        let propose = |change: &carechain_types::GovernanceChange| Payload::ProposeChange {
            change: change.clone(),
            effective_height: at,
        };
        let approve = |change: &carechain_types::GovernanceChange| Payload::ApproveChange {
            proposal: carechain_types::proposal_id(change, at),
        };
        // From height `at`: the newcomer in, validator 3 out, each approved by 3 of 4.
        c.nodes[0]
            .submit(governance_at(&vs[0], 0, propose(&add)))
            .unwrap();
        c.nodes[0]
            .submit(governance_at(&vs[1], 0, propose(&remove)))
            .unwrap();
        submit(&c, 0, 0, 1);
        wait_applied(&context, &c, &[0, 1, 2, 3, 4], 3).await;
        for tx in [
            governance_at(&vs[1], 1, approve(&add)),
            governance_at(&vs[2], 0, approve(&add)),
            governance_at(&vs[0], 1, approve(&remove)),
            governance_at(&vs[2], 1, approve(&remove)),
        ] {
            c.nodes[0].submit(tx).unwrap();
        }
        submit(&c, 0, 1, 1);
        wait_applied(&context, &c, &[0, 1, 2, 3, 4], 8).await;
        let mut next_set: Vec<_> = vec![
            vs[0].public(),
            vs[1].public(),
            vs[2].public(),
            newcomer.public(),
        ];
        next_set.sort();
        for n in &c.nodes {
            let s = n.ledger().validator_schedule().unwrap();
            assert_eq!(s.at(at), next_set.as_slice());
        }
        // Drive the chain well into the next epoch, one block at a time.
        let mut nonce = 2;
        nonce = one_block_at_a_time(&context, &c, &[0, 1, 2, 3, 4], at + 24, nonce, 6).await;
        context.sleep(Duration::from_secs(2)).await;
        // The newcomer followed epoch 0 without voting and agrees on everything; so does the
        // removed validator, which now only follows.
        assert_agree(&c, &[0, 1, 2, 3, 4]);
        let snap = c.nodes[0].store().snapshot().unwrap();
        let proposer = |h: u64| snap.block(h).unwrap().unwrap().header.proposer;
        assert!((1..at).all(|h| proposer(h) != newcomer.public()));
        assert!(
            (at..=c.nodes[0].store().head()).any(|h| proposer(h) == newcomer.public()),
            "the newcomer led no block of its epoch"
        );
        assert!((at..=c.nodes[0].store().head()).all(|h| proposer(h) != vs[3].public()));
        // Validator 0 cut off: 1, 2 and the newcomer are 3 of the new set's 4, a quorum only
        // with the newcomer's votes (the removed validator's no longer count).
        cut(&c.oracle, &c.keys[..1], &c.keys[1..]).await;
        let before = c.nodes[1].store().log().size();
        submit(&c, 1, nonce, 20);
        wait_applied(&context, &c, &[1, 2, 3, 4], before + 20).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[1, 2, 3, 4]);
        // Checkpoints are cosigned by a quorum of the set in force: the newcomer among them.
        let cosigners = carechain_consensus::cosigners_of(&next_set);
        let (keys, quorum) = c.nodes[1].cosigners();
        assert_eq!((keys.len(), quorum), (4, 3));
        let note = c.nodes[1].cosigned_checkpoint().unwrap();
        let (_, who) = carechain_log::verify_cosigned(&note, &cosigners, 3)
            .unwrap_or_else(|e| panic!("{e}: {note}"));
        assert!(
            who.contains(&newcomer.public().did().to_string()),
            "{who:?}"
        );
    });
}

#[test]
fn a_validator_cut_off_across_an_epoch_change_catches_up_and_votes_in_the_new_epoch() {
    runner(10).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        let at = carechain_types::EPOCH_LENGTH;
        let mut nonce = 0;
        nonce = one_block_at_a_time(&context, &c, &[0, 1, 2, 3], at / 2, nonce, 0).await;
        // Validator 3 misses the end of epoch 0 and the start of epoch 1.
        cut(&c.oracle, &c.keys[3..], &c.keys[..3]).await;
        let stalled = c.nodes[3].store().head();
        nonce = one_block_at_a_time(&context, &c, &[0, 1, 2], at + 16, nonce, 0).await;
        assert!(c.nodes[3].store().head() <= stalled + 1);
        // Healed: it fetches epoch 0's last block, enters epoch 1 and catches up there.
        link_all(&c.oracle, &c.keys, LINK).await;
        submit(&c, 0, nonce, 5);
        nonce += 5;
        wait_applied(&context, &c, &[0, 1, 2, 3], nonce).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        // It votes in epoch 1: with validator 0 cut off, 1, 2 and 3 are the quorum.
        cut(&c.oracle, &c.keys[..1], &c.keys[1..]).await;
        submit(&c, 1, nonce, 20);
        nonce += 20;
        wait_applied(&context, &c, &[1, 2, 3], nonce).await;
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[1, 2, 3]);
    });
}

#[test]
fn finished_epochs_journals_are_reclaimed_as_the_chain_moves_on() {
    runner(11).start(|context| async move {
        use commonware_runtime::Storage as _;
        let c = start_cluster(&context, LINK).await;
        let at = carechain_types::EPOCH_LENGTH;
        let nonce = 0;
        one_block_at_a_time(&context, &c, &[0, 1, 2, 3], 2 * at + 2, nonce, 0).await;
        context.sleep(Duration::from_secs(1)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        for i in 0..N {
            let partition = |e| engine::simplex_partition(&format!("validator-{i}"), e);
            let epoch0 = context.scan(&partition(0)).await.unwrap_or_default();
            assert!(epoch0.is_empty(), "epoch 0's journal kept: {epoch0:?}");
            let current = context.scan(&partition(2)).await.unwrap_or_default();
            assert!(!current.is_empty(), "no journal for the current epoch");
        }
    });
}

#[test]
fn the_first_block_of_a_new_epoch_is_empty_and_the_pending_transactions_follow() {
    runner(12).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        let at = carechain_types::EPOCH_LENGTH;
        let mut nonce = one_block_at_a_time(&context, &c, &[0, 1, 2, 3], at - 3, 0, 0).await;
        // Transactions keep arriving across the epoch change, at every validator in turn. A
        // validator the previous one has not gossiped to yet answers `NonceGap`; the client
        // tries again a moment later, as a real one would.
        while c.nodes[0].store().head() < at + 3 {
            match c.nodes[(nonce % N as u64) as usize].submit(anchor(nonce)) {
                Ok(_) => nonce += 1,
                Err(SubmitError::NonceGap { .. }) => {}
                Err(e) => panic!("not admitted: {e:?}"),
            }
            context.sleep(Duration::from_millis(20)).await;
        }
        wait_applied(&context, &c, &[0, 1, 2, 3], nonce).await;
        context.sleep(Duration::from_secs(1)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
        let snap = c.nodes[0].store().snapshot().unwrap();
        let txs = |h: u64| snap.block(h).unwrap().unwrap().txs.len();
        assert_eq!(
            txs(at),
            0,
            "the new epoch's instance starts on an empty block"
        );
        assert!(
            txs(at - 1) > 0,
            "the old epoch's last block carried transactions"
        );
        assert!(
            txs(at + 1) > 0,
            "the next block carries what arrived meanwhile"
        );
    });
}

#[test]
fn the_leader_of_an_epochs_first_block_waits_for_every_validator_to_enter_the_epoch_and_no_longer()
{
    runner(13).start(|context| async move {
        let cap = Duration::from_secs(2);
        let c = start_with_epoch_start_wait(&context, LINK, cap).await;
        let at = carechain_types::EPOCH_LENGTH;
        let all = [0, 1, 2, 3];
        let mut nonce = one_block_at_a_time(&context, &c, &all, at - 1, 0, 0).await;
        // Everyone enters epoch 1 and says so: its first block does not wait for the cap.
        let entering = context.current();
        nonce = one_block_at_a_time(&context, &c, &all, at + 1, nonce, 0).await;
        let took = context.current().duration_since(entering).unwrap();
        assert!(took < cap / 4, "epoch 1 started after {took:?}");
        // Validator 3 is cut off and never enters epoch 2: the leader waits out the cap, then
        // the three go on without it.
        nonce = one_block_at_a_time(&context, &c, &all, 2 * at - 8, nonce, 0).await;
        cut(&c.oracle, &c.keys[3..], &c.keys[..3]).await;
        nonce = one_block_at_a_time(&context, &c, &[0, 1, 2], 2 * at - 1, nonce, 0).await;
        let entering = context.current();
        one_block_at_a_time(&context, &c, &[0, 1, 2], 2 * at + 1, nonce, 0).await;
        let took = context.current().duration_since(entering).unwrap();
        assert!(
            took >= cap,
            "epoch 2 started after {took:?}, before the cap"
        );
        assert_agree(&c, &[0, 1, 2]);
        let snap = c.nodes[0].store().snapshot().unwrap();
        for epoch_start in [at, 2 * at] {
            assert!(snap.block(epoch_start).unwrap().unwrap().txs.is_empty());
        }
    });
}

#[test]
fn a_new_epochs_first_leaders_heard_late_by_two_validators_do_not_split_the_epoch() {
    use commonware_consensus::{
        simplex::elector::{Elector as _, RoundRobin},
        types::{Epoch, Round, View},
    };
    runner(14).start(|context| async move {
        let steady = Link {
            jitter: Duration::ZERO,
            ..LINK
        };
        let cap = Duration::from_secs(2);
        let c = start_with_epoch_start_wait(&context, steady.clone(), cap).await;
        // Commonware's plain round robin over epoch 1's validators (the genesis set).
        let set = commonware_utils::ordered::Set::from_iter_dedup(c.keys.iter().cloned());
        let plain =
            commonware_consensus::simplex::elector::Config::<carechain_cluster::Scheme>::build(
                RoundRobin::<commonware_cryptography::Sha256>::default(),
                &set,
            );
        let led_by = |view: u64| {
            let p = plain.elect(Round::new(Epoch::new(1), View::new(view)), ());
            let key = &set[usize::from(p)];
            c.keys.iter().position(|k| k == key).unwrap()
        };
        let (first, second) = (led_by(1), led_by(2));
        // `second`'s messages reach `first` in 5 ms and the other two in 25 ms, while every
        // other message takes 10. Under plain round robin, epoch 1's view 1 (led by `first`)
        // is notarized 20 ms after its proposal; `first` has heard `second`'s vote by then, the
        // other two have not: they would take `second` for inactive and nullify view 2 while
        // `first` notarizes `second`'s proposal, a split only the timeouts (6–8 s here) end.
        for (i, key) in c.keys.iter().enumerate() {
            if i == second {
                continue;
            }
            let ms = if i == first { 5 } else { 25 };
            let _ = c
                .oracle
                .remove_link(c.keys[second].clone(), key.clone())
                .await;
            let link = Link {
                latency: Duration::from_millis(ms),
                ..steady.clone()
            };
            c.oracle
                .add_link(c.keys[second].clone(), key.clone(), link)
                .await
                .unwrap();
        }
        let at = carechain_types::EPOCH_LENGTH;
        let all = [0, 1, 2, 3];
        let nonce = one_block_at_a_time(&context, &c, &all, at - 1, 0, 0).await;
        let entering = context.current();
        one_block_at_a_time(&context, &c, &all, at + 2, nonce, 0).await;
        let took = context.current().duration_since(entering).unwrap();
        assert!(took < cap / 2, "epoch 1's first blocks took {took:?}");
        assert_agree(&c, &all);
    });
}
