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
}

/// Creates the data directory; returns the node key and operator key.
pub fn init(a: &InitArgs) -> Result<(SecretKey, SecretKey)> {
    let dir = DataDir::new(&a.data);
    if dir.exists() {
        bail!("{} already holds a chain", a.data.display());
    }
    if a.chain_id.is_empty() || a.chain_id.len() > carechain_types::MAX_CHAIN_ID {
        bail!(
            "chain id must be 1 to {} bytes",
            carechain_types::MAX_CHAIN_ID
        );
    }
    fs::create_dir_all(&a.data).with_context(|| format!("cannot create {}", a.data.display()))?;
    let node_key = SecretKey::generate()?;
    let operator = SecretKey::generate()?;
    keyfile::write(&dir.node_key(), &node_key)?;
    keyfile::write(&dir.operator_key(), &operator)?;
    let mut identities = vec![
        GenesisIdentity {
            key: node_key.public(),
            role: Role::Validator,
            parent: None,
        },
        GenesisIdentity {
            key: operator.public(),
            role: Role::Operator,
            parent: None,
        },
    ];
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
    let genesis = Genesis {
        chain_id: a.chain_id.clone(),
        timestamp_ms: carechain_node::now_ms(),
        identities,
    };
    let doc = json!({
        "chain_id": genesis.chain_id,
        "timestamp_ms": genesis.timestamp_ms,
        "genesis_hash": genesis.hash().to_hex(),
        "identities": genesis.identities.iter().map(|i| json!({"did": i.key.did().to_string(), "role": i.role.as_str()})).collect::<Vec<_>>(),
    });
    fs::write(dir.genesis_json(), serde_json::to_string_pretty(&doc)?)?;
    // The canonical encoding, for auditors to pin (`carechain verify --url … --genesis genesis.bin`).
    fs::write(dir.genesis_bin(), carechain_types::encode(&genesis))?;
    Store::create(&dir.db(), &genesis)?;
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
