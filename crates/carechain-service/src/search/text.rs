//! `_text` and `_content`: word matching over a resource's narrative or every string.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The words of a text (lower case, split at anything not alphanumeric).
pub(super) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Whether some alternative has each of its words as the start of a word of `haystack`
/// (`gluc` finds "Glucose").
pub(super) fn words_match(haystack: &str, alternatives: &[Vec<String>]) -> bool {
    let have: Vec<String> = words(haystack).collect();
    alternatives.iter().any(|want| {
        want.iter()
            .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
    })
}

/// A resource's narrative as text: the XHTML's tags dropped, the common entities decoded.
pub(super) fn narrative_text(r: &Value) -> String {
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
pub(super) fn strings_of(v: &Value, out: &mut String) {
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
