//! The ledger explorer: status, the latest blocks and their checkpoints, the validator set
//! with the latest cosigned checkpoint's signatures, and a block's transactions —
//! commitments and public tags only, since the ledger holds no health data.

use axum::{
    Router,
    extract::{OptionalFromRequestParts, Path, State},
    http::request::Parts,
    response::Response,
    routing::get,
};
use carechain_types::{Outcome, Payload};
use maud::{Markup, html};

use super::{PageError, Portal, Viewer, page};

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/explorer", get(index))
        .route("/explorer/blocks/{height}", get(block_page))
}

/// The explorer is public: a signed-in viewer only changes the navigation.
impl OptionalFromRequestParts<Portal> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Portal,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Viewer as axum::extract::FromRequestParts<Portal>>::from_request_parts(parts, st)
                .await
                .ok(),
        )
    }
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// The names on a signed note's signature lines (the node's signature and validators'
/// cosignatures).
fn signers(note: &str) -> Vec<String> {
    note.lines()
        .filter_map(|l| l.strip_prefix("— "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

async fn index(State(st): State<Portal>, v: Option<Viewer>) -> Result<Response, PageError> {
    let node = st.node.clone();
    let store = node.store();
    let log = store.log();
    let snap = node
        .snapshot()
        .map_err(|_| PageError::new(500, "Something went wrong", "storage error"))?;
    let head = store.head();
    let mut blocks = Vec::new();
    for h in (head.saturating_sub(19)..=head).rev().filter(|h| *h > 0) {
        if let Ok(Some(b)) = snap.block(h) {
            blocks.push(b);
        }
    }
    let mut checkpoints = Vec::new();
    for b in blocks.iter().take(5) {
        if let Ok(Some(cp)) = snap.checkpoint(b.header.log_size) {
            checkpoints.push((b.header.height, cp));
        }
    }
    let validators: Vec<String> = node
        .ledger()
        .validator_schedule()
        .map(|s| s.at(head + 1).iter().map(|k| k.did().to_string()).collect())
        .unwrap_or_default();
    let cosigned = node.cosigned_checkpoint();
    let token = &store.genesis().token;
    let supply = carechain_state::total_supply(&snap).unwrap_or(0);
    let (moves, contracts) = economy(&snap, head);
    let body = html! {
        section aria-labelledby="s-h" {
            h2 id="s-h" { "Status" }
            dl.facts {
                dt { "Chain" } dd { code { (store.genesis().chain_id) } }
                dt { "Height" } dd { (head) }
                dt { "Log size" } dd { (log.size()) }
                dt { "Log root" } dd { code { (log.root().to_hex()) } }
                dt { "Checkpoint key" } dd { code { (node.ledger().checkpoint_verifier_key()) } }
            }
        }
        section aria-labelledby="b-h" {
            h2 id="b-h" { "Latest blocks" }
            div.tablewrap {
                table {
                    thead { tr { th scope="col" { "Height" } th scope="col" { "Transactions" } th scope="col" { "Hash" } th scope="col" { "Log size" } th scope="col" { "Time (UTC)" } } }
                    tbody {
                        @for b in &blocks {
                            @let h = &b.header;
                            tr {
                                td { a href=(format!("/explorer/blocks/{}", h.height)) { (h.height) } }
                                td { (h.tx_count) }
                                td { code { (short(&h.hash().to_hex())) } }
                                td { (h.log_size) }
                                td { (carechain_records::format_instant(h.timestamp_ms)) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="t-h" {
            h2 id="t-h" { (token.name) " and contracts" }
            dl.facts {
                dt { "Total supply" } dd id="total-supply" { (supply) " minor units (" (token.decimals) " decimals, " (token.symbol) ")" }
                dt { "Fee per transaction" } dd { (token.tx_fee) }
            }
            h3 { "Recent token movements" }
            @if moves.is_empty() { p.muted { "None in the latest blocks." } }
            ul.moves {
                @for (h, kind, attrs) in &moves {
                    li { "Block " a href=(format!("/explorer/blocks/{h}")) { (h) } ": " (kind) " "
                        @for (k, val) in attrs { span.attr { (k) " " code { (short(val)) } " " } } }
                }
            }
            h3 { "Recent contracts" }
            @if contracts.is_empty() { p.muted { "None in the latest blocks." } }
            ul.contracts {
                @for (h, addr, label) in &contracts {
                    li { code { (addr) } " “" (label) "”, block " (h) " · " a href=(format!("/v1/contracts/{addr}")) { "instance" } }
                }
            }
        }
        section aria-labelledby="v-h" {
            h2 id="v-h" { "Validators and signatures" }
            p { (validators.len()) " validator(s) sign blocks from height " (head + 1) ":" }
            ul.dids { @for d in &validators { li { code { (d) } } } }
            @if let Some(note) = &cosigned {
                p { "Latest checkpoint with its signatures (" (signers(note).len()) "): " (signers(note).join(", ")) }
                pre { (note) }
            }
        }
        section aria-labelledby="c-h" {
            h2 id="c-h" { "Latest checkpoints" }
            p.muted { "C2SP signed notes over the log's size and root; verify offline with " code { "carechain verify" } "." }
            @for (h, cp) in &checkpoints {
                details {
                    summary { "After block " (h) }
                    pre { (cp) }
                }
            }
        }
        p { "Supply chain: " a href="/explorer/products" { "a product's journey" } }
        p { "API: " a href="/openapi.json" { "OpenAPI" } " · " a href="/v1/status" { "status" } " · " a href="/checkpoint" { "checkpoint" } " · " a href="/metrics" { "metrics" } }
    };
    Ok(page("Ledger", v.as_ref(), body))
}

/// Movement of a token: (height, kind, attributes).
type Move = (u64, String, Vec<(String, String)>);

/// The latest token movements and contract instances (up to 10 each, from the last 500
/// blocks).
fn economy(
    snap: &carechain_storage::Snapshot,
    head: u64,
) -> (Vec<Move>, Vec<(u64, String, String)>) {
    let (mut moves, mut contracts) = (Vec::new(), Vec::new());
    let mut h = head;
    while h > 0 && head - h < 500 && (moves.len() < 10 || contracts.len() < 10) {
        let (Ok(Some(b)), Ok(Some(rs))) = (snap.block(h), snap.receipts(h)) else {
            break;
        };
        for (tx, r) in b.txs.iter().zip(&rs).rev() {
            if !matches!(r.outcome, carechain_types::Outcome::Applied { .. }) {
                continue;
            }
            for e in r
                .events
                .iter()
                .filter(|e| matches!(e.kind.as_str(), "transfer" | "mint" | "burn"))
            {
                if moves.len() < 10 {
                    moves.push((h, e.kind.clone(), e.attributes.clone()));
                }
            }
            if let carechain_types::Payload::Instantiate { label, .. } = &tx.body.payload
                && contracts.len() < 10
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.data)
                && let Some(a) = v["contract"].as_str()
            {
                contracts.push((h, a.to_string(), label.clone()));
            }
        }
        h -= 1;
    }
    (moves, contracts)
}

/// What a transaction says in public: for anchors, the kind and commitment (and for tagged
/// anchors the label, version and pseudonymous subject) — never more, as the ledger holds
/// nothing else.
fn details(p: &Payload) -> Markup {
    match p {
        Payload::Anchor { kind, commitment } => {
            html! { (kind) " " code { (short(&commitment.to_hex())) "…" } }
        }
        Payload::TaggedAnchor {
            kind,
            commitment,
            subject,
            label,
            version,
        } => html! {
            (kind) " " (label) " v" (version) ", subject " code { (short(&subject.to_hex())) "…" }
            ", commitment " code { (short(&commitment.to_hex())) "…" }
        },
        Payload::Register { subject, role, .. } => {
            html! { (role.as_str()) " " code { (subject.did().to_string()) } }
        }
        Payload::RotateKey { .. } => html! { "key rotation" },
        Payload::Deactivate { subject } => html! { code { (subject.did().to_string()) } },
        Payload::ProposeChange {
            change,
            effective_height,
        } => html! {
            (change.action()) @if change.is_validator_change() { " validator " } @else { " token issuer " }
            code { (change.key().did().to_string()) }
            " from height " (effective_height) ", proposal "
            code { (short(&carechain_types::proposal_id(change, *effective_height).to_hex())) "…" }
        },
        Payload::ApproveChange { proposal } => {
            html! { "approves proposal " code { (short(&proposal.to_hex())) "…" } }
        }
        Payload::GrantConsent { id, rule, .. } => html! {
            "consent " code { (short(&id.to_hex())) "…" } " to "
            code { (rule.grantee.did().to_string()) }
        },
        Payload::DelegateConsents { delegate, allowed } => html! {
            @if *allowed { "lets " } @else { "stops " }
            code { (delegate.did().to_string()) } " sign consents for a patient"
        },
        Payload::RevokeConsent { id, .. } => {
            html! { "revokes consent " code { (short(&id.to_hex())) "…" } }
        }
        Payload::RegisterNode { node, endpoint } => html! {
            "node " code { (node.did().to_string()) } " serves at " code { (endpoint) }
        },
        Payload::LocateRecords { held, node, .. } => html! {
            "node " code { (node.did().to_string()) }
            @if *held { " holds records of a patient" } @else { " withdrawn from a patient's locator" }
        },
        Payload::Mint { to, amount } => {
            html! { "mints " (amount) " to " code { (to.to_string()) } }
        }
        Payload::Transfer { to, amount } => {
            html! { "transfers " (amount) " to " code { (to.to_string()) } }
        }
        Payload::Burn { amount } => html! { "burns " (amount) },
        Payload::SetAllowance {
            spender,
            amount,
            expires_at,
        } => html! {
            "allows " code { (spender.to_string()) } " " (amount) " until height " (expires_at)
        },
        Payload::TransferFrom { owner, to, amount } => html! {
            "moves " (amount) " of " code { (owner.did().to_string()) } " to " code { (to.to_string()) }
        },
        Payload::DeployCode { code } => html! {
            "deploys code " code { (short(&carechain_crypto::sha256(code).to_hex())) "…" }
            " (" (code.len()) " bytes)"
        },
        Payload::Instantiate { code, label, .. } => html! {
            "instantiates " code { (short(&code.to_hex())) "…" } " as " (label)
        },
        Payload::Execute { contract, .. } => html! {
            "calls contract " code { (short(&contract.to_hex())) "…" }
        },
        Payload::AssignCompanyPrefix {
            prefix,
            organization,
        } => html! {
            "company prefix " code { (prefix) } " to "
            @match organization { Some(o) => code { (short(&o.did().to_string())) "…" }, None => "nobody" }
        },
        Payload::Supply { events, .. } => html! {
            (events.len()) " supply event(s) anchored"
        },
    }
}

async fn block_page(
    State(st): State<Portal>,
    v: Option<Viewer>,
    Path(height): Path<u64>,
) -> Result<Response, PageError> {
    let snap = st
        .node
        .snapshot()
        .map_err(|_| PageError::new(500, "Something went wrong", "storage error"))?;
    let (Ok(Some(b)), Ok(Some(receipts))) = (snap.block(height), snap.receipts(height)) else {
        return Err(PageError::new(
            404,
            "Block not found",
            "no block at this height",
        ));
    };
    let h = &b.header;
    let body = html! {
        p { a href="/explorer" { "All blocks" } }
        dl.facts {
            dt { "Hash" } dd { code { (h.hash().to_hex()) } }
            dt { "Proposer" } dd { code { (h.proposer.did().to_string()) } }
            dt { "Time (UTC)" } dd { (carechain_records::format_instant(h.timestamp_ms)) }
            dt { "State root" } dd { code { (h.state_root.to_hex()) } }
            dt { "Log" } dd { "size " (h.log_size) " root " code { (h.log_root.to_hex()) } }
        }
        div.tablewrap {
            table {
                thead { tr { th scope="col" { "Tx" } th scope="col" { "Type" } th scope="col" { "What (public tags only)" } th scope="col" { "Outcome" } th scope="col" { "Signer" } } }
                tbody {
                    @for (tx, r) in b.txs.iter().zip(&receipts).take(500) {
                        tr {
                            td { code { (short(&tx.hash().to_hex())) } }
                            td { (tx.body.payload.type_name()) }
                            td { (details(&tx.body.payload)) }
                            td {
                                @match &r.outcome {
                                    Outcome::Applied { log_index } => { span.ok { "applied" } " (leaf " (log_index) ")" }
                                    Outcome::Rejected(reason) => { span.bad { "rejected" } ": " (reason.code()) }
                                }
                            }
                            td { code { (tx.body.signer.did().to_string()) } }
                        }
                    }
                }
            }
        }
        @if b.txs.len() > 500 { p.muted { "The first 500 of " (b.txs.len()) " transactions are shown." } }
    };
    Ok(page(&format!("Block {height}"), v.as_ref(), body))
}
