//! FHIR search over the record store: the official parameters, chaining, reverse chaining
//! (`_has`), `_sort`, `_include`/`_revinclude`, paging, conditional create and type-level
//! history — every result, chained target, reverse-chain source and included resource
//! filtered by the patient's consent.

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

/// The words of a text (lower case, split at anything not alphanumeric).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Whether some alternative has each of its words as the start of a word of `haystack`
/// (`gluc` finds "Glucose").
fn words_match(haystack: &str, alternatives: &[Vec<String>]) -> bool {
    let have: Vec<String> = words(haystack).collect();
    alternatives.iter().any(|want| {
        want.iter()
            .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
    })
}

/// A resource's narrative as text: the XHTML's tags dropped, the common entities decoded.
fn narrative_text(r: &Value) -> String {
    let div = r["text"]["div"].as_str().unwrap_or("");
    let mut out = String::with_capacity(div.len());
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Every string value of a resource (narrative included), space-separated.
fn strings_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_of(x, out)),
        _ => {}
    }
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

fn parse_include(v: &str, what: &str) -> Result<Include, ServiceError> {
    let mut it = v.split(':');
    let (Some(source), Some(code)) = (it.next(), it.next()) else {
        return Err(bad(format!("{what} must be Type:param[:Target]")));
    };
    let target = it.next().map(str::to_string);
    if it.next().is_some() {
        return Err(bad(format!("{what} must be Type:param[:Target]")));
    }
    if code == "*" {
        return Err(unsupported(format!(
            "{what}=…:* is not supported; name the parameter"
        )));
    }
    let param = search_param(source, code)
        .filter(|p| p.kind == "reference")
        .ok_or_else(|| {
            bad(format!(
                "{source}:{code} is not a reference search parameter"
            ))
        })?;
    Ok(Include {
        source: source.to_string(),
        param,
        target,
        iterate: false,
    })
}

impl Service {
    /// Whether the caller may see a record (found by a search, or included or chained by
    /// one): `Some(break_glass)` if so. Deleted and erased records are never found.
    fn visible(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        meta: &VersionMeta,
    ) -> Option<bool> {
        if meta.deleted || meta.erased {
            return None;
        }
        let c = self.caller(s, purpose);
        let action = if s.allows(rt, 's') {
            Action::Search
        } else {
            Action::Read
        };
        let d = self.decide(&c, action, Some(&Record::of(rt, meta)), None);
        d.permitted().then(|| d.break_glass())
    }

    /// Records, in each patient's own access log, that a search returned some of her
    /// records: one audit event per patient other than `compartment` (the search's own event
    /// covers that one), marked break-glass if any of them was visible only by breaking the
    /// glass. Without it, a patient would not see that someone found her by a search across
    /// patients.
    pub(crate) fn audit_disclosed<'r>(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        compartment: Option<&str>,
        returned: impl Iterator<Item = (&'r str, &'r str)>,
    ) {
        let mut touched = Touched::new();
        for (t, id) in returned {
            let Ok(meta) = self.records.meta(t, id, None) else {
                continue;
            };
            let bg = self.visible(s, purpose, t, &meta).unwrap_or(false);
            for p in meta
                .patients
                .iter()
                .filter(|p| Some(p.as_str()) != compartment)
            {
                let e = touched.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 |= bg;
            }
        }
        let c = self.caller(s, purpose);
        self.audit_touched(&c, Interaction::SearchType, rt, &touched, |n| {
            format!("search-type: {n} of this patient's records returned")
        });
    }

    /// Reads a record the caller may see, for inclusion in a result.
    fn read_visible(
        &self,
        s: &Session,
        purpose: &Purpose,
        reference: &str,
        glass: &mut bool,
    ) -> Option<Value> {
        let (rt, id) = reference.split_once('/')?;
        if !(s.allows(rt, 'r') || s.allows(rt, 's')) {
            return None;
        }
        let meta = self.records.meta(rt, id, None).ok()?;
        let bg = self.visible(s, purpose, rt, &meta)?;
        let r = self.records.read_version(rt, id, &meta).ok()?;
        *glass |= bg;
        Some(r)
    }

    fn parse_query<'a>(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        params: &'a [(String, String)],
        depth: usize,
        withheld: &mut usize,
    ) -> Result<Query<'a>, ServiceError> {
        let mut q = Query {
            count: 50,
            offset: 0,
            ids: None,
            last_updated: Vec::new(),
            compartment: None,
            filters: Vec::new(),
            chains: Vec::new(),
            has: Vec::new(),
            sort: Vec::new(),
            include: Vec::new(),
            revinclude: Vec::new(),
            count_only: false,
            no_text: false,
            view: None,
            text: Vec::new(),
            content: Vec::new(),
            elements: None,
        };
        for (k, v) in params {
            let (head, modifier) = match k.split_once(':') {
                Some((c, m)) => (c, Some(m)),
                None => (k.as_str(), None),
            };
            // A chain: `subject:Patient.name` or `subject.name`.
            let chain = match (head.split_once('.'), modifier) {
                (Some((code, rest)), None) => Some((code, None, rest)),
                (None, Some(m)) => m.split_once('.').map(|(t, rest)| (head, Some(t), rest)),
                _ => None,
            };
            if let Some((code, target, rest)) = chain {
                self.parse_chain(
                    s, purpose, rt, code, target, rest, v, depth, withheld, &mut q,
                )?;
                continue;
            }
            let code = head;
            match code {
                "_count" => {
                    q.count = v
                        .parse()
                        .ok()
                        .filter(|c| (1..=1000).contains(c))
                        .ok_or_else(|| bad("_count must be 1..1000"))?
                }
                "_offset" => q.offset = v.parse().map_err(|_| bad("_offset must be a number"))?,
                "_id" => q.ids = Some(v.split(',').collect()),
                "_lastUpdated" => q.last_updated.push(v),
                "_format" | "_pretty" => {}
                "_sort" => {
                    for key in v.split(',').filter(|k| !k.is_empty()) {
                        let (desc, name) = match key.strip_prefix('-') {
                            Some(n) => (true, n),
                            None => (false, key),
                        };
                        let by = match name {
                            "_id" => SortBy::Id,
                            "_lastUpdated" => SortBy::LastUpdated,
                            n => SortBy::Param(search_param(rt, n).ok_or_else(|| {
                                bad(format!(
                                    "cannot sort by {n}: not a search parameter of {rt}"
                                ))
                            })?),
                        };
                        q.sort.push((by, desc));
                    }
                }
                "_include" | "_revinclude" => {
                    let iterate = match modifier {
                        None => false,
                        Some("iterate" | "recurse") => true,
                        Some(m) => {
                            return Err(unsupported(format!("{code}:{m} is not supported")));
                        }
                    };
                    let mut inc = parse_include(v, code)?;
                    inc.iterate = iterate;
                    if code == "_include" {
                        if !iterate && inc.source != rt {
                            return Err(bad(format!("_include must start with {rt}:")));
                        }
                        q.include.push(inc);
                    } else {
                        q.revinclude.push(inc);
                    }
                }
                "_summary" => match v.as_str() {
                    "count" => q.count_only = true,
                    "data" => q.no_text = true,
                    "true" => q.view = Some(SummaryView::Summary),
                    "text" => q.view = Some(SummaryView::Text),
                    "false" => {}
                    other => {
                        return Err(bad(format!(
                            "_summary={other} is not a summary mode (true, text, data, count, false)"
                        )));
                    }
                },
                "_elements" => {
                    q.elements = Some(
                        v.split(',')
                            .map(str::trim)
                            .filter(|e| !e.is_empty())
                            .collect(),
                    );
                }
                "_has" => {
                    let ids = self.parse_has(s, purpose, rt, modifier, v, depth, withheld)?;
                    q.has.push(ids);
                }
                "_text" | "_content" => {
                    if let Some(m) = modifier {
                        return Err(unsupported(format!("{code}:{m} is not supported")));
                    }
                    let alternatives: Vec<Vec<String>> = v
                        .split(',')
                        .map(|alt| words(alt).collect())
                        .filter(|words: &Vec<String>| !words.is_empty())
                        .collect();
                    if alternatives.is_empty() {
                        return Err(bad(format!("{code} needs words to look for")));
                    }
                    if code == "_text" {
                        q.text.push(alternatives);
                    } else {
                        q.content.push(alternatives);
                    }
                }
                "_contained" | "_containedType" | "_list" | "_query" | "_filter" => {
                    return Err(unsupported(format!("{code} is not supported")));
                }
                _ => {
                    if modifier.is_some_and(|m| !matches!(m, "exact" | "contains" | "missing")) {
                        return Err(unsupported(format!(
                            "modifier :{} is not supported",
                            modifier.unwrap_or_default()
                        )));
                    }
                    let p = search_param(rt, code)
                        .ok_or_else(|| bad(format!("unknown search parameter {code} for {rt}")))?;
                    if p.kind == "reference"
                        && matches!(code, "patient" | "subject")
                        && modifier.is_none()
                        && !v.contains(',')
                    {
                        let target = if v.contains('/') {
                            v.clone()
                        } else {
                            format!("Patient/{v}")
                        };
                        if target.starts_with("Patient/") && q.compartment.is_none() {
                            q.compartment = Some(target);
                        }
                    }
                    q.filters.push((p, modifier, v));
                }
            }
        }
        Ok(q)
    }

    /// Resolves a chained parameter by a search on the target type (itself consent-filtered):
    /// the resource then matches if its reference points at one of the target's hits.
    #[allow(clippy::too_many_arguments)]
    fn parse_chain(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        code: &str,
        target: Option<&str>,
        rest: &str,
        value: &str,
        depth: usize,
        withheld: &mut usize,
        q: &mut Query<'_>,
    ) -> Result<(), ServiceError> {
        if depth >= MAX_CHAIN {
            return Err(unsupported(format!(
                "chains deeper than {MAX_CHAIN} are not supported"
            )));
        }
        let p = search_param(rt, code)
            .ok_or_else(|| bad(format!("unknown search parameter {code} for {rt}")))?;
        if p.kind != "reference" {
            return Err(bad(format!(
                "{code} is not a reference parameter: it cannot be chained"
            )));
        }
        let target = match target.or_else(|| single_target(p)) {
            Some(t) => t.to_string(),
            None if code == "patient" => "Patient".to_string(),
            None => {
                return Err(bad(format!(
                    "{code} may point at several types: name one, e.g. {code}:Patient.{rest}"
                )));
            }
        };
        if !carechain_fhir::model().is_resource(&target) {
            return Err(bad(format!("{target} is not a resource type")));
        }
        self.scope_first(
            &self.caller(s, purpose),
            Interaction::SearchType,
            &target,
            None,
            's',
        )?;
        let sub = [(rest.to_string(), value.to_string())];
        let found = self.find(s, purpose, &target, &sub, depth + 1)?;
        *withheld += found.withheld;
        let refs = found
            .hits
            .iter()
            .filter_map(|r| r["id"].as_str().map(|id| format!("{target}/{id}")))
            .collect();
        q.chains.push((p, refs));
        Ok(())
    }

    /// Resolves a reverse chain, `_has:Observation:patient:code=X` on `rt` (which may nest:
    /// `_has:Observation:patient:_has:…`), by a search on the referring type — itself
    /// consent-filtered, so a record the caller may not see never makes a resource match.
    /// Returns the ids of `rt` that a matching resource refers to.
    #[allow(clippy::too_many_arguments)]
    fn parse_has(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        modifier: Option<&str>,
        value: &str,
        depth: usize,
        withheld: &mut usize,
    ) -> Result<BTreeSet<String>, ServiceError> {
        let form = "_has must be _has:Type:reference-param:search-param=value";
        let mut parts = modifier.unwrap_or_default().splitn(3, ':');
        let (Some(source), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(form));
        };
        if source.is_empty() || code.is_empty() || rest.is_empty() {
            return Err(bad(form));
        }
        if depth >= MAX_CHAIN {
            return Err(unsupported(format!(
                "chains deeper than {MAX_CHAIN} are not supported"
            )));
        }
        if !carechain_fhir::model().is_resource(source) {
            return Err(bad(format!("{source} is not a resource type")));
        }
        let p = search_param(source, code)
            .filter(|p| p.kind == "reference")
            .ok_or_else(|| {
                bad(format!(
                    "{source}:{code} is not a reference search parameter"
                ))
            })?;
        self.scope_first(
            &self.caller(s, purpose),
            Interaction::SearchType,
            source,
            None,
            's',
        )?;
        let sub = [(rest.to_string(), value.to_string())];
        let found = self.find(s, purpose, source, &sub, depth + 1)?;
        *withheld += found.withheld;
        let prefix = format!("{rt}/");
        Ok(found
            .hits
            .iter()
            .flat_map(|r| references(r, p, None))
            .filter_map(|x| x.strip_prefix(prefix.as_str()).map(str::to_string))
            .collect())
    }

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

    fn run(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        q: &Query<'_>,
        mut withheld: usize,
    ) -> Result<Found, ServiceError> {
        let candidates = match (&q.ids, &q.compartment) {
            (Some(ids), _) => ids.iter().map(|i| i.to_string()).collect(),
            (None, Some(c)) => self.records.patient_ids(c, rt)?,
            (None, None) => self.records.ids(rt)?,
        };
        let lu = SearchParam {
            kind: "date".into(),
            paths: vec![("meta.lastUpdated".into(), None)],
        };
        let mut hits = Vec::new();
        let mut glass = false;
        for id in candidates {
            let Ok(meta) = self.records.meta(rt, &id, None) else {
                continue;
            };
            if meta.deleted || meta.erased {
                continue;
            }
            let Some(bg) = self.visible(s, purpose, rt, &meta) else {
                withheld += 1;
                continue;
            };
            let Ok(r) = self.records.read_version(rt, &id, &meta) else {
                continue;
            };
            let mut ok = true;
            for v in &q.last_updated {
                ok &= matches(&r, &lu, None, v).map_err(bad)?;
            }
            for (p, m, v) in &q.filters {
                ok = ok && matches(&r, p, *m, v).map_err(bad)?;
            }
            for (p, refs) in &q.chains {
                ok = ok && references(&r, p, None).iter().any(|x| refs.contains(*x));
            }
            for ids in &q.has {
                ok = ok && ids.contains(&id);
            }
            if ok && !q.text.is_empty() {
                let narrative = narrative_text(&r);
                ok = q.text.iter().all(|alts| words_match(&narrative, alts));
            }
            if ok && !q.content.is_empty() {
                let mut all = String::new();
                strings_of(&r, &mut all);
                ok = q.content.iter().all(|alts| words_match(&all, alts));
            }
            if ok {
                glass |= bg;
                hits.push(r);
            }
        }
        if !q.sort.is_empty() {
            let keys: Vec<Vec<SortValue>> = hits
                .iter()
                .map(|r| {
                    q.sort
                        .iter()
                        .map(|(by, _)| match by {
                            SortBy::Id => SortValue::Text(r["id"].as_str().unwrap_or("").into()),
                            SortBy::LastUpdated => sort_value(r, &lu),
                            SortBy::Param(p) => sort_value(r, p),
                        })
                        .collect()
                })
                .collect();
            let mut order: Vec<usize> = (0..hits.len()).collect();
            order.sort_by(|&a, &b| {
                for (i, (_, desc)) in q.sort.iter().enumerate() {
                    let (x, y) = (&keys[a][i], &keys[b][i]);
                    let o = match (x, y) {
                        (SortValue::Missing, SortValue::Missing) => std::cmp::Ordering::Equal,
                        (SortValue::Missing, _) => std::cmp::Ordering::Greater,
                        (_, SortValue::Missing) => std::cmp::Ordering::Less,
                        _ => {
                            let o = x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal);
                            if *desc { o.reverse() } else { o }
                        }
                    };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            let mut slots: Vec<Option<Value>> = hits.into_iter().map(Some).collect();
            hits = order.into_iter().filter_map(|i| slots[i].take()).collect();
        }
        Ok(Found {
            hits,
            withheld,
            glass,
        })
    }

    /// The resources `_include` and `_revinclude` add to a page, each one consent-checked:
    /// first from the matches, then (`:iterate`) from what the previous round added, until a
    /// round adds nothing, [`MAX_ITERATE`] rounds or [`MAX_INCLUDED`] resources.
    fn included(
        &self,
        s: &Session,
        purpose: &Purpose,
        q: &Query<'_>,
        page: &[Value],
        glass: &mut bool,
    ) -> Result<Vec<Value>, ServiceError> {
        let mut seen: BTreeSet<String> = page.iter().filter_map(ref_of).collect();
        let mut out: Vec<Value> = Vec::new();
        let mut from = 0;
        for round in 0..=MAX_ITERATE {
            let start = out.len();
            // What this round starts from: the matches, then what the last round added.
            let frontier: &[Value] = if round == 0 { page } else { &out[from..] };
            let mut wanted = Vec::new();
            for inc in q.include.iter().filter(|i| round == 0 || i.iterate) {
                for r in frontier
                    .iter()
                    .filter(|r| r["resourceType"] == inc.source.as_str())
                {
                    for reference in references(r, inc.param, inc.target.as_deref()) {
                        if seen.insert(reference.to_string()) {
                            wanted.push(reference.to_string());
                        }
                    }
                }
            }
            let targets: BTreeSet<String> = frontier.iter().filter_map(ref_of).collect();
            for reference in &wanted {
                if out.len() >= MAX_INCLUDED {
                    break;
                }
                if let Some(x) = self.read_visible(s, purpose, reference, glass) {
                    out.push(x);
                }
            }
            for inc in q.revinclude.iter().filter(|i| round == 0 || i.iterate) {
                self.revinclude(s, purpose, inc, &targets, &mut seen, &mut out, glass)?;
            }
            if out.len() == start || out.len() >= MAX_INCLUDED {
                break;
            }
            from = start;
        }
        Ok(out)
    }

    /// Adds the visible resources of `inc.source` that refer to one of `targets`.
    #[allow(clippy::too_many_arguments)]
    fn revinclude(
        &self,
        s: &Session,
        purpose: &Purpose,
        inc: &Include,
        targets: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Value>,
        glass: &mut bool,
    ) -> Result<(), ServiceError> {
        if !(s.allows(&inc.source, 'r') || s.allows(&inc.source, 's')) {
            return Ok(());
        }
        // Every resource of the source type is a candidate: a reference need not follow
        // the patient compartment (a Provenance's target, a performer).
        for id in self.records.ids(&inc.source)? {
            if out.len() >= MAX_INCLUDED {
                break;
            }
            let key = format!("{}/{id}", inc.source);
            if seen.contains(&key) {
                continue;
            }
            let Ok(meta) = self.records.meta(&inc.source, &id, None) else {
                continue;
            };
            let Some(bg) = self.visible(s, purpose, &inc.source, &meta) else {
                continue;
            };
            let Ok(r) = self.records.read_version(&inc.source, &id, &meta) else {
                continue;
            };
            if references(&r, inc.param, inc.target.as_deref())
                .iter()
                .any(|x| targets.contains(*x))
            {
                seen.insert(key);
                *glass |= bg;
                out.push(r);
            }
        }
        Ok(())
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
        let entry = |r: Value, mode: &str| {
            let full = format!(
                "{base}/fhir/{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            json!({"fullUrl": full, "resource": r, "search": {"mode": mode}})
        };
        let mut entries: Vec<Value> = page.into_iter().map(|r| entry(r, "match")).collect();
        entries.extend(extra.into_iter().map(|r| entry(r, "include")));
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": entries,
        }))
    }
}

/// `YYYY-MM-DDThh:mm:ss[.sss]Z` or a date for `_since`, as ms since the epoch.
pub fn parse_since(v: &str) -> Option<u64> {
    let (start, _) = carechain_fhir::fhir_time_range(v)?;
    u64::try_from(start).ok().map(|s| s * 1000)
}

/// A matched resource as `_summary=data` or `_elements` asks: without its narrative, or with
/// only the listed top-level elements (plus `resourceType`, `id` and `meta`), marked
/// `SUBSETTED` so no client mistakes it for the whole resource.
fn subset(mut r: Value, q: &Query<'_>) -> Value {
    if !q.no_text && q.elements.is_none() && q.view.is_none() {
        return r;
    }
    let rt = r["resourceType"].as_str().unwrap_or_default().to_string();
    if let Some(obj) = r.as_object_mut() {
        if let Some(view) = q.view {
            let text = view == SummaryView::Text;
            let model = carechain_fhir::model();
            obj.retain(|k, _| {
                matches!(k.as_str(), "resourceType" | "id" | "meta")
                    || (text && k == "text")
                    || model.keeps_top_level(&rt, k, text)
            });
        }
        if q.no_text {
            obj.remove("text");
        }
        if let Some(keep) = &q.elements {
            obj.retain(|k, _| {
                matches!(k.as_str(), "resourceType" | "id" | "meta") || keep.contains(k.as_str())
            });
        }
    }
    let tag = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"});
    match r["meta"]["tag"].as_array_mut() {
        Some(tags) => tags.push(tag),
        None => r["meta"]["tag"] = json!([tag]),
    }
    r
}
