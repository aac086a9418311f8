//! `carechain up`: run a node (optionally creating a demo chain with demo identities).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use carechain_node::{Node, NodeConfig};
use carechain_storage::Store;
use clap::Args;

use crate::{
    chain::{DataDir, InitArgs, init},
    keyfile, out_line,
};

#[derive(Args)]
pub struct UpArgs {
    /// The data directory (created with demo data if --demo is given and it holds no chain).
    #[arg(long, default_value = "./carechain-data")]
    pub data: PathBuf,
    /// Address to serve the API and explorer on (port 0 picks a free port). Default:
    /// 127.0.0.1:8080, or a validator's HTTP address in its `cluster.json`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Create a demo chain with demo identities and records if the directory is empty, and
    /// offer one-click demo sign-in in the web UI (never use on a real node).
    #[arg(long)]
    pub demo: bool,
    /// Cut a block at least this often (milliseconds) when transactions are pending (and at
    /// once when no block is being committed, unless --fixed-block-interval).
    #[arg(long, default_value_t = 20)]
    pub block_interval_ms: u64,
    /// Cut blocks only every --block-interval-ms (or when full), even when idle: fewer, larger
    /// blocks at the price of latency.
    #[arg(long)]
    pub fixed_block_interval: bool,
    /// Cut a block as soon as this many transactions are pending.
    #[arg(long, default_value_t = 8192)]
    pub max_block_txs: usize,
    /// Pending transactions beyond which submissions are refused as busy.
    #[arg(long, default_value_t = 200_000)]
    pub mempool_capacity: usize,
    /// Answer a FHIR interaction only once its audit event is durable and anchored (default:
    /// once it is queued; the queue is drained continuously and at shutdown).
    #[arg(long)]
    pub audit_durable: bool,
    /// Keep record ciphertexts in this S3-compatible bucket instead of the data directory
    /// (connection from the standard AWS_* environment: AWS_ENDPOINT, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ALLOW_HTTP). The bucket must not keep
    /// object versions, or erased ciphertext survives.
    #[arg(long)]
    pub s3_bucket: Option<String>,
    /// Object key prefix in the bucket.
    #[arg(long, default_value = "carechain")]
    pub s3_prefix: String,
    /// Stop (as on Ctrl-C) when standard input reaches its end. `cluster up` starts each
    /// validator with a pipe it holds open, so validators stop cleanly whenever their
    /// supervisor goes, however it goes (killed, crashed, its terminal closed).
    #[arg(long, hide = true)]
    pub stop_when_stdin_closes: bool,
    /// A `host:port` the node answers to (the `Host` header; repeatable), e.g. the name a
    /// proxy serves it under. Default: the listen address (and `localhost` at its port when
    /// it is a loopback address); listening on all interfaces needs at least one.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
}

use crate::demo::DEMO_CHAIN;

pub fn run(a: UpArgs) -> Result<()> {
    let dir = DataDir::new(&a.data);
    let mut fresh_demo = false;
    if !dir.exists() {
        if !a.demo {
            anyhow::bail!(
                "{} holds no chain: run `carechain init --data {}` first, or pass --demo",
                a.data.display(),
                a.data.display()
            );
        }
        // The demo identities' keys first: the insurer and the patients hold care tokens
        // from genesis (registered on the ledger right after).
        let keys = crate::demo::DemoKeys::create(
            &a.data.join("demo-keys"),
            &crate::demo::Who::ALL[..crate::demo::SINGLE_NODE],
        )?;
        init(&InitArgs {
            data: a.data.clone(),
            chain_id: DEMO_CHAIN.into(),
            identities: vec![],
            balances: crate::demo::genesis_balances(&keys),
            tx_fee: 0,
            validators: 1,
            cluster: false,
            p2p_port: 7100,
            http_port: 8081,
        })?;
        fresh_demo = true;
    }
    let store = Arc::new(Store::open(&dir.db())?);
    let key = keyfile::read(&dir.node_key())?;
    let config = NodeConfig {
        block_interval: Duration::from_millis(a.block_interval_ms.max(1)),
        fixed_interval: a.fixed_block_interval,
        max_block_txs: a.max_block_txs.clamp(1, carechain_types::MAX_BLOCK_TXS),
        mempool_capacity: a.mempool_capacity.max(1),
    };
    // A validator of a cluster: blocks are ordered by BFT consensus among the validators of
    // its cluster file; otherwise the node makes its own blocks.
    let cluster = if dir.cluster().exists() {
        Some(carechain_cluster::net::ClusterFile::read(&dir.cluster())?)
    } else {
        None
    };
    let (node, validator) = match &cluster {
        Some(c) => {
            let node = Node::start_external(store, key.clone(), config)?;
            let v = carechain_cluster::net::start(
                c,
                Some(&dir.cluster()),
                &key,
                node.clone(),
                &dir.consensus(),
                carechain_cluster::engine::ValidatorConfig {
                    partition: "carechain".into(),
                    max_block_txs: a.max_block_txs.clamp(1, carechain_types::MAX_BLOCK_TXS),
                    ..Default::default()
                },
            )?;
            out_line(&format!(
                "validator {} of {} (p2p {})",
                key.public().did(),
                c.validators.len(),
                c.member(&key.public())
                    .map(|m| m.p2p.to_string())
                    .unwrap_or_default()
            ));
            (node, Some(v))
        }
        None => (Node::start(store, key.clone(), config)?, None),
    };
    let listen = a
        .listen
        .or_else(|| cluster.as_ref()?.member(&key.public()).map(|m| m.http))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    if fresh_demo {
        crate::demo::load_ledger(&node, &dir.root, &keyfile::read(&dir.operator_key())?)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let watch_stdin = a.stop_when_stdin_closes;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let seed = crate::chain::kek_seed(&dir)?;
        let blobs: Option<Box<dyn carechain_vault::BlobStore>> = match &a.s3_bucket {
            Some(bucket) => Some(Box::new(
                carechain_objectstore::S3BlobStore::from_env(bucket, &a.s3_prefix)
                    .with_context(|| format!("S3 bucket {bucket}"))?,
            )),
            None => None,
        };
        let service = carechain_service::Service::open(
            node.clone(),
            key.clone(),
            &dir.records(),
            &seed,
            &format!("http://{addr}/auth/token"),
            blobs,
        )
        .map_err(|e| anyhow::anyhow!("records service: {}", e.message))?;
        service.set_audit_durable(a.audit_durable);
        let supply = carechain_supply::Supply::open(service.clone())
            .map_err(|e| anyhow::anyhow!("supply service: {e}"))?;
        if fresh_demo {
            let pid = crate::demo::load_fhir_local(&service, &dir.root)?;
            crate::demo_claims::load(&service, &dir.root, &pid)?;
            let operator = keyfile::read(&dir.operator_key())?;
            crate::demo_supply::load(&supply, &service, &dir.root, &operator, &format!("http://{addr}"), &pid)?;
        }
        out_line(&format!(
            "carechain node for chain {} at height {}",
            node.store().genesis().chain_id,
            node.store().head()
        ));
        out_line(&format!("listening on http://{addr}"));
        out_line(&format!(
            "checkpoint key: {}",
            node.ledger().checkpoint_verifier_key()
        ));
        // One-click sign-in only on the demo chain: `--demo` given to a real chain's node
        // must not offer its operator key to anyone who opens the page.
        let demo_chain = node.store().genesis().chain_id == DEMO_CHAIN;
        let allowed_hosts = if a.allowed_hosts.is_empty() {
            if addr.ip().is_unspecified() {
                anyhow::bail!(
                    "listening on all interfaces ({addr}): name the hosts this node answers to with --allowed-host"
                );
            }
            carechain_server::default_allowed_hosts(addr)
        } else {
            a.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        let ui = carechain_server::UiOptions {
            demo_logins: if a.demo && demo_chain {
                crate::demo::logins(&dir.root.join("demo-keys"), Some(&dir.operator_key()))?
            } else {
                Vec::new()
            },
            allowed_hosts,
        };
        let services = carechain_server::Services {
            node: node.clone(),
            service: service.clone(),
            supply: Some(supply),
        };
        let served = carechain_server::serve(services, listener, ui, async move {
                tokio::select! {
                    _ = shutdown_signal() => {}
                    _ = stdin_closed(watch_stdin) => {
                        out_line("standard input closed: stopping");
                    }
                }
            })
            .await;
        // Every queued audit event is written before the ledger stops.
        let closing = service.clone();
        tokio::task::spawn_blocking(move || closing.close()).await?;
        served?;
        anyhow::Ok(())
    });
    if let Some(v) = validator {
        v.stop();
    }
    node.shutdown();
    out_line("node stopped");
    result
}

/// Resolves when standard input reaches its end (or fails), if `watch`; never otherwise.
async fn stdin_closed(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    // A plain thread, not the runtime's blocking pool: a read that never returns must not
    // hold up the runtime's shutdown.
    let (closed, when) = tokio::sync::oneshot::channel::<()>();
    let reader = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            use std::io::Read;
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = closed.send(());
        });
    if reader.is_err() || when.await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
