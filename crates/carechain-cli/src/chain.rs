//! `carechain init`: the data directory layout and genesis.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use carechain_crypto::{Did, SecretKey};
use carechain_storage::Store;
use carechain_types::{Genesis, GenesisIdentity, Role};
use clap::Args;
use serde_json::json;

use crate::{keyfile, out_line};

/// Files of a data directory.
pub struct DataDir {
    /// The directory.
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("ledger.redb")
    }
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }
    pub fn operator_key(&self) -> PathBuf {
        self.root.join("operator.key")
    }
    pub fn genesis_json(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    pub fn kek(&self) -> PathBuf {
        self.root.join("node.kek")
    }
    pub fn records(&self) -> PathBuf {
        self.root.join("records")
    }
    pub fn genesis_bin(&self) -> PathBuf {
        self.root.join("genesis.bin")
    }
    pub fn exists(&self) -> bool {
        self.db().exists()
    }
    /// The cluster file of a validator's directory (absent for a single node).
    pub fn cluster(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    /// Commonware's storage (consensus journal, finalized-block archives) of a validator.
    pub fn consensus(&self) -> PathBuf {
        self.root.join("consensus")
    }
}

#[derive(Args, Clone)]
pub struct InitArgs {
    /// The data directory to create.
    #[arg(long, default_value = "./carechain-data")]
    pub data: PathBuf,
    /// The chain id every transaction must carry.
    #[arg(long, default_value = "carechain-local")]
    pub chain_id: String,
    /// Extra initial identities as ROLE=DID (role: patient, practitioner, organization, device,
    /// validator, operator). Repeatable.
    #[arg(long = "identity", value_name = "ROLE=DID")]
    pub identities: Vec<String>,
    /// Initial care-token balances as DID=AMOUNT (minor units; the initial supply is their
    /// sum). An identity registered later holds its balance from then. Repeatable.
    #[arg(long = "balance", value_name = "DID=AMOUNT")]
    pub balances: Vec<String>,
    /// A fee in minor units every applied transaction pays its block's proposer (0: none).
    #[arg(long, default_value_t = 0)]
    pub tx_fee: u64,
    /// Create a validator cluster of this many validators instead of a single node: one
    /// data directory per validator (`v0`, `v1`, …) under --data, sharing one genesis and a
    /// `cluster.json` with every validator's keys and addresses (127.0.0.1).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// A cluster directory even for one validator: a one-validator BFT network (the same
    /// consensus engine as a cluster's) instead of the embedded single node.
    #[arg(long)]
    pub cluster: bool,
    /// First consensus p2p port of a cluster (validator i listens on this + i).
    #[arg(long, default_value_t = 7100)]
    pub p2p_port: u16,
    /// First HTTP port of a cluster (validator i serves on this + i).
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
}

/// Creates the data directory (or, with `--validators N` > 1 or `--cluster`, a cluster of N
/// validator directories); returns the (first) node key and the operator key.
pub fn init(a: &InitArgs) -> Result<(SecretKey, SecretKey)> {
    if a.chain_id.is_empty() || a.chain_id.len() > carechain_types::MAX_CHAIN_ID {
        bail!(
            "chain id must be 1 to {} bytes",
            carechain_types::MAX_CHAIN_ID
        );
    }
    if a.validators == 0 || a.validators > 64 {
        bail!("--validators must be 1 to 64");
    }
    if a.validators > 1 || a.cluster {
        return init_cluster(a);
    }
    let dir = DataDir::new(&a.data);
    if dir.exists() {
        bail!("{} already holds a chain", a.data.display());
    }
    fs::create_dir_all(&a.data).with_context(|| format!("cannot create {}", a.data.display()))?;
    let node_key = SecretKey::generate()?;
    let operator = SecretKey::generate()?;
    let genesis = make_genesis(a, std::slice::from_ref(&node_key), &operator)?;
    write_node_dir(&dir, &node_key, &operator, &genesis)?;
    out_line(&format!(
        "created chain {} in {}",
        genesis.chain_id,
        a.data.display()
    ));
    out_line(&format!("node (validator): {}", node_key.public().did()));
    out_line(&format!(
        "operator:         {}  (key: {})",
        operator.public().did(),
        dir.operator_key().display()
    ));
    Ok((node_key, operator))
}

/// The data directory of validator `i` of a cluster rooted at `root`.
pub fn validator_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("v{i}"))
}

/// `init --validators N` (N > 1, or any N with `--cluster`): N validator keys in one genesis,
/// a directory per validator.
fn init_cluster(a: &InitArgs) -> Result<(SecretKey, SecretKey)> {
    let n = a.validators;
    let cluster_file = a.data.join("cluster.json");
    if cluster_file.exists() || validator_dir(&a.data, 0).exists() {
        bail!("{} already holds a cluster", a.data.display());
    }
    if a.p2p_port.checked_add(n as u16).is_none() || a.http_port.checked_add(n as u16).is_none() {
        bail!("ports out of range");
    }
    fs::create_dir_all(&a.data).with_context(|| format!("cannot create {}", a.data.display()))?;
    let keys = (0..n)
        .map(|_| SecretKey::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let operator = SecretKey::generate()?;
    let genesis = make_genesis(a, &keys, &operator)?;
    let localhost = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let cluster = carechain_cluster::net::ClusterFile {
        chain_id: genesis.chain_id.clone(),
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| carechain_cluster::net::Member {
                did: k.public().did().to_string(),
                p2p: std::net::SocketAddr::new(localhost, a.p2p_port + i as u16),
                http: std::net::SocketAddr::new(localhost, a.http_port + i as u16),
            })
            .collect(),
    };
    keyfile::write(&a.data.join("operator.key"), &operator)?;
    cluster.write(&cluster_file)?;
    for (i, k) in keys.iter().enumerate() {
        let dir = DataDir::new(&validator_dir(&a.data, i));
        fs::create_dir_all(&dir.root)?;
        write_node_dir(&dir, k, &operator, &genesis)?;
        cluster.write(&dir.cluster())?;
    }
    out_line(&format!(
        "created chain {} with {n} validator{} in {}",
        genesis.chain_id,
        if n == 1 { "" } else { "s" },
        a.data.display()
    ));
    for (i, m) in cluster.validators.iter().enumerate() {
        out_line(&format!(
            "validator {i}: {}  p2p {}  http http://{}  (data {})",
            m.did,
            m.p2p,
            m.http,
            validator_dir(&a.data, i).display()
        ));
    }
    out_line(&format!(
        "operator:    {}  (key: {})",
        operator.public().did(),
        a.data.join("operator.key").display()
    ));
    Ok((keys[0].clone(), operator))
}

/// `cluster add-node`: a new node directory `vN` for `cluster` (its file read from `root`): a
/// fresh node key, the cluster's genesis and operator key, listed with the next free ports in
/// every node's `cluster.json` — the p2p peer set. It follows the chain as an observer until
/// governance makes it a validator. Returns its directory and key.
pub fn add_node(
    root: &Path,
    mut cluster: carechain_cluster::net::ClusterFile,
) -> Result<(PathBuf, SecretKey)> {
    let genesis_bin = DataDir::new(&validator_dir(root, 0)).genesis_bin();
    let genesis: Genesis = carechain_types::decode_genesis(
        &fs::read(&genesis_bin)
            .with_context(|| format!("cannot read {}", genesis_bin.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", genesis_bin.display()))?;
    let operator = keyfile::read(&root.join("operator.key"))?;
    let i = cluster.validators.len();
    let dir = DataDir::new(&validator_dir(root, i));
    if dir.root.exists() {
        bail!("{} already exists", dir.root.display());
    }
    // The next port after the highest of its kind that no node uses for anything yet.
    let mut used: std::collections::BTreeSet<std::net::SocketAddr> = cluster
        .validators
        .iter()
        .flat_map(|m| [m.p2p, m.http])
        .collect();
    let mut next = |port: fn(&carechain_cluster::net::Member) -> std::net::SocketAddr| {
        let mut a = cluster
            .validators
            .iter()
            .map(port)
            .max_by_key(|a| a.port())
            .context("an empty cluster file")?;
        loop {
            a.set_port(a.port().checked_add(1).context("ports out of range")?);
            if used.insert(a) {
                return Ok::<_, anyhow::Error>(a);
            }
        }
    };
    let (p2p, http) = (next(|m| m.p2p)?, next(|m| m.http)?);
    let key = SecretKey::generate()?;
    fs::create_dir_all(&dir.root)?;
    write_node_dir(&dir, &key, &operator, &genesis)?;
    cluster.validators.push(carechain_cluster::net::Member {
        did: key.public().did().to_string(),
        p2p,
        http,
    });
    for j in 0..=i {
        cluster.write(&DataDir::new(&validator_dir(root, j)).cluster())?;
    }
    cluster.write(&root.join("cluster.json"))?;
    Ok((dir.root, key))
}

/// Node key, operator key, genesis (JSON and canonical) and an empty database in `dir`.
fn write_node_dir(
    dir: &DataDir,
    node_key: &SecretKey,
    operator: &SecretKey,
    genesis: &Genesis,
) -> Result<()> {
    keyfile::write(&dir.node_key(), node_key)?;
    keyfile::write(&dir.operator_key(), operator)?;
    let doc = json!({
        "chain_id": genesis.chain_id,
        "timestamp_ms": genesis.timestamp_ms,
        "genesis_hash": genesis.hash().to_hex(),
        "identities": genesis.identities.iter().map(|i| json!({"did": i.key.did().to_string(), "role": i.role.as_str()})).collect::<Vec<_>>(),
    });
    fs::write(dir.genesis_json(), serde_json::to_string_pretty(&doc)?)?;
    // The canonical encoding, for auditors to pin (`carechain verify --url … --genesis genesis.bin`).
    fs::write(dir.genesis_bin(), carechain_types::encode(genesis))?;
    Store::create(&dir.db(), genesis)?;
    Ok(())
}

/// The genesis: the validators, the operator and any `--identity`.
fn make_genesis(a: &InitArgs, validators: &[SecretKey], operator: &SecretKey) -> Result<Genesis> {
    let mut identities: Vec<GenesisIdentity> = validators
        .iter()
        .map(|k| GenesisIdentity {
            key: k.public(),
            role: Role::Validator,
            parent: None,
        })
        .collect();
    identities.push(GenesisIdentity {
        key: operator.public(),
        role: Role::Operator,
        parent: None,
    });
    for spec in &a.identities {
        let (role, did) = spec.split_once('=').context("--identity takes ROLE=DID")?;
        let role = Role::parse(role).with_context(|| format!("unknown role {role}"))?;
        let did: Did = did.parse().with_context(|| format!("bad did {did}"))?;
        did.public_key()
            .validate()
            .context("the did's key is not a valid Ed25519 key")?;
        identities.push(GenesisIdentity {
            key: did.public_key(),
            role,
            parent: None,
        });
    }
    let mut token = carechain_types::TokenConfig {
        tx_fee: a.tx_fee,
        ..Default::default()
    };
    for spec in &a.balances {
        let (did, amount) = spec.split_once('=').context("--balance takes DID=AMOUNT")?;
        let did: Did = did.parse().with_context(|| format!("bad did {did}"))?;
        let amount: u64 = amount.parse().with_context(|| {
            format!("--balance {spec}: the amount is a whole number of minor units")
        })?;
        did.public_key()
            .validate()
            .context("the did's key is not a valid Ed25519 key")?;
        token.balances.push((did.public_key(), amount));
    }
    let supply = token
        .balances
        .iter()
        .try_fold(0u64, |s, (_, n)| s.checked_add(*n));
    if supply.is_none() {
        bail!("the initial balances overflow the supply");
    }
    Ok(Genesis {
        token,
        contracts: Default::default(),
        chain_id: a.chain_id.clone(),
        timestamp_ms: carechain_node::now_ms(),
        identities,
    })
}

/// The node's key-encryption-key seed (wraps every record's data key): created on first use,
/// mode 0600, never printed.
pub fn kek_seed(dir: &DataDir) -> Result<zeroize::Zeroizing<[u8; 32]>> {
    let path = dir.kek();
    if !path.exists() {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|_| anyhow::anyhow!("system randomness unavailable"))?;
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::io::Write::write_all(&mut f, hex::encode(*seed).as_bytes())?;
        f.sync_all()?;
    }
    let text = zeroize::Zeroizing::new(fs::read_to_string(&path)?);
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut()).context("node.kek is not 64 hex digits")?;
    Ok(seed)
}
