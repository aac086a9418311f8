//! Prometheus metrics of a node.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The node's metrics, registered in one registry.
pub struct NodeMetrics {
    registry: Registry,
    /// Transactions admitted to the mempool.
    pub txs_admitted: Counter,
    /// Transactions refused at admission, by code.
    pub txs_refused: Family<Vec<(String, String)>, Counter>,
    /// Transactions applied in committed blocks.
    pub txs_applied: Counter,
    /// Transactions recorded as rejected in committed blocks.
    pub txs_rejected: Counter,
    /// Blocks committed.
    pub blocks: Counter,
    /// Pending transactions.
    pub mempool_size: Gauge,
    /// Height of the last durable block.
    pub head_height: Gauge,
    /// Size of the verifiable log.
    pub log_size: Gauge,
    /// Durable commit time of a block (seconds).
    pub commit_seconds: Histogram,
    /// Time from cutting a block to its signed checkpoint being served (seconds).
    pub checkpoint_publish_seconds: Histogram,
}

fn buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ]
    .into_iter()
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

impl NodeMetrics {
    /// Creates and registers all metrics.
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::with_prefix("carechain");
        let m = NodeMetrics {
            txs_admitted: Counter::default(),
            txs_refused: Family::default(),
            txs_applied: Counter::default(),
            txs_rejected: Counter::default(),
            blocks: Counter::default(),
            mempool_size: Gauge::default(),
            head_height: Gauge::default(),
            log_size: Gauge::default(),
            commit_seconds: Histogram::new(buckets()),
            checkpoint_publish_seconds: Histogram::new(buckets()),
            registry: Registry::default(),
        };
        registry.register(
            "txs_admitted",
            "Transactions admitted to the mempool",
            m.txs_admitted.clone(),
        );
        registry.register(
            "txs_refused",
            "Transactions refused at admission, by code",
            m.txs_refused.clone(),
        );
        registry.register(
            "txs_applied",
            "Transactions applied in committed blocks",
            m.txs_applied.clone(),
        );
        registry.register(
            "txs_rejected",
            "Transactions recorded as rejected in committed blocks",
            m.txs_rejected.clone(),
        );
        registry.register(
            "blocks_committed",
            "Blocks durably committed",
            m.blocks.clone(),
        );
        registry.register(
            "mempool_size",
            "Pending transactions",
            m.mempool_size.clone(),
        );
        registry.register(
            "head_height",
            "Height of the last durable block",
            m.head_height.clone(),
        );
        registry.register(
            "log_size",
            "Leaves in the verifiable log",
            m.log_size.clone(),
        );
        registry.register(
            "block_commit_seconds",
            "Durable commit time of a block",
            m.commit_seconds.clone(),
        );
        registry.register(
            "checkpoint_publish_seconds",
            "Time from cutting a block to its signed checkpoint being served",
            m.checkpoint_publish_seconds.clone(),
        );
        NodeMetrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
