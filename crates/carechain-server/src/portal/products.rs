//! A product's journey in the explorer: what the ledger holds of a serialized pack (public
//! trade data: commissioner, lot, expiry, custody history, where it is, its containers,
//! suspicions, a recall of its lot), as a timeline, each step linked to its block. The EPCIS
//! events themselves stay with the organizations that captured them (`/epcis`).

use axum::{
    Router,
    extract::{Query, State},
    response::Response,
    routing::get,
};
use carechain_types::ItemStatus;
use maud::{Markup, html};
use serde::Deserialize;

use super::patient::{name_of, short_did};
use super::{PageError, Portal, Viewer, blocking, page};

pub(crate) fn routes() -> Router<Portal> {
    Router::new().route("/explorer/products", get(product))
}

#[derive(Deserialize)]
struct Pack {
    pack: Option<String>,
}

fn step_label(step: &str) -> &'static str {
    match step {
        "commission" => "Commissioned",
        "pack" => "Packed",
        "unpack" => "Unpacked",
        "ship" => "Shipped",
        "receive" => "Received",
        "dispense" => "Dispensed",
        "decommission" => "Decommissioned",
        _ => "Event",
    }
}

fn form(value: &str) -> Markup {
    html! {
        form method="get" action="/explorer/products" {
            label for="pack" { "A pack's GS1 Digital Link or EPC URN" }
            input id="pack" name="pack" type="text" size="70" value=(value) placeholder="https://id.gs1.org/01/09506000134352/21/S1";
            " " button type="submit" { "Show its journey" }
        }
    }
}

async fn product(
    State(st): State<Portal>,
    v: Option<Viewer>,
    Query(q): Query<Pack>,
) -> Result<Response, PageError> {
    let Some(uri) = q.pack.filter(|p| !p.trim().is_empty()) else {
        let body = html! {
            p.lead { "Follow a serialized medicine pack from its commissioning by its manufacturer through every change of custody, as the ledger records it." }
            (form(""))
        };
        return Ok(page("Product journey", v.as_ref(), body));
    };
    let Some(canonical) = carechain_epcis::normalise(uri.trim()) else {
        let body = html! {
            div.notice.bad role="alert" { (uri) " is not a valid GS1 Digital Link or EPC URN (check its digits)." }
            (form(&uri))
        };
        return Ok(page("Product journey", v.as_ref(), body));
    };
    let id = carechain_supply::custody::item_id(&canonical);
    let (node, svc, session) = (
        st.node.clone(),
        st.service.clone(),
        v.as_ref().map(|v| v.session.clone()),
    );
    let (item, root, recall, names, steps) = blocking(move || {
        let snap = node
            .snapshot()
            .map_err(|e| carechain_service::ServiceError::internal("storage", e))?;
        let state = |e| carechain_service::ServiceError::internal("state", e);
        let item = carechain_state::supply_item(&snap, &id).map_err(state)?;
        let root = carechain_state::supply_root(&snap, &id).map_err(state)?;
        let recall = match &item {
            Some(i) => match i.gtin {
                Some(g) => carechain_state::supply_recall(&snap, g, &i.lot).map_err(state)?,
                None => None,
            },
            None => None,
        };
        let names = session
            .map(|s| super::directory(&svc, &s))
            .unwrap_or_default();
        let steps = match &item {
            Some(i) => carechain_supply::journey::timeline(&snap, &i.history, 0).map_err(state)?,
            None => vec![],
        };
        Ok((item, root, recall, names, steps))
    })
    .await?;
    let name = |did: String| {
        if names.is_empty() {
            short_did(&did)
        } else {
            name_of(&names, &did)
        }
    };
    let body = match (item, root) {
        (Some(it), Some((_, top))) => {
            let state = match top.status {
                ItemStatus::Active => format!("with {}", name(top.custodian.did().to_string())),
                ItemStatus::InTransit { to } => format!(
                    "in transit from {}{}",
                    name(top.custodian.did().to_string()),
                    to.map(|t| format!(" to {}", name(t.did().to_string())))
                        .unwrap_or_default()
                ),
                ItemStatus::Dispensed { height } => {
                    format!("dispensed to a patient at block {height}")
                }
                ItemStatus::Decommissioned { height } => {
                    format!("decommissioned at block {height}")
                }
            };
            html! {
                (form(&canonical))
                h2 { code { (canonical) } }
                dl.facts {
                    dt { "Manufacturer" } dd { (name(it.commissioner.did().to_string())) }
                    @if let Some(g) = it.gtin { dt { "GTIN" } dd { code { (format!("{g:014}")) } } }
                    dt { "Lot" } dd { (it.lot) }
                    @if let Some(e) = it.expiry { dt { "Expiry" } dd { (format!("{}-{:02}-{:02}", e / 10_000, e / 100 % 100, e % 100)) } }
                    dt { "Now" } dd data-state=(top.status.as_str()) { (state) }
                }
                @if let Some(r) = &recall {
                    div.notice.bad role="alert" data-recalled="true" { strong { "Recalled: " } "this lot was recalled by " (name(r.by.did().to_string())) " at block " a href=(format!("/explorer/blocks/{}", r.height)) { (r.height) } "." }
                }
                @for s in &it.suspicions {
                    div.notice.glass role="alert" data-suspect=(s.reason.as_str()) {
                        strong { "Suspect (" (s.reason.as_str()) "): " } "reported by " (name(s.reporter.did().to_string())) " at block " a href=(format!("/explorer/blocks/{}", s.height)) { (s.height) } "."
                    }
                }
                h2 { "Journey" }
                ol.timeline {
                    @for s in &steps {
                        @let c = &s.custody;
                        li data-step=(c.step) data-via=(if s.via.is_some() { "container" } else { "pack" }) {
                            span.when { (carechain_supply::capture::iso(c.time_ms).get(..16).unwrap_or("").replace('T', " ")) " UTC" }
                            " " strong { (step_label(&c.step)) } @if s.via.is_some() { " (in its case)" } " by " (name(c.organization.did().to_string()))
                            " · block " a href=(format!("/explorer/blocks/{}", c.height)) { (c.height) }
                            " · event " code title=(c.event.to_hex()) { (c.event.to_hex().get(..12).unwrap_or("")) "…" }
                        }
                    }
                }
                @if it.parent.is_some() { p.muted { "This pack travels in a container: its custody is the container's." } }
            }
        }
        _ => html! {
            (form(&canonical))
            div.notice.bad role="alert" { "No pack " code { (canonical) } " was ever commissioned on this network." }
        },
    };
    Ok(page("Product journey", v.as_ref(), body))
}
