//! The JSON/HTTP API routes.

use std::{str::FromStr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use borsh::BorshDeserialize;
use carechain_crypto::{Did, Hash, merkle};
use carechain_log::{
    consistency_proof, inclusion_proof,
    tiles::{TILE_HEIGHT, TILE_WIDTH, TileRef, encode_entry_bundle, parse_tile_path},
};
use carechain_node::{Admitted, Node};
use carechain_state::{Identity, StateView, identity_key};
use carechain_storage::Snapshot;
use carechain_types::MAX_TX_BYTES;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::proof::state_proof;
use crate::{ApiError, OPENAPI, json as j};

type AppState = Arc<Node>;
type ApiResult<T> = Result<T, ApiError>;

const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn routes(node: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/genesis", get(genesis))
        .route(
            "/v1/txs",
            post(submit).layer(DefaultBodyLimit::max(MAX_TX_BYTES * 2 + 1024)),
        )
        .route(
            "/v1/txs/batch",
            post(submit_batch).layer(DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .route("/v1/txs/{hash}", get(get_tx))
        .route("/v1/blocks/latest", get(latest_block))
        .route("/v1/blocks/{id}", get(get_block))
        .route("/v1/identities/{did}", get(get_identity))
        .route("/v1/validators", get(validators))
        .route("/v1/validators/proposals/{id}", get(validator_proposal))
        .route("/v1/evidence", get(evidence))
        .route("/v1/checkpoints/{size}", get(get_checkpoint_at))
        .route("/v1/proofs/consistency", get(get_consistency))
        .route("/checkpoint", get(checkpoint))
        .route("/v1/checkpoint/cosigned", get(cosigned_checkpoint))
        .route("/tile/{*path}", get(tile))
        .with_state(node)
}

fn snapshot(node: &Node) -> ApiResult<Snapshot> {
    node.snapshot().map_err(ApiError::internal)
}

async fn health(State(node): State<AppState>) -> Response {
    let body = json!({
        "status": if node.is_failed() { "failed" } else { "ok" },
        "height": node.store().head(),
        "mempool": node.mempool_len(),
    });
    let code = if node.is_failed() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(node): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.render_metrics(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn status(State(node): State<AppState>) -> ApiResult<Json<Value>> {
    let store = node.store();
    // One block's height, hash, roots and log: read one by one, a commit could fall between.
    let tip = store.tip();
    let (cosigner_keys, cosign_quorum) = node.cosigners();
    let schedule = node
        .ledger()
        .validator_schedule()
        .map_err(ApiError::internal)?;
    let validators: Vec<String> = schedule
        .at(tip.height + 1)
        .iter()
        .map(|k| k.did().to_string())
        .collect();
    Ok(Json(json!({
        "chain_id": store.genesis().chain_id,
        "genesis_hash": store.genesis().hash().to_hex(),
        "height": tip.height,
        "head_hash": tip.hash.to_hex(),
        "state_root": tip.state_root.to_hex(),
        "log_size": tip.log.size(),
        "log_root": tip.log.root().to_hex(),
        "log_origin": node.ledger().origin(),
        "checkpoint_key": node.ledger().checkpoint_verifier_key(),
        "node_key": node.ledger().node_key().did().to_string(),
        "validators": validators,
        "cosigner_keys": cosigner_keys,
        "cosign_quorum": cosign_quorum,
        "mempool": node.mempool_len(),
    })))
}

async fn genesis(State(node): State<AppState>) -> Response {
    let bytes = carechain_types::encode(node.store().genesis());
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

#[derive(Deserialize)]
struct WaitQuery {
    /// Wait until the transaction is durable (default true).
    wait: Option<bool>,
    /// Longest wait in milliseconds (default 10 000, at most 30 000).
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct TxJson {
    tx: String,
}

/// Reads a transaction body: raw bytes (`application/octet-stream`) or JSON `{"tx": "<hex>"}`.
fn tx_bytes(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Vec<u8>> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "tx_too_large",
                format!("transactions are at most {MAX_TX_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Ok(body.to_vec());
    }
    let parsed: TxJson = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("bad_json", format!("expected {{\"tx\": \"<hex>\"}}: {e}"))
    })?;
    hex::decode(parsed.tx.trim()).map_err(|_| {
        ApiError::bad_request(
            "bad_hex",
            "`tx` must be the hex encoding of a signed transaction",
        )
    })
}

async fn wait_for(node: &Node, hash: &Hash, timeout: Duration) -> ApiResult<Option<Value>> {
    let mut rx = node.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = committed_tx(node, hash)? {
            return Ok(Some(v));
        }
        if node.is_failed() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_stopped",
                "node stopped after a fatal storage error",
            ));
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return Ok(None),
        }
    }
}

fn pending(hash: &Hash) -> Value {
    json!({ "tx_hash": hash.to_hex(), "status": "pending", "poll": format!("/v1/txs/{}", hash.to_hex()) })
}

async fn submit(
    State(node): State<AppState>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let raw = tx_bytes(&headers, body)?;
    let n = node.clone();
    let Admitted { hash } = tokio::task::spawn_blocking(move || n.submit(raw))
        .await
        .map_err(ApiError::internal)??;
    if !q.wait.unwrap_or(true) {
        return Ok((StatusCode::ACCEPTED, Json(pending(&hash))).into_response());
    }
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(10_000)).min(MAX_WAIT);
    match wait_for(&node, &hash, timeout).await? {
        Some(v) => Ok((StatusCode::OK, Json(v)).into_response()),
        None => Ok((StatusCode::ACCEPTED, Json(pending(&hash))).into_response()),
    }
}

#[derive(Deserialize)]
struct BatchJson {
    txs: Vec<String>,
}

async fn submit_batch(
    State(node): State<AppState>,
    body: Result<Json<BatchJson>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(batch) = body.map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
    if batch.txs.len() > 50_000 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            "at most 50000 transactions per batch",
        ));
    }
    let mut raws = Vec::with_capacity(batch.txs.len());
    let mut results: Vec<Option<Value>> = Vec::with_capacity(batch.txs.len());
    for t in &batch.txs {
        match hex::decode(t.trim()) {
            Ok(b) => {
                raws.push(b);
                results.push(None);
            }
            Err(_) => results.push(Some(json!({"code": "bad_hex", "message": "not hex"}))),
        }
    }
    let n = node.clone();
    let admitted = tokio::task::spawn_blocking(move || n.submit_batch(raws))
        .await
        .map_err(ApiError::internal)?;
    let mut it = admitted.into_iter();
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Some(err) => err,
            None => match it.next() {
                Some(Ok(a)) => json!({"tx_hash": a.hash.to_hex(), "status": "pending"}),
                Some(Err(e)) => json!({"code": e.code(), "message": e.to_string()}),
                None => json!({"code": "internal", "message": "missing result"}),
            },
        })
        .collect();
    Ok(Json(json!({ "results": out })))
}

fn parse_hash(s: &str) -> ApiResult<Hash> {
    Hash::from_hex(s)
        .map_err(|_| ApiError::bad_request("bad_hash", "expected 64 hexadecimal digits"))
}

/// The committed transaction with receipt and inclusion proof, if committed.
fn committed_tx(node: &Node, hash: &Hash) -> ApiResult<Option<Value>> {
    let snap = snapshot(node)?;
    let Some(loc) = snap.tx_location(hash).map_err(ApiError::internal)? else {
        return Ok(None);
    };
    let block = snap
        .block(loc.height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("indexed block missing"))?;
    let receipts = snap
        .receipts(loc.height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("receipts missing"))?;
    let pos = loc.position as usize;
    let (Some(tx), Some(receipt)) = (block.txs.get(pos), receipts.get(pos)) else {
        return Err(ApiError::internal("index points outside block"));
    };
    let mut v = json!({
        "tx_hash": hash.to_hex(),
        "status": "committed",
        "height": loc.height,
        "position": loc.position,
        "block_hash": block.header.hash().to_hex(),
        "transaction": j::tx(tx),
        "receipt": j::receipt(receipt),
    });
    if let carechain_types::Outcome::Applied { log_index } = receipt.outcome {
        // Prove inclusion against the latest checkpoint of this snapshot.
        if let Some((size, note)) = snap.latest_checkpoint().map_err(ApiError::internal)? {
            let proof = inclusion_proof(&snap, log_index, size).map_err(ApiError::internal)?;
            v["inclusion"] = json!({
                "log_index": log_index,
                "leaf_hash": merkle::leaf_hash(&hash.0).to_hex(),
                "tree_size": size,
                "proof": proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                "checkpoint": note,
            });
        }
    }
    Ok(Some(v))
}

async fn get_tx(State(node): State<AppState>, Path(hash): Path<String>) -> ApiResult<Json<Value>> {
    let hash = parse_hash(&hash)?;
    if let Some(v) = committed_tx(&node, &hash)? {
        return Ok(Json(v));
    }
    if node.is_pending(&hash) {
        return Ok(Json(pending(&hash)));
    }
    Err(ApiError::not_found(
        "tx_not_found",
        "no such transaction is pending or committed",
    ))
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

fn block_response(snap: &Snapshot, height: u64, raw: bool) -> ApiResult<Response> {
    if raw {
        let bytes = snap
            .block_bytes(height)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found("block_not_found", format!("no block at height {height}"))
            })?;
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response());
    }
    let block = snap
        .block(height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found("block_not_found", format!("no block at height {height}"))
        })?;
    let receipts = snap
        .receipts(height)
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    Ok(Json(j::block(&block, &receipts)).into_response())
}

async fn latest_block(
    State(node): State<AppState>,
    Query(f): Query<FormatQuery>,
) -> ApiResult<Response> {
    let snap = snapshot(&node)?;
    let head = snap.head().map_err(ApiError::internal)?;
    if head == 0 {
        return Err(ApiError::not_found(
            "block_not_found",
            "no block has been committed yet",
        ));
    }
    block_response(&snap, head, f.format.as_deref() == Some("raw"))
}

async fn get_block(
    State(node): State<AppState>,
    Path(id): Path<String>,
    Query(f): Query<FormatQuery>,
) -> ApiResult<Response> {
    let snap = snapshot(&node)?;
    let height = if id.len() == 64 {
        let h = parse_hash(&id)?;
        snap.height_of(&h)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("block_not_found", "no block with this hash"))?
    } else {
        id.parse::<u64>().map_err(|_| {
            ApiError::bad_request("bad_block_id", "expected a height or a 64-hex block hash")
        })?
    };
    block_response(&snap, height, f.format.as_deref() == Some("raw"))
}

async fn get_identity(
    State(node): State<AppState>,
    Path(did): Path<String>,
) -> ApiResult<Json<Value>> {
    let did = Did::from_str(&did).map_err(|e| ApiError::bad_request("bad_did", e.to_string()))?;
    let snap = snapshot(&node)?;
    let key = identity_key(&did.public_key());
    let raw = snap.get(&key).map_err(ApiError::internal)?.ok_or_else(|| {
        ApiError::not_found(
            "identity_not_found",
            "no identity is registered under this did",
        )
    })?;
    let ident = Identity::try_from_slice(&raw).map_err(ApiError::internal)?;
    let mut v = j::identity(&ident);
    v["state_proof"] = state_proof(&node, &key)?;
    Ok(Json(v))
}

/// The validator schedule: the set in force for the next block, and every set, past and
/// scheduled by governance, with the height it starts at.
async fn validators(State(node): State<AppState>) -> ApiResult<Json<Value>> {
    let next = node.store().head() + 1;
    let schedule = node
        .ledger()
        .validator_schedule()
        .map_err(ApiError::internal)?;
    let dids = |keys: &[carechain_crypto::PublicKey]| -> Vec<String> {
        keys.iter().map(|k| k.did().to_string()).collect()
    };
    let sets: Vec<Value> = schedule
        .sets
        .iter()
        .map(|s| json!({ "from_height": s.from_height, "validators": dids(&s.validators) }))
        .collect();
    let current = schedule.at(next);
    Ok(Json(json!({
        "next_height": next,
        "epoch_length": carechain_types::EPOCH_LENGTH,
        "current": dids(current),
        "approval_quorum": carechain_types::approval_quorum(current.len()),
        "sets": sets,
    })))
}

/// Consensus faults of validators this node's engine observed (equivocating votes, invalid
/// sealed proposals), oldest first, each with its proof in hex: the offender's own signed
/// messages. Always empty on a single node.
async fn evidence(State(node): State<AppState>) -> Json<Value> {
    let faults: Vec<Value> = node
        .faults()
        .iter()
        .map(|f| {
            json!({
                "epoch": f.epoch,
                "view": f.view,
                "offender": f.offender,
                "kind": f.kind,
                "proof": hex::encode(&f.proof),
            })
        })
        .collect();
    Json(json!({ "evidence": faults }))
}

/// One validator-set proposal with its approvals.
async fn validator_proposal(
    State(node): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = carechain_crypto::Hash::from_hex(&id)
        .map_err(|e| ApiError::bad_request("bad_proposal_id", e.to_string()))?;
    let p = node
        .ledger()
        .validator_proposal(&id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("proposal_not_found", "no proposal has this id"))?;
    let height = node.store().head();
    let state = match p.approved_at {
        Some(_) => "approved",
        None if height + 1 >= p.effective_height => "expired",
        None => "pending",
    };
    Ok(Json(json!({
        "id": id.to_hex(),
        "action": p.change.action(),
        "validator": p.change.key().did().to_string(),
        "effective_height": p.effective_height,
        "proposer": p.proposer.did().to_string(),
        "proposed_at": p.proposed_at,
        "approvals": p.approvals.iter().map(|k| k.did().to_string()).collect::<Vec<_>>(),
        "approved_at": p.approved_at,
        "state": state,
    })))
}

/// A signed note as the latest checkpoint is served (plain text, never cached); 404 before
/// the first block.
fn latest_note(note: Option<String>) -> ApiResult<Response> {
    let note = note
        .ok_or_else(|| ApiError::not_found("no_checkpoint", "no block has been committed yet"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

async fn checkpoint(State(node): State<AppState>) -> ApiResult<Response> {
    latest_note(node.store().latest_checkpoint())
}

/// The latest checkpoint cosigned by a quorum of validators (C2SP `cosignature/v1` lines
/// after the node's own signature); when none has a quorum yet, the latest with what it has.
async fn cosigned_checkpoint(State(node): State<AppState>) -> ApiResult<Response> {
    latest_note(node.cosigned_checkpoint())
}

async fn get_checkpoint_at(
    State(node): State<AppState>,
    Path(size): Path<u64>,
) -> ApiResult<Response> {
    let snap = snapshot(&node)?;
    let cp = snap
        .checkpoint(size)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found("no_checkpoint", format!("no checkpoint at log size {size}"))
        })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], cp).into_response())
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    first: u64,
    second: u64,
}

async fn get_consistency(
    State(node): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<Value>> {
    let size = node.store().log().size();
    if q.first > q.second || q.second > size {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("need first <= second <= {size}"),
        ));
    }
    let snap = snapshot(&node)?;
    let proof = consistency_proof(&snap, q.first, q.second).map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "first": q.first, "second": q.second, "proof": proof.iter().map(Hash::to_hex).collect::<Vec<_>>() }),
    ))
}

async fn tile(State(node): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    let tref = parse_tile_path(&path)
        .ok_or_else(|| ApiError::not_found("bad_tile_path", "not a tlog-tiles path"))?;
    let snap = snapshot(&node)?;
    let size = node.store().log().size();
    let body = match tref {
        TileRef::Hashes {
            level,
            index,
            width,
        } => {
            let tree_level = u32::from(level) * u32::from(TILE_HEIGHT);
            if tree_level >= 64 {
                return Err(ApiError::not_found(
                    "tile_not_found",
                    "tile level beyond the tree",
                ));
            }
            let available = (size >> tree_level).saturating_sub(index.saturating_mul(TILE_WIDTH));
            if available < width {
                return Err(ApiError::not_found(
                    "tile_not_found",
                    "the log is not that large yet",
                ));
            }
            let from = index * TILE_WIDTH;
            let hashes = snap
                .log_nodes(tree_level as u8, from, from + width)
                .map_err(ApiError::internal)?;
            if hashes.len() as u64 != width {
                return Err(ApiError::internal("log nodes missing for tile"));
            }
            hashes.iter().flat_map(|h| h.0).collect::<Vec<u8>>()
        }
        TileRef::Entries { index, width } => {
            let available = size.saturating_sub(index.saturating_mul(TILE_WIDTH));
            if available < width {
                return Err(ApiError::not_found(
                    "tile_not_found",
                    "the log is not that large yet",
                ));
            }
            let from = index * TILE_WIDTH;
            let entries = snap
                .log_entries(from, from + width)
                .map_err(ApiError::internal)?;
            encode_entry_bundle(entries.iter().map(|h| h.0.as_slice()))
        }
    };
    let cache = if matches!(
        tref,
        TileRef::Hashes {
            width: TILE_WIDTH,
            ..
        } | TileRef::Entries {
            width: TILE_WIDTH,
            ..
        }
    ) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}
