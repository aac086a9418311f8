//! The evidence of a decision, carried by its ClaimResponse: the deciding transaction and its
//! inclusion in the log under a signed checkpoint, the sealed block header with the
//! transaction's and the receipt's Merkle paths, the salt of the inputs' commitment, and the
//! contract's code hash. With the claim bundle it is enough to check the decision offline and
//! to run the contract again (`verify.rs`).

use carechain_crypto::{Hash, Signature, merkle};
use carechain_service::NodeTx;
use carechain_types::{Header, Receipt, SignedTx, encode};
use serde_json::{Value, json};

/// A decision's evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The claims contract.
    pub contract: Hash,
    /// The hash of the code it runs.
    pub code_hash: Hash,
    /// The salt of the inputs' commitment.
    pub salt: [u8; 32],
    /// The deciding transaction.
    pub tx: SignedTx,
    /// The header of its block, and the proposer's seal.
    pub header: Header,
    /// The seal.
    pub seal: Signature,
    /// The transaction's position in the block.
    pub position: u64,
    /// Its path under the header's `tx_root`.
    pub tx_path: Vec<Hash>,
    /// Its receipt (the decision is the receipt's data).
    pub receipt: Receipt,
    /// The receipt's path under the header's `receipts_root`.
    pub receipt_path: Vec<Hash>,
    /// Its inclusion in the log: `{log_index, tree_size, proof, checkpoint}`.
    pub inclusion: Value,
}

fn hexes(v: &[Hash]) -> Vec<String> {
    v.iter().map(Hash::to_hex).collect()
}

fn field<'a>(v: &'a Value, f: &str) -> Result<&'a str, String> {
    v[f].as_str().ok_or_else(|| format!("evidence has no {f}"))
}

fn decode<T: borsh::BorshDeserialize>(v: &Value, f: &str) -> Result<T, String> {
    let bytes = hex::decode(field(v, f)?).map_err(|_| format!("evidence {f} is not hex"))?;
    borsh::from_slice(&bytes).map_err(|_| format!("evidence {f} does not decode"))
}

fn hash_list(v: &Value, f: &str) -> Result<Vec<Hash>, String> {
    v[f].as_array()
        .ok_or_else(|| format!("evidence has no {f}"))?
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap_or("")).map_err(|e| format!("{f}: {e}")))
        .collect()
}

impl Evidence {
    /// The evidence of `tx`, a claims contract's deciding transaction.
    pub fn of(
        node_tx: &NodeTx,
        contract: Hash,
        code_hash: Hash,
        salt: [u8; 32],
        inclusion: Value,
    ) -> Evidence {
        let tx_leaves: Vec<Hash> = node_tx
            .block
            .txs
            .iter()
            .map(|t| merkle::leaf_hash(&t.hash().0))
            .collect();
        let receipt_leaves: Vec<Hash> = node_tx
            .receipts
            .iter()
            .map(|r| merkle::leaf_hash(&encode(r)))
            .collect();
        Evidence {
            contract,
            code_hash,
            salt,
            tx: node_tx.block.txs[node_tx.position].clone(),
            header: node_tx.block.header.clone(),
            seal: node_tx.block.seal,
            position: node_tx.position as u64,
            tx_path: merkle::inclusion_path(&tx_leaves, node_tx.position),
            receipt: node_tx.receipt().clone(),
            receipt_path: merkle::inclusion_path(&receipt_leaves, node_tx.position),
            inclusion,
        }
    }

    /// The block time as a FHIR instant.
    pub fn date(&self) -> String {
        carechain_records::format_instant(self.header.timestamp_ms)
    }

    /// The block's day as a FHIR date.
    pub fn day(&self) -> String {
        self.date().chars().take(10).collect()
    }

    /// The deciding transaction's hash.
    pub fn tx_hash(&self) -> String {
        self.tx.hash().to_hex()
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "contract": carechain_types::Account::Contract(self.contract).to_string(),
            "code_hash": self.code_hash.to_hex(),
            "salt": hex::encode(self.salt),
            "tx": hex::encode(encode(&self.tx)),
            "tx_hash": self.tx_hash(),
            "header": hex::encode(encode(&self.header)),
            "seal": hex::encode(encode(&self.seal)),
            "position": self.position,
            "tx_path": hexes(&self.tx_path),
            "receipt": hex::encode(encode(&self.receipt)),
            "receipt_path": hexes(&self.receipt_path),
            "inclusion": self.inclusion,
        })
    }

    /// From [`Evidence::to_json`]'s form.
    pub fn from_json(v: &Value) -> Result<Evidence, String> {
        let contract = match field(v, "contract")?.parse::<carechain_types::Account>() {
            Ok(carechain_types::Account::Contract(h)) => h,
            _ => return Err("evidence contract is not contract:<hex>".into()),
        };
        let salt: [u8; 32] = hex::decode(field(v, "salt")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("evidence salt is not 32 bytes of hex")?;
        Ok(Evidence {
            contract,
            code_hash: Hash::from_hex(field(v, "code_hash")?).map_err(|e| e.to_string())?,
            salt,
            tx: decode(v, "tx")?,
            header: decode(v, "header")?,
            seal: decode(v, "seal")?,
            position: v["position"].as_u64().ok_or("evidence has no position")?,
            tx_path: hash_list(v, "tx_path")?,
            receipt: decode(v, "receipt")?,
            receipt_path: hash_list(v, "receipt_path")?,
            inclusion: v["inclusion"].clone(),
        })
    }
}
