//! Parsing a search: parameters, modifiers, `_sort`, `_include`, chains and `_has` (both
//! resolved by consent-filtered searches of their own).

#[allow(clippy::wildcard_imports)]
use super::*;

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
    pub(super) fn parse_query<'a>(
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
    pub(super) fn parse_chain(
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
    pub(super) fn parse_has(
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
}
