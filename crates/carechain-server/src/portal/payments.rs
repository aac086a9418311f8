//! The patient's payments: her care-token balance (from the ledger's state), her claims as
//! explanations of benefit (what was billed, what the plan paid, why a line was denied) and
//! the mutual pools she pays into, with their books.

use axum::{Router, extract::State, response::Response, routing::get};
use carechain_contracts::shipped;
use carechain_crypto::{Hash, sha256};
use carechain_types::{Account, Outcome};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{PageError, Portal, Viewer, blocking, page, purpose};

/// Most blocks looked back over for the pools she paid into.
const POOL_SCAN_BLOCKS: u64 = 5_000;

pub(crate) fn routes() -> Router<Portal> {
    Router::new().route("/patient/payments", get(payments))
}

/// Minor units as CARE text.
fn care(minor: u64, decimals: u8) -> String {
    let scale = 10u64.pow(u32::from(decimals));
    if decimals == 0 {
        return format!("{minor} CARE");
    }
    format!(
        "{}.{:0w$} CARE",
        minor / scale,
        minor % scale,
        w = decimals as usize
    )
}

fn amount(v: &Value) -> String {
    match v["value"].as_f64() {
        Some(x) => format!("{x:.2}"),
        None => "—".into(),
    }
}

fn benefit(item: &Value) -> (String, Vec<String>) {
    let adj = item["adjudication"].as_array().cloned().unwrap_or_default();
    let paid = adj
        .iter()
        .find(|a| a["category"]["coding"][0]["code"] == "benefit" && a["amount"].is_object())
        .map(|a| amount(&a["amount"]))
        .unwrap_or_else(|| "0.00".into());
    let reasons = adj
        .iter()
        .filter_map(|a| a["reason"]["coding"][0]["code"].as_str())
        .map(carc_text)
        .collect();
    (paid, reasons)
}

/// The CARC codes the claims contract gives, in words.
fn carc_text(code: &str) -> String {
    let text = match code {
        "2" => "your coinsurance share",
        "16" => "the claim lacked information",
        "18" => "a duplicate of a claim already made",
        "26" => "before your coverage began",
        "27" => "after your coverage ended",
        "31" => "not identified as a member",
        "45" => "above the plan's fee schedule",
        "96" => "not covered by your plan",
        "119" => "the plan's limit for this period is reached",
        "133" => "pending the insurer's review",
        "197" => "needed a pre-authorization",
        "B7" => "the provider is not in the plan's network",
        _ => "see your insurer",
    };
    format!("{text} (CARC {code})")
}

fn claim_rows(eobs: &[Value]) -> Markup {
    html! {
        @if eobs.is_empty() {
            p { "No claims have been made for your care on this node." }
        }
        @for e in eobs {
            @let outcome = e["outcome"].as_str().unwrap_or("");
            @let paid = e["payment"]["amount"].is_object();
            article.claim data-outcome=(outcome) data-paid=(paid) {
                h3 {
                    (e["created"].as_str().unwrap_or("").get(..10).unwrap_or(""))
                    " — " (e["disposition"].as_str().unwrap_or(""))
                }
                table {
                    thead { tr { th { "Service" } th { "Billed" } th { "Plan paid" } th { "Why" } } }
                    tbody {
                        @for item in e["item"].as_array().into_iter().flatten() {
                            @let (paid_line, reasons) = benefit(item);
                            @let billed = item["adjudication"][0]["amount"].clone();
                            tr {
                                td { (item["productOrService"]["coding"][0]["display"].as_str().or(item["productOrService"]["coding"][0]["code"].as_str()).unwrap_or("")) }
                                td { (amount(&billed)) }
                                td { (paid_line) }
                                td { (reasons.join("; ")) }
                            }
                        }
                    }
                }
                @if paid {
                    p.small { "Paid " (amount(&e["payment"]["amount"])) " CARE to your provider by ledger transaction " code { (e["payment"]["identifier"]["value"].as_str().unwrap_or("").get(..16).unwrap_or("")) "…" } "." }
                } @else {
                    p.small { "Nothing was paid on this claim." }
                }
            }
        }
    }
}

/// The pools `me` paid into (transfers from her to a contract running the shipped pool
/// code), newest first, with her membership and the pool's books.
fn pools(st: &Portal, me: &Account) -> Vec<(Hash, Value, Value)> {
    let Ok(snap) = st.node.snapshot() else {
        return Vec::new();
    };
    let pool_code = sha256(shipped::POOL.code);
    let me_text = me.to_string();
    let head = snap.head().unwrap_or(0);
    let mut seen: Vec<Hash> = Vec::new();
    let mut h = head;
    while h > 0 && head - h < POOL_SCAN_BLOCKS {
        for r in snap.receipts(h).ok().flatten().unwrap_or_default() {
            if !matches!(r.outcome, Outcome::Applied { .. }) {
                continue;
            }
            for e in &r.events {
                let from_me = e
                    .attributes
                    .iter()
                    .any(|(k, v)| k == "from" && *v == me_text);
                let to = e.attributes.iter().find(|(k, _)| k == "to").map(|(_, v)| v);
                if let (true, Some(Ok(Account::Contract(c)))) =
                    (from_me, to.map(|t| t.parse::<Account>()))
                    && !seen.contains(&c)
                {
                    seen.push(c);
                }
            }
        }
        h -= 1;
    }
    seen.into_iter()
        .filter(|c| {
            carechain_state::contract(&snap, c)
                .ok()
                .flatten()
                .is_some_and(|i| i.code == pool_code)
        })
        .filter_map(|c| {
            let q = |msg: Value| {
                st.node
                    .ledger()
                    .query_contract(&c, msg.to_string().as_bytes())
                    .ok()
                    .and_then(|a| a.result.ok())
                    .and_then(|(d, _)| serde_json::from_slice::<Value>(&d).ok())
            };
            let member = q(json!({"member": {"member": me_text}}))?;
            let books = q(json!({"books": {}}))?;
            Some((c, member, books))
        })
        .collect()
}

async fn payments(State(st): State<Portal>, v: Viewer) -> Result<Response, PageError> {
    let pid = super::patient::own(&v)?;
    let me = Account::Identity(v.session.did.public_key());
    let decimals = st.node.store().genesis().token.decimals;
    let balance = st
        .node
        .snapshot()
        .ok()
        .and_then(|s| carechain_state::balance(&s, &me).ok())
        .unwrap_or(0);
    let (svc, s, p2) = (st.service.clone(), v.session.clone(), pid.clone());
    let eobs: Vec<Value> = blocking(move || {
        let params = vec![
            ("patient".to_string(), format!("Patient/{p2}")),
            ("_count".to_string(), "200".to_string()),
        ];
        let b = svc.search(
            &s,
            &purpose("PATRQT", None),
            "ExplanationOfBenefit",
            &params,
            "",
        )?;
        Ok(super::chart::resources(&b))
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    let st2 = st.clone();
    let pools = tokio::task::spawn_blocking(move || pools(&st2, &me))
        .await
        .unwrap_or_default();
    let body = html! {
        p.lead { "Your care tokens, your claims and your mutual pools, as the ledger records them." }
        section {
            h2 { "Balance" }
            p.balance { strong id="my-balance" { (care(balance, decimals)) } }
        }
        section {
            h2 { "My claims" }
            p.small { "Each claim was decided by your insurer's published rules (a contract on the ledger), in the block that carried it; payment moved in the same transaction." }
            (claim_rows(&eobs))
        }
        section {
            h2 { "My mutual pools" }
            @if pools.is_empty() {
                p { "You are not a member of a mutual pool." }
            }
            @for (c, member, books) in &pools {
                @let covered = member["covered"] == true;
                article.pool data-covered=(covered) {
                    h3 { "Pool " code { (Account::Contract(*c).to_string().get(..20).unwrap_or("")) "…" } }
                    p { @if covered { "You are covered." } @else { "Your coverage has lapsed: a premium is overdue." } }
                    p.small {
                        "Reserves " (care(books["reserves"].as_u64().unwrap_or(0), decimals))
                        ", premiums in " (care(books["premiums"].as_u64().unwrap_or(0), decimals))
                        ", payouts " (care(books["payouts"].as_u64().unwrap_or(0), decimals))
                        ", solvency " (books["solvency_permille"].as_u64().unwrap_or(0) / 10) "%"
                        ", " (books["members"]) " members."
                    }
                }
            }
        }
    };
    Ok(page("Payments", Some(&v), body))
}
