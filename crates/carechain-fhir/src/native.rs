//! FHIR invariants checked in the structure walk rather than with FHIRPath: those that apply
//! to every element (ele-1, ext-1), those the FHIRPath engine makes too costly (dom-3, que-2),
//! and rules the core definitions state in prose (Attachment size and hash, Coding.system).

use serde_json::{Map, Value};

use crate::validate::{At, Ctx};

/// dom-3 (natively: the engine's `descendants()` made it cost milliseconds per resource): a
/// contained resource is referred to from elsewhere in the resource (`#id`, as a reference,
/// canonical or uri), or itself refers to its container (`#`).
pub(crate) fn contained_referenced(
    cx: &mut Ctx<'_, '_>,
    resource: &Value,
    contained: &[Value],
    at: &At<'_>,
) {
    fn strings<'a>(v: &'a Value, out: &mut std::collections::BTreeSet<&'a str>) {
        match v {
            Value::String(s) if s.starts_with('#') => {
                out.insert(s);
            }
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut refs = std::collections::BTreeSet::new();
    strings(resource, &mut refs);
    for (i, c) in contained.iter().enumerate() {
        let Some(id) = c["id"].as_str() else { continue };
        let mut own = std::collections::BTreeSet::new();
        strings(c, &mut own);
        if !refs.contains(format!("#{id}").as_str()) && !own.contains("#") {
            cx.issue(
                &At::Index(&At::Key(at, "contained"), i),
                "dom-3: a contained resource must be referred to from elsewhere in the resource or refer to the containing resource",
            );
        }
    }
}

/// que-2 (natively: the engine's `descendants()` is quadratic): every `linkId` of a
/// Questionnaire's items, at any depth, is unique.
pub(crate) fn questionnaire_link_ids(cx: &mut Ctx<'_, '_>, q: &Value, at: &At<'_>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<&Value> = vec![q];
    while let Some(v) = stack.pop() {
        for item in v["item"].as_array().into_iter().flatten() {
            if let Some(id) = item["linkId"].as_str()
                && !seen.insert(id)
            {
                cx.issue(at, format!("que-2: the linkId {id:?} is not unique"));
            }
            stack.push(item);
        }
    }
}

/// Invariants checked in the walk rather than with FHIRPath: ele-1 and ext-1 (they apply to
/// every element and every extension), an Attachment's `size` and `hash` against its `data`,
/// and `Coding.system` an absolute URI.
pub(crate) fn native_invariants(
    cx: &mut Ctx<'_, '_>,
    def: &str,
    rel: &str,
    obj: &Map<String, Value>,
    at: &At<'_>,
) {
    if !obj.is_empty() && obj.keys().all(|k| k == "id") {
        cx.issue(
            at,
            "ele-1: all FHIR elements must have a @value or children",
        );
    }
    if !rel.is_empty() {
        return;
    }
    match def {
        "Extension" => {
            let nested = obj.contains_key("extension");
            let valued = obj.keys().any(|k| {
                k.strip_prefix("value")
                    .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
            });
            if nested == valued {
                cx.issue(
                    at,
                    "ext-1: must have either extensions or value[x], not both",
                );
            }
        }
        "Attachment" => attachment(cx, obj, at),
        "Coding" => {
            if let Some(system) = obj.get("system").and_then(Value::as_str)
                && !is_absolute_uri(system)
            {
                cx.issue(
                    &At::Key(at, "system"),
                    "Coding.system must be an absolute URI (a code system's canonical URL, urn:oid: or urn:uuid:)",
                );
            }
        }
        _ => {}
    }
}

/// An Attachment's `size` (bytes) and `hash` (base64 of its SHA-1) describe its `data`.
fn attachment(cx: &mut Ctx<'_, '_>, obj: &Map<String, Value>, at: &At<'_>) {
    use base64::Engine as _;
    let Some(data) = obj.get("data").and_then(Value::as_str) else {
        return;
    };
    let compact: String = data.split_whitespace().collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact) else {
        return; // the base64Binary regex reports it
    };
    if let Some(size) = obj.get("size").and_then(Value::as_u64)
        && size != bytes.len() as u64
    {
        cx.issue(
            &At::Key(at, "size"),
            format!(
                "Attachment.size is {size} but the data has {} bytes",
                bytes.len()
            ),
        );
    }
    if let Some(hash) = obj.get("hash").and_then(Value::as_str) {
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &bytes);
        let want = base64::engine::general_purpose::STANDARD.encode(sha1.as_ref());
        if hash.trim() != want {
            cx.issue(
                &At::Key(at, "hash"),
                "Attachment.hash is not the base64 SHA-1 of the data",
            );
        }
    }
}

/// `scheme:rest` with an RFC 3986 scheme (`http:`, `urn:`, ...).
fn is_absolute_uri(s: &str) -> bool {
    s.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}
