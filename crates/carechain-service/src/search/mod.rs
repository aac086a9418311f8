//! FHIR search over the record store: the official parameters, chaining, reverse chaining
//! (`_has`), `_sort`, `_include`/`_revinclude`, paging, conditional create and type-level
//! history — every result, chained target, reverse-chain source and included resource
//! filtered by the patient's consent.

mod include;
mod query;
mod run;
mod text;
mod view;

use text::{narrative_text, strings_of, words, words_match};
use view::subset;

use std::collections::BTreeSet;

use carechain_fhir::search::{
    SearchParam, SortValue, matches, references, search_param, single_target, sort_value,
};
use carechain_records::VersionMeta;
use serde_json::{Value, json};

use crate::{
    ErrorKind, Interaction, Purpose, Service, ServiceError, Session,
    access::{Action, Record},
    audit::AuditEntry,
    read::Touched,
};

/// How deep a chain (`subject:Patient.organization.name`) may go.
const MAX_CHAIN: usize = 3;
/// Resources one search may add by `_include`/`_revinclude`.
const MAX_INCLUDED: usize = 1000;

/// `a=1&b=x%7Cy` → `[("a", "1"), ("b", "x|y")]`.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::bad(m)
}

fn unsupported(m: impl Into<String>) -> ServiceError {
    ServiceError::unsupported(m)
}

enum SortBy {
    Id,
    LastUpdated,
    Param(&'static SearchParam),
}

/// `_include=Observation:subject[:Patient]` or `_revinclude=Provenance:target[:Patient]`.
struct Include {
    source: String,
    param: &'static SearchParam,
    target: Option<String>,
    /// `:iterate`: applied to included resources too, not only to matches.
    iterate: bool,
}

/// Rounds of `:iterate` inclusion after the first.
const MAX_ITERATE: usize = 4;

/// `Type/id` of a resource.
fn ref_of(r: &Value) -> Option<String> {
    Some(format!(
        "{}/{}",
        r["resourceType"].as_str()?,
        r["id"].as_str()?
    ))
}

/// A parsed search.
struct Query<'a> {
    count: usize,
    offset: usize,
    ids: Option<Vec<&'a str>>,
    last_updated: Vec<&'a str>,
    compartment: Option<String>,
    filters: Vec<(&'static SearchParam, Option<&'a str>, &'a str)>,
    /// Chained parameters, each already resolved to the references that may match.
    chains: Vec<(&'static SearchParam, BTreeSet<String>)>,
    /// Reverse chains (`_has`), each already resolved to the ids that may match.
    has: Vec<BTreeSet<String>>,
    sort: Vec<(SortBy, bool)>,
    include: Vec<Include>,
    revinclude: Vec<Include>,
    /// `_summary=count`: the total only.
    count_only: bool,
    /// `_summary=data`: without the narrative.
    no_text: bool,
    /// `_summary=true`: the summary elements only; `_summary=text`: the narrative and the
    /// required elements only (both at the top level: nested elements are kept whole).
    view: Option<SummaryView>,
    /// `_text` (narrative) and `_content` (every string of the resource) conditions: each
    /// parameter a list of alternatives (comma = or), each alternative words that must all
    /// start a word of the text (case-insensitive).
    text: Vec<Vec<Vec<String>>>,
    content: Vec<Vec<Vec<String>>>,
    /// `_elements`: the top-level elements to return.
    elements: Option<BTreeSet<&'a str>>,
}

/// The subsets `_summary` names beside `count` and `data`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SummaryView {
    /// `_summary=true`.
    Summary,
    /// `_summary=text`.
    Text,
}

/// The matches of a search, before paging.
pub(crate) struct Found {
    pub(crate) hits: Vec<Value>,
    pub(crate) withheld: usize,
    pub(crate) glass: bool,
}

impl Service {
    /// Every visible resource of `rt` matching `params` (sorted if asked; not paged).
    pub(crate) fn find(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        params: &[(String, String)],
        depth: usize,
    ) -> Result<Found, ServiceError> {
        let mut withheld = 0;
        let q = self.parse_query(s, purpose, rt, params, depth, &mut withheld)?;
        self.run(s, purpose, rt, &q, withheld)
    }

    /// Searches one resource type with the standard search parameters of the official
    /// definitions, chaining, `_sort`, `_include` and `_revinclude`. Results are filtered by
    /// consent (records the caller may not see are left out and counted in the audit event),
    /// then paged.
    pub fn search(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        params: &[(String, String)],
        base: &str,
    ) -> Result<Value, ServiceError> {
        if !carechain_fhir::model().is_resource(rt) {
            return Err(ServiceError::new(
                ErrorKind::UnknownType,
                format!("unknown resource type {rt}"),
            ));
        }
        let c = self.caller(s, purpose);
        self.scope_first(&c, Interaction::SearchType, rt, None, 's')?;
        if rt == "AuditEvent" {
            // Every access up to this request is in the log, as the access log shows it.
            self.flush_audit();
        }
        let mut withheld = 0;
        let q = self.parse_query(s, purpose, rt, params, 0, &mut withheld)?;
        // Break-glass only for a search within one patient's compartment.
        if let Some(p) = &q.compartment {
            self.open_break_glass(&c, std::slice::from_ref(p))?;
        }
        let found = self.run(s, purpose, rt, &q, withheld)?;
        let mut glass = found.glass;
        let total = found.hits.len();
        let page: Vec<Value> = if q.count_only {
            Vec::new()
        } else {
            found
                .hits
                .into_iter()
                .skip(q.offset)
                .take(q.count)
                .collect()
        };
        let extra = self.included(s, purpose, &q, &page, &mut glass)?;
        self.audit_disclosed(
            s,
            purpose,
            rt,
            q.compartment.as_deref(),
            page.iter()
                .chain(&extra)
                .filter_map(|r| Some((r["resourceType"].as_str()?, r["id"].as_str()?))),
        );
        let page: Vec<Value> = page.into_iter().map(|r| subset(r, &q)).collect();
        let note = format!(
            "search: {total} results, {} included, {} withheld",
            extra.len(),
            found.withheld
        );
        let compartment: Vec<String> = q.compartment.iter().cloned().collect();
        let note = self.access_note(&c, glass, &compartment, &note);
        self.audit(
            s,
            purpose,
            AuditEntry::allowed(Interaction::SearchType, rt, q.compartment.as_deref(), &note),
        );
        let link = |offset: usize| {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in params.iter().filter(|(k, _)| k != "_offset") {
                ser.append_pair(k, v);
            }
            ser.append_pair("_offset", &offset.to_string());
            format!("{base}/fhir/{rt}?{}", ser.finish())
        };
        let mut links = vec![json!({"relation": "self", "url": link(q.offset)})];
        if q.offset + q.count < total && !q.count_only {
            links.push(json!({"relation": "next", "url": link(q.offset + q.count)}));
        }
        if q.offset > 0 {
            links.push(
                json!({"relation": "previous", "url": link(q.offset.saturating_sub(q.count))}),
            );
        }
        let mut entries: Vec<Value> = page
            .into_iter()
            .map(|mut r| {
                self.consent_view(&mut r);
                searchset_entry(base, r, "match")
            })
            .collect();
        entries.extend(
            extra
                .into_iter()
                .map(|r| searchset_entry(base, r, "include")),
        );
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": entries,
        }))
    }
}

/// A searchset entry: the resource with its `fullUrl` at the node whose base URL is `base`.
pub(crate) fn searchset_entry(base: &str, r: Value, mode: &str) -> Value {
    let full = format!(
        "{}/fhir/{}/{}",
        base.trim_end_matches('/'),
        r["resourceType"].as_str().unwrap_or_default(),
        r["id"].as_str().unwrap_or_default()
    );
    json!({"fullUrl": full, "resource": r, "search": {"mode": mode}})
}

/// `YYYY-MM-DDThh:mm:ss[.sss]Z` or a date for `_since`, as ms since the epoch.
pub fn parse_since(v: &str) -> Option<u64> {
    let (start, _) = carechain_fhir::fhir_time_range(v)?;
    u64::try_from(start).ok().map(|s| s * 1000)
}
