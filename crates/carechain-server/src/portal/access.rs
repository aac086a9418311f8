//! Who accessed my data: every allowed and denied access and every break-glass, at this node
//! and at every node of her record locator, each verifiable in the browser against a signed
//! checkpoint.

use std::collections::BTreeMap;

use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::{
    DirectoryEntry, PageError, Portal, Viewer, blocking, directory, page,
    patient::{name_of, own, short_did},
};

#[derive(Deserialize)]
pub(super) struct AccessQuery {
    #[serde(default)]
    all: Option<String>,
    /// How many entries to list, newest first (default 200; 0: all).
    #[serde(default)]
    limit: Option<usize>,
}

/// One access-log row's public facts.
struct Access {
    when: String,
    who: String,
    org: Option<String>,
    mine: bool,
    what: String,
    interaction: String,
    purpose: String,
    allowed: bool,
    note: String,
    break_glass: bool,
    /// The node that decided (the event's observer) and, for a request another node made,
    /// that node.
    at: String,
    via: Option<String>,
    entry: Value,
}

fn access_rows(entries: Vec<Value>, own_did: &str, dir: &[DirectoryEntry]) -> Vec<Access> {
    entries
        .into_iter()
        .map(|entry| {
            let ev = &entry["event"];
            let agent = &ev["agent"][0];
            let who_did = agent["who"]["identifier"]["value"].as_str().unwrap_or("");
            let note = ev["outcomeDesc"].as_str().unwrap_or("").to_string();
            Access {
                when: ev["recorded"].as_str().unwrap_or("").to_string(),
                who: if who_did == own_did {
                    "You".to_string()
                } else {
                    name_of(dir, who_did)
                },
                org: agent["extension"][0]["valueIdentifier"]["value"]
                    .as_str()
                    .map(|o| name_of(dir, o)),
                mine: who_did == own_did,
                what: ev["entity"][0]["what"]["reference"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                interaction: ev["subtype"][0]["code"].as_str().unwrap_or("").to_string(),
                purpose: ev["purposeOfEvent"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                allowed: ev["outcome"] == "0",
                break_glass: carechain_service::is_break_glass(ev),
                note,
                at: short_did(
                    ev["source"]["observer"]["identifier"]["value"]
                        .as_str()
                        .unwrap_or(""),
                ),
                via: ev["agent"][1]["who"]["identifier"]["value"]
                    .as_str()
                    .map(short_did),
                entry,
            }
        })
        .collect()
}

/// `2026-11-24T16:28:42.831Z` as `2026-11-24 16:28:42 UTC`.
fn human_time(t: &str) -> String {
    match t.get(..19) {
        Some(s) if t.ends_with('Z') => format!("{} UTC", s.replace('T', " ")),
        _ => t.to_string(),
    }
}

pub(super) async fn access(
    State(st): State<Portal>,
    v: Viewer,
    Query(q): Query<AccessQuery>,
) -> Result<Response, PageError> {
    // Her log at every node: this one's (if it holds a record of hers) and every node of her
    // record locator, asked with her own signed sign-in.
    if v.session.role != carechain_types::Role::Patient {
        own(&v)?;
    }
    let all = q.all.is_some();
    let (svc, s, node) = (st.service.clone(), v.session.clone(), st.node.clone());
    let (rows, verifier, trusted, unavailable) = blocking(move || {
        let (entries, unavailable) = svc.network_access_log(&s)?;
        let entries = crate::fhir::with_proofs(&node, entries);
        let dir = directory(&svc, &s);
        // The nodes whose audit anchors count beside this one's: those of her locator.
        let trusted: Vec<String> = node
            .store()
            .with_durable(|d| carechain_state::locator(d.snapshot, &s.did.public_key()))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .iter()
            .map(|l| hex::encode(l.node.0))
            .collect();
        Ok((
            access_rows(entries, &s.did.to_string(), &dir),
            node.ledger().checkpoint_verifier_key(),
            trusted.join(","),
            unavailable,
        ))
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    let alerts: Vec<&Access> = rows.iter().filter(|a| a.break_glass).collect();
    let shown: Vec<&Access> = rows.iter().filter(|a| all || !a.mine).collect();
    let mut by_outcome = BTreeMap::new();
    for a in &shown {
        *by_outcome.entry(a.allowed).or_insert(0usize) += 1;
    }
    let limit = match q.limit.unwrap_or(200) {
        0 => usize::MAX,
        n => n,
    };
    let listed = &shown[..shown.len().min(limit)];
    let own = if all { "all=1&" } else { "" };
    let body = html! {
        p.lead { "Every access to your records, allowed or denied, is an audit event anchored on the ledger. " strong { "Verify" } " checks, in this browser, that the event is in the public log under a checkpoint signed by the node." }
        section aria-labelledby="alerts-h" {
            h2 id="alerts-h" { "Alerts" }
            @if alerts.is_empty() {
                p { "No emergency (break-glass) access to your records." }
            } @else {
                ul.alerts role="list" {
                    @for a in &alerts {
                        li.alert {
                            strong { "Emergency access" } " by " (a.who) @if let Some(o) = &a.org { " (" (o) ")" }
                            " on " (human_time(&a.when)) " to " (a.what) ". Reason: " (a.note.trim_start_matches("break-glass: ").split(';').next().unwrap_or(""))
                        }
                    }
                }
            }
        }
        section aria-labelledby="log-h" {
            h2 id="log-h" { "Access log" }
            p.muted {
                (shown.len()) " entries (" (by_outcome.get(&true).copied().unwrap_or(0)) " allowed, " (by_outcome.get(&false).copied().unwrap_or(0)) " denied). "
                @if all { a href="/patient/access" { "Hide my own accesses" } } @else { a href="/patient/access?all=1" { "Include my own accesses" } }
            }
            @if listed.len() < shown.len() {
                p.muted { "The latest " (listed.len()) " are listed. " a href=(format!("/patient/access?{own}limit=0")) { "List all " (shown.len()) } }
            }
            @for u in &unavailable {
                p.alert role="status" { "Node " code { (short_did(&u.node)) } " (" (u.endpoint) ") did not answer: its part of your log is missing here. " (u.reason) }
            }
            p.muted { "Checkpoint key: " code id="verifier-key" { (verifier) } }
            div.tablewrap {
                table.access data-verifier=(verifier) data-trusted=(trusted) {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" }
                        th scope="col" { "Purpose" } th scope="col" { "Outcome" } th scope="col" { "Where" } th scope="col" { "Proof" }
                    } }
                    tbody {
                        @for (i, a) in listed.iter().enumerate() {
                            @let e = &a.entry;
                            @let inc = &e["inclusion"];
                            tr class=(if a.break_glass { "row-glass" } else if a.allowed { "row-ok" } else { "row-denied" })
                                data-event=(serde_json::to_string(&e["event"]).unwrap_or_default())
                                data-salt=(e["salt"].as_str().unwrap_or(""))
                                data-tx=(e["tx"].as_str().unwrap_or(""))
                                data-batch=(serde_json::to_string(&e["batch"]).unwrap_or_default())
                                data-index=(inc["log_index"].as_u64().map(|x| x.to_string()).unwrap_or_default())
                                data-size=(inc["tree_size"].as_u64().map(|x| x.to_string()).unwrap_or_default())
                                data-proof=(serde_json::to_string(&inc["proof"]).unwrap_or_default())
                                data-checkpoint=(inc["checkpoint"].as_str().unwrap_or("")) {
                                td { (human_time(&a.when)) }
                                td { (a.who) @if let Some(o) = &a.org { br; span.muted { (o) } } }
                                td { (a.interaction) " " code { (a.what) } }
                                td { (a.purpose) }
                                td {
                                    @if a.break_glass { span.badge.glass { "Break-glass" } }
                                    @else if a.allowed { span.badge.ok { "Allowed" } }
                                    @else { span.badge.denied { "Denied" } }
                                    @if !a.allowed { br; span.muted { (a.note) } }
                                }
                                td {
                                    code { (a.at) }
                                    @if let Some(n) = &a.via { br; span.muted { "asked by node " code { (n) } } }
                                }
                                td {
                                    @if inc.is_object() {
                                        button.verify type="button" aria-describedby=(format!("vr-{i}")) { "Verify" }
                                    }
                                    span.result id=(format!("vr-{i}")) role="status" aria-live="polite" {
                                        @if !inc.is_object() { "pending: not in a checkpoint yet" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Who accessed my data", Some(&v), body))
}
