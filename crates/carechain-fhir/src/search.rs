//! FHIR search parameters from the official definitions (`search.table`, generated) and the
//! matching of one resource against one parameter: token, string, date (with `eq ne gt lt ge
//! le sa eb` prefixes), reference, uri, number and quantity (with prefixes).

use std::{collections::HashMap, sync::OnceLock};

use serde_json::Value;

use crate::time::fhir_time_range;

const TABLE: &str = include_str!("search.table");

/// One search parameter of one resource type.
#[derive(Debug)]
pub struct SearchParam {
    /// `token`, `string`, `date`, `reference`, `uri`, `number` or `quantity`.
    pub kind: String,
    /// Element paths (relative to the resource) with an optional target type for references.
    pub paths: Vec<(String, Option<String>)>,
}

fn table() -> &'static HashMap<(String, String), SearchParam> {
    static T: OnceLock<HashMap<(String, String), SearchParam>> = OnceLock::new();
    T.get_or_init(|| {
        let mut m = HashMap::new();
        for line in TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut it = line.split(' ');
            let (Some(rt), Some(code), Some(kind), Some(paths)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            let paths = paths
                .split('|')
                .map(|p| match p.split_once('@') {
                    Some((p, t)) => (p.to_string(), Some(t.to_string())),
                    None => (p.to_string(), None),
                })
                .collect();
            m.insert(
                (rt.to_string(), code.to_string()),
                SearchParam {
                    kind: kind.to_string(),
                    paths,
                },
            );
        }
        m
    })
}

/// The definition of search parameter `code` on `resource_type`.
pub fn search_param(resource_type: &str, code: &str) -> Option<&'static SearchParam> {
    table().get(&(resource_type.to_string(), code.to_string()))
}

/// The search parameters of a resource type, `(code, kind)`, sorted.
pub fn params_for(resource_type: &str) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&'static str, &'static str)> = table()
        .iter()
        .filter(|((rt, _), _)| rt == resource_type)
        .map(|((_, c), p)| (c.as_str(), p.kind.as_str()))
        .collect();
    v.sort();
    v
}

/// The values at a relative path (arrays flattened; a choice element `effective` matches
/// `effectiveDateTime`, `effectivePeriod`, ...).
pub fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![v];
    for seg in path.split('.') {
        let mut next = Vec::new();
        for c in cur {
            let Some(o) = c.as_object() else { continue };
            let mut hit: Vec<&Value> = o.get(seg).into_iter().collect();
            if hit.is_empty() {
                hit = o
                    .iter()
                    .filter(|(k, _)| {
                        k.len() > seg.len()
                            && k.starts_with(seg)
                            && k[seg.len()..].starts_with(|c: char| c.is_ascii_uppercase())
                    })
                    .map(|(_, v)| v)
                    .collect();
            }
            for h in hit {
                match h {
                    Value::Array(a) => next.extend(a.iter()),
                    other => next.push(other),
                }
            }
        }
        cur = next;
    }
    cur
}

fn token_match(v: &Value, system: Option<&str>, code: Option<&str>) -> bool {
    let ok = |s: Option<&str>, c: Option<&str>| {
        system.is_none_or(|x| s == Some(x) || (x.is_empty() && s.is_none()))
            && code.is_none_or(|x| c == Some(x))
    };
    match v {
        Value::String(s) => system.is_none() && code == Some(s.as_str()),
        Value::Bool(b) => system.is_none() && code == Some(if *b { "true" } else { "false" }),
        Value::Object(o) => {
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                return codings
                    .iter()
                    .any(|c| ok(c["system"].as_str(), c["code"].as_str()));
            }
            if o.contains_key("code") {
                return ok(
                    o.get("system").and_then(Value::as_str),
                    o.get("code").and_then(Value::as_str),
                );
            }
            ok(
                o.get("system").and_then(Value::as_str),
                o.get("value").and_then(Value::as_str),
            )
        }
        _ => false,
    }
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Object(o) => [
            "family",
            "given",
            "text",
            "prefix",
            "suffix",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "display",
        ]
        .iter()
        .filter_map(|k| o.get(*k))
        .flat_map(|x| match x {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
            Value::String(s) => vec![s.as_str()],
            _ => vec![],
        })
        .collect(),
        _ => vec![],
    }
}

fn range_of(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::String(s) => fhir_time_range(s),
        Value::Object(o) => {
            let start = o
                .get("start")
                .and_then(Value::as_str)
                .and_then(fhir_time_range)
                .map_or(i64::MIN, |r| r.0);
            let end = o
                .get("end")
                .and_then(Value::as_str)
                .and_then(fhir_time_range)
                .map_or(i64::MAX, |r| r.1);
            (o.contains_key("start") || o.contains_key("end")).then_some((start, end))
        }
        _ => None,
    }
}

fn date_match(v: &Value, q: &str) -> Result<bool, String> {
    let (prefix, date) = match q.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb")) => (p, &q[2..]),
        _ => ("eq", q),
    };
    let (a, b) = fhir_time_range(date).ok_or_else(|| format!("{q:?} is not a FHIR date"))?;
    let Some((c, d)) = range_of(v) else {
        return Ok(false);
    };
    Ok(match prefix {
        "eq" => a <= c && d <= b,
        "ne" => !(a <= c && d <= b),
        "gt" => d > b,
        "lt" => c < a,
        "ge" => d >= a,
        "le" => c <= b,
        "sa" => c > b,
        _ => d < a, // eb
    })
}

/// A number against `[prefix]number` (`eq ne gt lt ge le ap`; `eq` and `ap` within the
/// precision the query gives, e.g. `100` means [99.5, 100.5), `ap` ±10%).
fn number_match(x: Option<f64>, q: &str) -> Result<bool, String> {
    let (prefix, n) = match q.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "ap" | "sa" | "eb")) => (p, &q[2..]),
        _ => ("eq", q),
    };
    let target: f64 = n.parse().map_err(|_| format!("{q:?} is not a number"))?;
    let Some(x) = x else { return Ok(false) };
    let decimals = n.split_once('.').map_or(0, |(_, d)| d.len());
    let half = 0.5 * 10f64.powi(-i32::try_from(decimals).unwrap_or(0));
    let in_range = x >= target - half && x < target + half;
    Ok(match prefix {
        "eq" => in_range,
        "ne" => !in_range,
        "gt" | "sa" => x > target,
        "lt" | "eb" => x < target,
        "ge" => x >= target,
        "le" => x <= target,
        _ => (x - target).abs() <= (target * 0.1).abs().max(half),
    })
}

/// Whether `resource` matches `param` with the query value `value` (comma = OR) and
/// `modifier` (`exact`, `contains`, `missing` for string; none otherwise).
pub fn matches(
    resource: &Value,
    param: &SearchParam,
    modifier: Option<&str>,
    value: &str,
) -> Result<bool, String> {
    let mut found: Vec<(&Value, Option<&String>)> = Vec::new();
    for (p, target) in &param.paths {
        found.extend(
            values_at(resource, p)
                .into_iter()
                .map(|v| (v, target.as_ref())),
        );
    }
    if modifier == Some("missing") {
        return Ok((value == "true") == found.is_empty());
    }
    for alt in value.split(',') {
        for (v, target) in &found {
            let hit = match param.kind.as_str() {
                "token" => {
                    let (system, code) = match alt.split_once('|') {
                        Some((s, c)) => (Some(s), (!c.is_empty()).then_some(c)),
                        None => (None, Some(alt)),
                    };
                    token_match(v, system, code)
                }
                "string" => {
                    let q = alt.to_lowercase();
                    strings(v).iter().any(|s| match modifier {
                        Some("exact") => *s == alt,
                        Some("contains") => s.to_lowercase().contains(&q),
                        _ => s.to_lowercase().starts_with(&q),
                    })
                }
                "date" => date_match(v, alt)?,
                "reference" => v["reference"].as_str().is_some_and(|r| {
                    target.is_none_or(|t| r.starts_with(&format!("{t}/")))
                        && (r == alt || (!alt.contains('/') && r.rsplit('/').next() == Some(alt)))
                }),
                "uri" => v.as_str() == Some(alt),
                "number" => number_match(v.as_f64(), alt)?,
                "quantity" => {
                    let mut parts = alt.splitn(3, '|');
                    let number = parts.next().unwrap_or_default();
                    let system = parts.next().filter(|x| !x.is_empty());
                    let unit = parts.next().filter(|x| !x.is_empty());
                    let unit_ok = unit.is_none_or(|u| {
                        v["code"].as_str() == Some(u) || v["unit"].as_str() == Some(u)
                    }) && system.is_none_or(|s| v["system"].as_str() == Some(s));
                    unit_ok && number_match(v["value"].as_f64(), number)?
                }
                _ => false,
            };
            if hit {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A value to order search results by (`_sort`): the first value of a parameter in a
/// resource. Values of one parameter have one kind, so mixed kinds only meet as `Missing`.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum SortValue {
    /// A date or date-time, as the start of its range in seconds (UTC).
    Time(i64),
    /// A number.
    Number(f64),
    /// A string, token code or reference, lower-cased.
    Text(String),
    /// The resource has no value for the parameter (sorted last in either direction).
    Missing,
}

/// The value of `param` in `resource` to sort by: the smallest of its values.
pub fn sort_value(resource: &Value, param: &SearchParam) -> SortValue {
    let mut best: Option<SortValue> = None;
    for (p, _) in &param.paths {
        for v in values_at(resource, p) {
            let sv = match param.kind.as_str() {
                "date" => range_of(v).map(|(a, _)| SortValue::Time(a)),
                "number" => v.as_f64().map(SortValue::Number),
                "quantity" => v["value"].as_f64().map(SortValue::Number),
                "string" => strings(v)
                    .first()
                    .map(|s| SortValue::Text(s.to_lowercase())),
                "token" => token_text(v).map(|s| SortValue::Text(s.to_lowercase())),
                "reference" => v["reference"]
                    .as_str()
                    .map(|s| SortValue::Text(s.to_string())),
                _ => v.as_str().map(|s| SortValue::Text(s.to_string())),
            };
            if let Some(sv) = sv
                && best.as_ref().is_none_or(|b| sv < *b)
            {
                best = Some(sv);
            }
        }
    }
    best.unwrap_or(SortValue::Missing)
}

fn token_text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o
            .get("coding")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("code"))
            .or_else(|| o.get("code"))
            .or_else(|| o.get("value"))
            .and_then(Value::as_str),
        _ => None,
    }
}

/// The references (`Type/id`, relative, literal) found at `param`'s paths in `resource`,
/// restricted to `target` type if given.
pub fn references<'a>(
    resource: &'a Value,
    param: &SearchParam,
    target: Option<&str>,
) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (p, path_target) in &param.paths {
        for v in values_at(resource, p) {
            let Some(r) = v["reference"].as_str() else {
                continue;
            };
            let Some((t, id)) = r.split_once('/') else {
                continue;
            };
            if id.contains('/') || r.contains(':') || r.starts_with('#') {
                continue;
            }
            if path_target.as_deref().is_some_and(|pt| pt != t) || target.is_some_and(|x| x != t) {
                continue;
            }
            out.push(r);
        }
    }
    out
}

/// The single target type of a reference parameter, when its definition names one (e.g.
/// `Observation.subject.where(resolve() is Patient)` for `patient`).
pub fn single_target(param: &SearchParam) -> Option<&str> {
    let mut t = param.paths.iter().map(|(_, t)| t.as_deref());
    let first = t.next()??;
    t.all(|x| x == Some(first)).then_some(first)
}
