//! A small server-rendered ledger explorer at `/`: latest blocks, the signed checkpoint, and
//! a block's transactions (commitments and identities only; the ledger holds no health data).

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use carechain_node::Node;
use carechain_types::{Outcome, Payload};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fafafa}\
header{background:#0b4f6c;color:#fff;padding:1rem}main{padding:1rem;max-width:70rem;margin:auto}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border-bottom:1px solid #ccc;padding:.4rem;text-align:left}\
code,pre{font-family:ui-monospace,monospace;word-break:break-all}a{color:#0b4f6c}pre{background:#eee;padding:.6rem;white-space:pre-wrap}\
.ok{color:#1b5e20}.bad{color:#b71c1c}@media (max-width:40rem){td:nth-child(n+4),th:nth-child(n+4){display:none}}";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{t} · carechain</title><style>{STYLE}</style></head><body><header><strong>carechain</strong> ledger explorer</header>\
<main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

pub fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/explorer/blocks/{height}", get(block_page))
        .with_state(node)
}

async fn index(State(node): State<Arc<Node>>) -> Response {
    let store = node.store();
    let log = store.log();
    let mut rows = String::new();
    if let Ok(snap) = node.snapshot() {
        let head = store.head();
        for h in (head.saturating_sub(19)..=head).rev().filter(|h| *h > 0) {
            if let Ok(Some(b)) = snap.block(h) {
                rows.push_str(&format!(
                    "<tr><td><a href=\"/explorer/blocks/{h}\">{h}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    b.header.tx_count,
                    &b.header.hash().to_hex()[..16],
                    b.header.log_size
                ));
            }
        }
    }
    let cp = store
        .latest_checkpoint()
        .unwrap_or_else(|| "(no block yet)".into());
    let body = format!(
        "<section aria-labelledby=\"s\"><h2 id=\"s\">Status</h2><p>Chain <code>{chain}</code>, height {height}, log size {size}, log root <code>{root}</code>.</p>\
<p>Latest signed checkpoint (C2SP signed note, verify with <code>{vkey}</code>):</p><pre>{cp}</pre></section>\
<section aria-labelledby=\"b\"><h2 id=\"b\">Latest blocks</h2><table><thead><tr><th scope=\"col\">Height</th><th scope=\"col\">Transactions</th><th scope=\"col\">Hash</th><th scope=\"col\">Log size</th></tr></thead><tbody>{rows}</tbody></table></section>\
<p>API: <a href=\"/openapi.json\">OpenAPI</a> · <a href=\"/v1/status\">status</a> · <a href=\"/checkpoint\">checkpoint</a> · <a href=\"/metrics\">metrics</a></p>",
        chain = escape(&store.genesis().chain_id),
        height = store.head(),
        size = log.size(),
        root = log.root().to_hex(),
        vkey = escape(&node.ledger().checkpoint_verifier_key()),
        cp = escape(&cp),
    );
    page("Ledger", &body)
}

/// What a transaction says in public: for anchors, the kind and commitment (and for tagged
/// anchors the label, version and pseudonymous subject) — never more, as the ledger holds
/// nothing else.
fn details(p: &Payload) -> String {
    match p {
        Payload::Anchor { kind, commitment } => format!(
            "{} <code>{}…</code>",
            escape(kind),
            &commitment.to_hex()[..16]
        ),
        Payload::TaggedAnchor {
            kind,
            commitment,
            subject,
            label,
            version,
        } => format!(
            "{} {} v{version}, subject <code>{}…</code>, commitment <code>{}…</code>",
            escape(kind),
            escape(label),
            &subject.to_hex()[..16],
            &commitment.to_hex()[..16]
        ),
        Payload::Register { subject, role, .. } => format!(
            "{} <code>{}</code>",
            role.as_str(),
            escape(&subject.did().to_string())
        ),
        Payload::RotateKey { .. } => "key rotation".into(),
        Payload::Deactivate { subject } => {
            format!("<code>{}</code>", escape(&subject.did().to_string()))
        }
        Payload::ProposeValidatorChange {
            change,
            effective_height,
        } => format!(
            "{} validator <code>{}</code> from height {effective_height}, proposal <code>{}…</code>",
            change.action(),
            escape(&change.key().did().to_string()),
            &carechain_types::validator_proposal_id(change, *effective_height).to_hex()[..16]
        ),
        Payload::ApproveValidatorChange { proposal } => {
            format!(
                "approves proposal <code>{}…</code>",
                &proposal.to_hex()[..16]
            )
        }
    }
}

async fn block_page(State(node): State<Arc<Node>>, Path(height): Path<u64>) -> Response {
    let Ok(snap) = node.snapshot() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "storage error").into_response();
    };
    let (Ok(Some(b)), Ok(Some(receipts))) = (snap.block(height), snap.receipts(height)) else {
        return page(
            "Block not found",
            "<p>No block at this height.</p><p><a href=\"/\">Back</a></p>",
        );
    };
    let mut rows = String::new();
    for (tx, r) in b.txs.iter().zip(&receipts).take(500) {
        let outcome = match &r.outcome {
            Outcome::Applied { log_index } => {
                format!("<span class=\"ok\">applied</span> (leaf {log_index})")
            }
            Outcome::Rejected(reason) => {
                format!("<span class=\"bad\">rejected</span>: {}", reason.code())
            }
        };
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            &tx.hash().to_hex()[..16],
            tx.body.payload.type_name(),
            details(&tx.body.payload),
            outcome,
            escape(&tx.body.signer.did().to_string()),
        ));
    }
    let h = &b.header;
    let body = format!(
        "<p><a href=\"/\">All blocks</a></p><dl><dt>Hash</dt><dd><code>{}</code></dd><dt>Proposer</dt><dd><code>{}</code></dd>\
<dt>State root</dt><dd><code>{}</code></dd><dt>Log</dt><dd>size {} root <code>{}</code></dd></dl>\
<table><thead><tr><th scope=\"col\">Tx</th><th scope=\"col\">Type</th><th scope=\"col\">What (public tags only)</th><th scope=\"col\">Outcome</th><th scope=\"col\">Signer</th></tr></thead><tbody>{rows}</tbody></table>",
        h.hash().to_hex(),
        escape(&h.proposer.did().to_string()),
        h.state_root.to_hex(),
        h.log_size,
        h.log_root.to_hex(),
    );
    page(&format!("Block {height}"), &body)
}
