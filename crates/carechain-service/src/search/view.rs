//! `_summary` and `_elements`: the subset of a matched resource a search returns.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A matched resource as `_summary=data` or `_elements` asks: without its narrative, or with
/// only the listed top-level elements (plus `resourceType`, `id` and `meta`), marked
/// `SUBSETTED` so no client mistakes it for the whole resource.
pub(super) fn subset(mut r: Value, q: &Query<'_>) -> Value {
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
