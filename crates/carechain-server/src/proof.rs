//! State proofs: a value of the durable state with the proof of it (or of its absence)
//! against that block's state root.

use carechain_node::Node;
use carechain_state::{StateProof, StateView, bucket_of, value_hash};
use serde_json::{Value, json};

use crate::ApiError;

type ApiResult<T> = Result<T, ApiError>;

/// A proof of the value under `key` against the state root of the head block: the bucket's
/// entries, the commitment path and the root all read at one durable height.
pub(crate) fn state_proof(node: &Node, key: &[u8]) -> ApiResult<Value> {
    proven_value(node, key).map(|(_, proof)| proof)
}

/// The value under `key` in the durable state (absent: `None`) and its state proof against
/// that block's state root (of presence, or of absence: the key's whole bucket).
pub(crate) fn proven_value(node: &Node, key: &[u8]) -> ApiResult<(Option<Vec<u8>>, Value)> {
    let b = bucket_of(key);
    let (height, root, entries, path) = node
        .store()
        .with_durable(|d| {
            d.snapshot
                .bucket_entries(b)
                .map(|entries| (d.height, d.commitment.root(), entries, d.commitment.path(b)))
        })
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let value = entries
        .iter()
        .find(|(k, _)| k.as_slice() == key)
        .map(|(_, v)| v.clone());
    let proof = StateProof {
        bucket: b,
        entries: entries
            .iter()
            .map(|(k, v)| (k.clone(), value_hash(v)))
            .collect(),
        path,
    };
    let vh = match proof.verify(&root, key) {
        Ok(vh) => vh,
        Err(e) => {
            return Err(ApiError::internal(format!(
                "state proof does not verify at height {height}: {e:?}"
            )));
        }
    };
    Ok((
        value,
        json!({
            "height": height,
            "state_root": root.to_hex(),
            "value_hash": vh.map(|h| h.to_hex()),
            "proof": hex::encode(carechain_types::encode(&proof)),
        }),
    ))
}
