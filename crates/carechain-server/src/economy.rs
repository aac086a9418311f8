//! The care token and contracts over JSON/HTTP: `/v1/token` (metadata and supply, balances
//! and allowances with state proofs, recent transfers) and `/v1/contracts` (stored code,
//! instances, read-only queries). Writes are transactions (`POST /v1/txs`).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use carechain_crypto::Hash;
use carechain_node::Node;
use carechain_state::{SUPPLY_KEY, allowance_key, balance_key, code_key, instance_key};
use carechain_types::{Account, Outcome};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::proof::proven_value;
use crate::{ApiError, json as j};

type ApiResult<T> = Result<T, ApiError>;

/// Most blocks `GET /v1/token/transfers` looks back over.
const TRANSFER_SCAN_BLOCKS: u64 = 2_000;

/// Queries run at once (each may burn up to a transaction's fuel limit, unauthenticated): the
/// rest wait their turn, so queries cannot take the node's cores from block production.
static QUERIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/token", get(token))
        .route("/v1/token/balances/{account}", get(balance))
        .route("/v1/token/allowances/{owner}/{spender}", get(allowance))
        .route("/v1/token/transfers", get(transfers))
        .route("/v1/contracts/code/{hash}", get(code))
        .route("/v1/contracts/{address}", get(instance))
        .route("/v1/contracts/{address}/query", post(query))
        .with_state(node)
}

fn account(s: &str) -> ApiResult<Account> {
    s.parse::<Account>().map_err(|_| {
        ApiError::bad_request(
            "bad_account",
            format!("{s} is not a did:key or contract:<hex>"),
        )
    })
}

fn contract_address(s: &str) -> ApiResult<Hash> {
    match account(s)? {
        Account::Contract(h) => Ok(h),
        Account::Identity(_) => Err(ApiError::bad_request(
            "bad_contract",
            "a contract address is contract:<hex>",
        )),
    }
}

fn u64_of(v: Option<Vec<u8>>) -> ApiResult<u64> {
    match v {
        None => Ok(0),
        Some(b) => borsh::from_slice(&b).map_err(ApiError::internal),
    }
}

async fn token(State(node): State<Arc<Node>>) -> ApiResult<Json<Value>> {
    let t = &node.store().genesis().token;
    let (supply, proof) = proven_value(&node, SUPPLY_KEY)?;
    Ok(Json(json!({
        "name": t.name, "symbol": t.symbol, "decimals": t.decimals, "tx_fee": t.tx_fee,
        "total_supply": u64_of(supply)?,
        "state_proof": proof,
    })))
}

async fn balance(State(node): State<Arc<Node>>, Path(a): Path<String>) -> ApiResult<Json<Value>> {
    let acct = account(&a)?;
    let (v, proof) = proven_value(&node, &balance_key(&acct))?;
    Ok(Json(json!({
        "account": acct.to_string(),
        "balance": u64_of(v)?,
        "height": proof["height"],
        "state_proof": proof,
    })))
}

async fn allowance(
    State(node): State<Arc<Node>>,
    Path((owner, spender)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let Account::Identity(owner) = account(&owner)? else {
        return Err(ApiError::bad_request(
            "bad_owner",
            "an allowance's owner is an identity",
        ));
    };
    let spender = account(&spender)?;
    let (v, proof) = proven_value(&node, &allowance_key(&owner, &spender))?;
    let a: Option<carechain_types::Allowance> = v
        .map(|b| borsh::from_slice(&b).map_err(ApiError::internal))
        .transpose()?;
    let height = proof["height"].as_u64().unwrap_or(0);
    Ok(Json(json!({
        "owner": owner.did().to_string(),
        "spender": spender.to_string(),
        "amount": a.as_ref().map_or(0, |a| a.amount),
        "expires_at": a.as_ref().map(|a| a.expires_at),
        "in_force": a.as_ref().is_some_and(|a| a.expires_at > height + 1 && a.amount > 0),
        "state_proof": proof,
    })))
}

#[derive(Deserialize)]
struct TransfersQuery {
    /// Most transfers returned (default 20, at most 200).
    limit: Option<usize>,
    /// Only those touching this account.
    account: Option<String>,
}

/// The latest token movements (transfers, mints, burns), newest first.
async fn transfers(
    State(node): State<Arc<Node>>,
    Query(q): Query<TransfersQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    let who = q
        .account
        .as_deref()
        .map(account)
        .transpose()?
        .map(|a| a.to_string());
    let snap = node.snapshot().map_err(ApiError::internal)?;
    let head = snap.head().map_err(ApiError::internal)?;
    let mut out = Vec::new();
    let mut h = head;
    while h > 0 && head - h < TRANSFER_SCAN_BLOCKS && out.len() < limit {
        let receipts = snap
            .receipts(h)
            .map_err(ApiError::internal)?
            .unwrap_or_default();
        for r in receipts.iter().rev() {
            if !matches!(r.outcome, Outcome::Applied { .. }) {
                continue;
            }
            for e in r.events.iter().rev() {
                if !matches!(e.kind.as_str(), "transfer" | "mint" | "burn") {
                    continue;
                }
                let touches = who
                    .as_deref()
                    .is_none_or(|w| e.attributes.iter().any(|(_, v)| v == w));
                if touches && out.len() < limit {
                    let mut v = j::event(e);
                    v["height"] = json!(h);
                    v["tx_hash"] = json!(r.tx_hash.to_hex());
                    out.push(v);
                }
            }
        }
        h -= 1;
    }
    Ok(Json(json!({ "height": head, "transfers": out })))
}

async fn code(State(node): State<Arc<Node>>, Path(hash): Path<String>) -> ApiResult<Response> {
    let hash =
        Hash::from_hex(&hash).map_err(|e| ApiError::bad_request("bad_hash", e.to_string()))?;
    let (v, _) = proven_value(&node, &code_key(&hash))?;
    let code = v.ok_or_else(|| {
        ApiError::not_found("code_not_found", "no code is stored under this hash")
    })?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], code).into_response())
}

async fn instance(State(node): State<Arc<Node>>, Path(a): Path<String>) -> ApiResult<Json<Value>> {
    let address = contract_address(&a)?;
    let (v, proof) = proven_value(&node, &instance_key(&address))?;
    let raw =
        v.ok_or_else(|| ApiError::not_found("contract_not_found", "no contract at this address"))?;
    let i: carechain_state::ContractInstance =
        borsh::from_slice(&raw).map_err(ApiError::internal)?;
    let (bal, _) = proven_value(&node, &balance_key(&Account::Contract(address)))?;
    Ok(Json(json!({
        "address": Account::Contract(address).to_string(),
        "code_hash": i.code.to_hex(),
        "creator": i.creator.did().to_string(),
        "label": i.label,
        "created_at": i.created_at,
        "balance": u64_of(bal)?,
        "state_proof": proof,
    })))
}

/// A read-only call of the contract's `query` with the body (JSON) as its message.
async fn query(
    State(node): State<Arc<Node>>,
    Path(a): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let address = contract_address(&a)?;
    if serde_json::from_slice::<Value>(&body).is_err() {
        return Err(ApiError::bad_request(
            "bad_message",
            "the query message is JSON",
        ));
    }
    let _turn = QUERIES.acquire().await.map_err(ApiError::internal)?;
    let n = node.clone();
    let answer = tokio::task::spawn_blocking(move || n.ledger().query_contract(&address, &body))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(match answer.result {
        Ok((data, fuel)) => Json(json!({
            "height": answer.height,
            "fuel_used": fuel,
            "result": serde_json::from_slice::<Value>(&data).unwrap_or(Value::Null),
        }))
        .into_response(),
        Err(reason) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            reason.code(),
            reason.message(),
        )
        .into_response(),
    })
}
