//! The clinician console: find a patient I may see, read the chart under a chosen purpose of
//! use, see plainly when the patient's consent denies it, and break the glass in an
//! emergency with a required reason (allowed, marked, audited and shown to the patient).

use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use carechain_service::Purpose;
use carechain_types::Role;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{PURPOSES, PageError, Portal, SameOrigin, Viewer, blocking, chart, page, purpose};

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/clinician", get(find))
        .route("/clinician/emergency", post(emergency_find))
        .route("/clinician/patients/{id}", get(chart_page))
        .route("/clinician/patients/{id}/break-glass", post(break_glass))
}

#[derive(Deserialize, Default)]
struct FindQuery {
    name: Option<String>,
    purpose: Option<String>,
}

fn chosen(p: Option<&str>) -> &'static str {
    PURPOSES
        .iter()
        .find(|(c, _)| Some(*c) == p)
        .map(|(c, _)| *c)
        .unwrap_or("TREAT")
}

fn purpose_select(selected: &str) -> Markup {
    html! {
        label for="purpose" { "Purpose of use" }
        select id="purpose" name="purpose" {
            @for (code, name) in PURPOSES {
                option value=(code) selected[*code == selected] { (name) " (" (code) ")" }
            }
        }
    }
}

fn patients_table(found: &[Value], link: impl Fn(&str) -> Markup) -> Markup {
    html! {
        table.patients {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Born" } th scope="col" { "Sex" } th scope="col" { "Chart" } } }
            tbody {
                @for p in found {
                    @let id = p["id"].as_str().unwrap_or("");
                    tr {
                        td { (chart::human_name(p)) }
                        td { (p["birthDate"].as_str().unwrap_or("")) }
                        td { (p["gender"].as_str().unwrap_or("")) }
                        td { (link(id)) }
                    }
                }
            }
        }
    }
}

/// The break-glass reason a form gave (trimmed), or a refusal without one.
fn required_reason(reason: &str, v: &Viewer) -> Result<String, PageError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(
            PageError::new(400, "Reason required", "break-glass needs a reason").seen_by(v),
        );
    }
    Ok(r.to_string())
}

fn not_patient(v: &Viewer) -> Option<Response> {
    (v.session.role == Role::Patient).then(|| Redirect::to("/patient").into_response())
}

fn search_patients(
    svc: &carechain_service::Service,
    s: &carechain_service::Session,
    p: &Purpose,
    name: &str,
) -> Result<Vec<Value>, carechain_service::ServiceError> {
    let mut params = vec![("_count".to_string(), "100".to_string())];
    if !name.is_empty() {
        params.push(("name".to_string(), name.to_string()));
    }
    let b = svc.search(s, p, "Patient", &params, "")?;
    Ok(super::chart::resources(&b))
}

async fn find(
    State(st): State<Portal>,
    v: Viewer,
    Query(q): Query<FindQuery>,
) -> Result<Response, PageError> {
    if let Some(r) = not_patient(&v) {
        return Ok(r);
    }
    let code = chosen(q.purpose.as_deref());
    let name = q.name.clone().unwrap_or_default().trim().to_string();
    let (svc, s) = (st.service.clone(), v.session.clone());
    let n = name.clone();
    let found = blocking(move || search_patients(&svc, &s, &purpose(code, None), &n)).await?;
    let body = html! {
        section aria-labelledby="find-h" {
            h2 id="find-h" { "Find a patient" }
            p.muted { "Only patients whose consent lets you (or your organization) see them are listed." }
            form.find method="get" action="/clinician" {
                div.field {
                    label for="name" { "Name" }
                    input id="name" name="name" type="search" value=(name) autocomplete="off";
                }
                div.field { (purpose_select(code)) }
                button type="submit" { "Search" }
            }
            @if found.is_empty() {
                p role="status" { "No patient you may see" @if !name.is_empty() { " matches “" (name) "”" } "." }
            } @else {
                (patients_table(&found, |id| html! {
                    a href=(format!("/clinician/patients/{id}?purpose={code}")) { "Open chart" }
                }))
            }
        }
        section.emergency aria-labelledby="em-h" {
            h2 id="em-h" { "Emergency access (break-glass)" }
            p { "In an emergency you may read a chart without consent. The access is logged, marked, and shown to the patient as an alert." }
            form method="post" action="/clinician/emergency" {
                div.field {
                    label for="em-name" { "Patient name" }
                    input id="em-name" name="name" type="search" required autocomplete="off";
                }
                div.field {
                    label for="em-reason" { "Reason (required)" }
                    textarea id="em-reason" name="reason" required rows="2" {}
                }
                button.danger type="submit" { "Find with break-glass" }
            }
        }
    };
    Ok(page("Patients", Some(&v), body))
}

#[derive(Deserialize)]
struct EmergencyForm {
    name: String,
    reason: String,
}

fn break_glass_form(id: &str, reason: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/clinician/patients/{id}/break-glass")) {
            input type="hidden" name="reason" value=(reason);
            button.danger type="submit" { "Open with break-glass" }
        }
    }
}

async fn emergency_find(
    State(st): State<Portal>,
    _: SameOrigin,
    v: Viewer,
    Form(f): Form<EmergencyForm>,
) -> Result<Response, PageError> {
    if let Some(r) = not_patient(&v) {
        return Ok(r);
    }
    let reason = required_reason(&f.reason, &v)?;
    let (svc, s) = (st.service.clone(), v.session.clone());
    let (n, r) = (f.name.trim().to_string(), reason.clone());
    let found = blocking(move || search_patients(&svc, &s, &purpose("ETREAT", Some(r)), &n))
        .await
        .map_err(|e| e.seen_by(&v))?;
    let body = html! {
        p.notice.glass role="status" { "Break-glass search: logged and shown to each patient found." }
        @if found.is_empty() {
            p { "No patient matches." }
        } @else {
            (patients_table(&found, |id| break_glass_form(id, &reason)))
        }
        p { a href="/clinician" { "Back" } }
    };
    Ok(page("Emergency access", Some(&v), body))
}

#[derive(Deserialize)]
struct ChartQuery {
    purpose: Option<String>,
}

async fn chart_page(
    State(st): State<Portal>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<ChartQuery>,
) -> Result<Response, PageError> {
    if let Some(r) = not_patient(&v) {
        return Ok(r);
    }
    let code = chosen(q.purpose.as_deref());
    show_chart(st, v, id, purpose(code, None)).await
}

#[derive(Deserialize)]
struct GlassForm {
    reason: String,
}

async fn break_glass(
    State(st): State<Portal>,
    _: SameOrigin,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<GlassForm>,
) -> Result<Response, PageError> {
    if let Some(r) = not_patient(&v) {
        return Ok(r);
    }
    let reason = required_reason(&f.reason, &v)?;
    show_chart(st, v, id, purpose("ETREAT", Some(reason))).await
}

async fn show_chart(st: Portal, v: Viewer, id: String, p: Purpose) -> Result<Response, PageError> {
    let (svc, s, pid, p2) = (st.service.clone(), v.session.clone(), id.clone(), p.clone());
    let c = blocking(move || Ok(chart::load(&svc, &s, &p2, &pid)))
        .await
        .map_err(|e| e.seen_by(&v))?;
    let glass = p.code == "ETREAT";
    let (title, denied) = match &c.patient {
        Ok(p) => (chart::human_name(p), None),
        Err(e)
            if matches!(
                e.kind,
                carechain_service::ErrorKind::Forbidden
                    | carechain_service::ErrorKind::Unauthenticated
            ) =>
        {
            (format!("Patient/{id}"), Some(e.message.clone()))
        }
        Err(e) if c.records.is_empty() => {
            return Err(PageError::new(
                e.kind.http_status(),
                "Chart unavailable",
                e.message.clone(),
            ));
        }
        Err(_) => (format!("Patient/{id}"), None),
    };
    let body = html! {
        @if glass {
            p.notice.glass role="alert" { strong { "Break-glass access." } " Reason: " (p.break_glass_reason.clone().unwrap_or_default()) ". This access is logged and the patient is alerted." }
        }
        @if let Some(msg) = &denied {
            div.notice.bad role="alert" {
                p { strong { "Access denied." } " The patient's consent does not allow you to see this chart for purpose " (p.code) " (" (msg) "). The attempt is recorded in the patient's access log." }
            }
            @if c.records.is_empty() && !glass {
                section.emergency aria-labelledby="bg-h" {
                    h2 id="bg-h" { "Emergency access (break-glass)" }
                    form method="post" action=(format!("/clinician/patients/{id}/break-glass")) {
                        div.field {
                            label for="bg-reason" { "Reason (required)" }
                            textarea id="bg-reason" name="reason" required rows="2" {}
                        }
                        button.danger type="submit" { "Break the glass and open the chart" }
                    }
                }
            }
        }
        @if let Ok(pt) = &c.patient {
            p.demo-line { "Born " (pt["birthDate"].as_str().unwrap_or("?")) " · " (pt["gender"].as_str().unwrap_or("")) " · read for purpose " strong { (p.code) } }
        }
        @if denied.is_none() || !c.records.is_empty() {
            @if !glass {
                form.find method="get" action=(format!("/clinician/patients/{id}")) {
                    div.field { (purpose_select(&p.code)) }
                    button type="submit" { "Read again" }
                }
            }
            (chart::render(&c.records, false))
        }
        p { a href="/clinician" { "Back to patients" } }
    };
    let mut r = page(&title, Some(&v), body);
    if denied.is_some() && c.records.is_empty() {
        *r.status_mut() = StatusCode::FORBIDDEN;
    }
    Ok(r)
}
