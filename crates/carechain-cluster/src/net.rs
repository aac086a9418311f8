//! A validator on real sockets: the cluster file (every validator's key and addresses),
//! Commonware's authenticated, encrypted `lookup` p2p network among the known validators,
//! and the consensus engine on Commonware's tokio runtime in a thread of its own.

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use carechain_crypto::{Did, SecretKey};
use carechain_node::Node;
use commonware_cryptography::{ChaCha20Poly1305, ed25519::PublicKey};
use commonware_p2p::{
    Address, AddressableManager as _,
    authenticated::lookup::{self, Network},
};
use commonware_runtime::{Metrics as _, Quota, Runner as _, Spawner as _, Supervisor as _, tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use serde::{Deserialize, Serialize};

use crate::{
    consensus_key, consensus_public,
    engine::{self, Channels, ValidatorConfig, channel},
    evidence::EvidenceLog,
};

/// Namespace of the p2p handshake.
pub const P2P_NAMESPACE: &[u8] = b"carechain/v1/p2p";

/// One validator of a cluster file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Its ledger identity (the validator key).
    pub did: String,
    /// Its consensus p2p address.
    pub p2p: SocketAddr,
    /// Its HTTP API address.
    pub http: SocketAddr,
}

/// `cluster.json`: the validator set with addresses, the same file in every validator's
/// data directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterFile {
    /// The chain id.
    pub chain_id: String,
    /// The validators, in genesis order.
    pub validators: Vec<Member>,
}

/// Cluster file problems.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    /// Reading or parsing failed.
    #[error("cluster file {path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The evidence file (beside the engine's storage) could not be opened.
    #[error("evidence file {path}: {source}")]
    Evidence {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ClusterFile {
    /// Reads and checks a cluster file.
    pub fn read(path: &Path) -> Result<ClusterFile, ClusterFileError> {
        let bad = |reason: String| ClusterFileError::Bad {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let f: ClusterFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for m in &f.validators {
            m.did
                .parse::<Did>()
                .map_err(|e| bad(format!("{}: {e}", m.did)))?;
        }
        Ok(f)
    }

    /// Writes the file, atomically (a running validator reading it never sees half of it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Every member's consensus key with its p2p address (the p2p peer set).
    pub fn peers(&self) -> Result<Map<PublicKey, Address>, ClusterFileError> {
        let bad = |reason: String| ClusterFileError::Bad {
            path: PathBuf::from("cluster.json"),
            reason,
        };
        let mut peers = Vec::new();
        for m in &self.validators {
            let did: Did = m.did.parse().map_err(|e| bad(format!("{}: {e}", m.did)))?;
            peers.push((consensus_public(&did.public_key()), Address::from(m.p2p)));
        }
        peers
            .try_into()
            .map_err(|_| bad("a node is listed twice".into()))
    }

    /// The member whose key is `key`.
    pub fn member(&self, key: &carechain_crypto::PublicKey) -> Option<&Member> {
        let did = key.did().to_string();
        self.validators.iter().find(|m| m.did == did)
    }
}

/// A validator running on its own thread; dropping it does not stop it: call
/// [`RunningValidator::stop`].
pub struct RunningValidator {
    thread: Option<JoinHandle<()>>,
    stop: Option<futures::channel::oneshot::Sender<()>>,
    /// Faults it observed.
    pub evidence: EvidenceLog,
}

impl RunningValidator {
    /// Stops the engine (in-flight storage writes finish) and waits for its thread.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many nodes may be added to a running validator's cluster file beyond those it started
/// with (the p2p layer sizes its buffers by the largest peer set; more need a restart).
pub const ADDABLE_NODES: usize = 4;

/// How often a running validator reads its cluster file again for added nodes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Most messages a peer may send on one channel at once before its rate applies (see the
/// quota in [`start`]). A gossip message carries up to 256 transactions and a block is one
/// message, so 256 covers any burst an honest validator sends.
pub const BURST: u32 = 256;

/// Starts this node's validator: p2p on its cluster-file address, the engine's own storage
/// under `storage`, the faults it observes in the file `evidence` beside it (shown by the
/// node's API). The node must have been started with [`Node::start_external`]. With
/// `reload`, the cluster file there is read again every [`RELOAD_INTERVAL`]: nodes added to it
/// (`carechain cluster add-node`) join the p2p peer set without a restart.
pub fn start(
    cluster: &ClusterFile,
    reload: Option<&Path>,
    key: &SecretKey,
    node: Arc<Node>,
    storage: &Path,
    config: ValidatorConfig,
) -> Result<RunningValidator, ClusterFileError> {
    let me = cluster
        .member(&key.public())
        .ok_or_else(|| ClusterFileError::Bad {
            path: PathBuf::from("cluster.json"),
            reason: format!("{} is not a validator of this cluster", key.public().did()),
        })?
        .clone();
    let peers = cluster.peers()?;
    let max_nodes = peers.len() + ADDABLE_NODES;
    let reload = reload.map(|p| (p.to_path_buf(), cluster.clone(), max_nodes));
    let signer = consensus_key(key);
    let evidence_path = storage.with_file_name("evidence");
    let evidence =
        EvidenceLog::open(&evidence_path).map_err(|source| ClusterFileError::Evidence {
            path: evidence_path,
            source,
        })?;
    evidence.report_to(node.clone());
    let ev = evidence.clone();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let storage = storage.to_path_buf();
    let max_message = (config.max_block_bytes + 64 * 1024) as u32;
    // The p2p port may still be held for a moment (a restart right after a kill): wait for
    // it rather than let the engine fail to bind in the background.
    let mut tries = 0;
    while let Err(e) = std::net::TcpListener::bind(me.p2p) {
        tries += 1;
        if tries > 40 {
            return Err(ClusterFileError::Bad {
                path: PathBuf::from("cluster.json"),
                reason: format!("cannot listen on {}: {e}", me.p2p),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let thread = std::thread::Builder::new()
        .name("carechain-consensus".into())
        .spawn(move || {
            // A validator whose consensus engine died must not go on serving as if it were
            // part of the cluster: the whole process stops.
            let _exit_on_panic = ExitOnPanic;
            let runner = tokio::Runner::new(
                tokio::Config::new()
                    .with_worker_threads(2)
                    .with_storage_directory(storage)
                    .with_tcp_nodelay(Some(true)),
            );
            runner.start(|context| async move {
                let handshake = Cups::<_, ChaCha20Poly1305>::new(
                    Sake {
                        signer: signer.clone(),
                        synchrony_bound: Duration::from_secs(5),
                        max_handshake_age: Duration::from_secs(10),
                        version: sake::Version::V1,
                    },
                    cups::Version::V1,
                );
                let mut p2p = lookup::Config::local(
                    handshake,
                    P2P_NAMESPACE,
                    me.p2p,
                    NonZeroUsize::new(max_nodes).expect("nonzero"),
                    max_message,
                    NZUsize!(4096),
                );
                // Every set tracked is the whole cluster file, so the current and the previous
                // one suffice. The p2p layer sizes each channel's buffers by peers per set
                // times sets tracked: 2 × (nodes + ADDABLE_NODES) is 16 for four nodes, as the
                // default 4 × nodes was.
                p2p.tracked_peer_sets = NZUsize!(2);
                let (mut network, mut oracle) = Network::new(context.child("network"), p2p);
                let _ = oracle.track(0, peers);
                if let Some((path, file, max_nodes)) = reload {
                    let oracle = oracle.clone();
                    context.child("cluster_file").spawn(move |ctx| {
                        follow_cluster_file(ctx, path, (file, max_nodes), oracle)
                    });
                }
                // Up to 5,000 messages a second from each peer on each channel, in bursts of
                // at most `BURST`. The p2p layer gives every channel an inbound queue of
                // peers × burst messages, allocated up front: with the rate's default burst
                // (5,000) that was 80,000 slots (18 MB) per channel and ~370 MB per validator.
                // A peer sending faster is read more slowly (TCP backpressure), not cut off;
                // this validator's own sends beyond it are skipped for that peer, as at any
                // rate limit (consensus and marshal fetch again what a peer missed).
                let quota = Quota::per_second(NZU32!(5_000)).allow_burst(NZU32!(BURST));
                let mut chans = Vec::new();
                for ch in channel::ALL {
                    chans.push(network.register(ch, quota));
                }
                let mut chans = chans.into_iter();
                let mut next = || chans.next().expect("one per channel");
                let channels = Channels {
                    votes: next(),
                    certificates: next(),
                    resolver: next(),
                    backfill: next(),
                    blocks: next(),
                    gossip: next(),
                    cosign: next(),
                    entered: next(),
                };
                network.start();
                // `/metrics` of this node then shows the engine's too (p2p, simplex, marshal).
                let metrics = context.child("metrics");
                node.set_engine_metrics(Box::new(move || metrics.encode()));
                let _validator = engine::start(
                    context.child("validator"),
                    config,
                    signer,
                    node,
                    oracle.clone(),
                    oracle,
                    channels,
                    ev,
                )
                .await;
                tracing::info!(p2p = %me.p2p, "consensus engine running");
                let _ = stop_rx.await;
                let _ = context.stop(0, Some(Duration::from_secs(5))).await;
            });
        })
        .map_err(|e| ClusterFileError::Bad {
            path: PathBuf::from("cluster.json"),
            reason: e.to_string(),
        })?;
    Ok(RunningValidator {
        thread: Some(thread),
        stop: Some(stop_tx),
        evidence,
    })
}

/// Reads the cluster file at `path` every [`RELOAD_INTERVAL`] and, when its nodes differ from
/// `known`, tracks them as the next p2p peer set (the previous set's peers stay connected
/// until the one after); a changed file of more than `max_nodes` is refused (a restart takes
/// it).
async fn follow_cluster_file(
    context: impl commonware_runtime::Clock,
    path: PathBuf,
    (mut known, max_nodes): (ClusterFile, usize),
    mut oracle: impl commonware_p2p::AddressableManager<PublicKey = PublicKey>,
) {
    let mut id = 0;
    let mut complained = false;
    loop {
        context.sleep(RELOAD_INTERVAL).await;
        // `None`: unchanged (the peer set is derived only from a changed file).
        let changed = ClusterFile::read(&path).and_then(|f| {
            if f.validators == known.validators {
                return Ok(None);
            }
            if f.validators.len() > max_nodes {
                return Err(ClusterFileError::Bad {
                    path: path.clone(),
                    reason: format!(
                        "{} nodes, more than the {max_nodes} this validator can add without a restart",
                        f.validators.len()
                    ),
                });
            }
            f.peers().map(|p| Some((f, p)))
        });
        match changed {
            Ok(None) => complained = false,
            Ok(Some((file, peers))) => {
                id += 1;
                tracing::info!(
                    nodes = file.validators.len(),
                    "cluster file changed: p2p peer set updated"
                );
                let _ = oracle.track(id, peers);
                known = file;
                complained = false;
            }
            // Half-written or broken: keep the current set, say so once.
            Err(e) if !complained => {
                tracing::warn!(error = %e, "cluster file unreadable; peer set kept");
                complained = true;
            }
            Err(_) => {}
        }
    }
}

/// Ends the process when the consensus thread unwinds from a panic.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the consensus engine failed; the validator stops");
            std::process::exit(70);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carechain_crypto::sha256;
    use commonware_p2p::{Provider as _, simulated};
    use commonware_runtime::{Clock as _, deterministic};

    /// A cluster file of `n` nodes (the same first nodes for every `n`).
    fn file(n: u16) -> ClusterFile {
        ClusterFile {
            chain_id: "follow-test".into(),
            validators: (0..n)
                .map(|i| Member {
                    did: SecretKey::from_seed(&sha256(&i.to_le_bytes()).0)
                        .public()
                        .did()
                        .to_string(),
                    p2p: SocketAddr::from(([127, 0, 0, 1], 9000 + i)),
                    http: SocketAddr::from(([127, 0, 0, 1], 8000 + i)),
                })
                .collect(),
        }
    }

    #[test]
    fn a_running_validator_follows_its_cluster_file_up_to_the_nodes_it_can_add() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.json");
        file(4).write(&path).expect("write");
        deterministic::Runner::default().start(|context| async move {
            let (network, oracle) = simulated::Network::new(
                context.child("network"),
                simulated::Config {
                    max_size: 1024,
                    max_peers_per_set: NZUsize!(16),
                    disconnect_on_block: true,
                    tracked_peer_sets: NZUsize!(4),
                },
            );
            network.start();
            let mut peers = oracle.socket_manager();
            let followed = (path.clone(), peers.clone());
            context
                .child("follow")
                .spawn(move |ctx| follow_cluster_file(ctx, followed.0, (file(4), 5), followed.1));
            let written = |f: ClusterFile| {
                f.write(&path).expect("write");
                context.sleep(RELOAD_INTERVAL * 2)
            };
            let size =
                |set: Option<commonware_p2p::TrackedPeers<PublicKey>>| set.map(|s| s.primary.len());
            // A fifth node: the next peer set.
            written(file(5)).await;
            assert_eq!(size(peers.peer_set(1).await), Some(5));
            // Six nodes, more than it can add, then a half-written file: neither is taken.
            written(file(6)).await;
            std::fs::write(&path, "{ \"chain_id\": ").expect("write");
            context.sleep(RELOAD_INTERVAL * 2).await;
            assert_eq!(size(peers.peer_set(2).await), None);
            // Back to the four: taken again.
            written(file(4)).await;
            assert_eq!(size(peers.peer_set(2).await), Some(4));
        });
    }
}
