//! A patient's chart as HTML, for the patient and for clinicians alike: a timeline of
//! encounters, conditions, observations, medications, immunizations, procedures, allergies
//! and reports, and small SVG charts of numeric observations (vitals, labs) over time. Every
//! record comes through the records service's consent-checked search as the viewer.

use carechain_service::{Purpose, Service, ServiceError, Session};
use maud::{Markup, html};
use serde_json::Value;

/// The resource types of the timeline, with a readable name.
pub(crate) const TYPES: &[(&str, &str)] = &[
    ("Encounter", "Encounter"),
    ("Condition", "Condition"),
    ("Observation", "Observation"),
    ("MedicationRequest", "Medication"),
    ("MedicationDispense", "Dispense"),
    ("Immunization", "Immunization"),
    ("Procedure", "Procedure"),
    ("AllergyIntolerance", "Allergy"),
    ("DiagnosticReport", "Report"),
];

/// A FHIR HumanName as "Given Family" (the first official or any name).
pub(crate) fn human_name(r: &Value) -> String {
    let names = r["name"].as_array();
    let n = names
        .and_then(|a| a.iter().find(|n| n["use"] == "official").or(a.first()))
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(t) = n["text"].as_str() {
        return t.to_string();
    }
    let mut parts: Vec<String> = n["prefix"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    parts.extend(
        n["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string)),
    );
    if let Some(f) = n["family"].as_str() {
        parts.push(f.to_string());
    }
    if parts.is_empty() {
        format!("Patient/{}", r["id"].as_str().unwrap_or("?"))
    } else {
        parts.join(" ")
    }
}

/// The text of a CodeableConcept: its text, else the first coding's display or code.
pub(crate) fn concept(v: &Value) -> String {
    if let Some(t) = v["text"].as_str() {
        return t.to_string();
    }
    let c = v["coding"].as_array().and_then(|a| a.first());
    c.and_then(|c| c["display"].as_str().or(c["code"].as_str()))
        .unwrap_or("")
        .to_string()
}

fn first_str<'a>(r: &'a Value, paths: &[&[&str]]) -> Option<&'a str> {
    paths.iter().find_map(|p| {
        let mut v = r;
        for k in *p {
            v = &v[*k];
        }
        v.as_str()
    })
}

/// When a record happened (its clinical date), else when it was written.
pub(crate) fn when(r: &Value) -> String {
    first_str(
        r,
        &[
            &["effectiveDateTime"],
            &["effectivePeriod", "start"],
            &["period", "start"],
            &["onsetDateTime"],
            &["recordedDate"],
            &["authoredOn"],
            &["occurrenceDateTime"],
            &["performedDateTime"],
            &["performedPeriod", "start"],
            &["whenHandedOver"],
            &["issued"],
            &["meta", "lastUpdated"],
        ],
    )
    .unwrap_or("")
    .to_string()
}

fn quantity(q: &Value) -> Option<String> {
    let v = q["value"].as_f64()?;
    let unit = q["unit"].as_str().or(q["code"].as_str()).unwrap_or("");
    Some(format!("{} {unit}", trim_number(v)).trim().to_string())
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One line saying what a record is.
pub(crate) fn summary(r: &Value) -> String {
    let rt = r["resourceType"].as_str().unwrap_or("");
    match rt {
        "Observation" => {
            let what = concept(&r["code"]);
            let value = quantity(&r["valueQuantity"])
                .or_else(|| {
                    r["valueCodeableConcept"]
                        .is_object()
                        .then(|| concept(&r["valueCodeableConcept"]))
                })
                .or_else(|| r["valueString"].as_str().map(str::to_string))
                .or_else(|| {
                    let parts: Vec<String> = r["component"]
                        .as_array()?
                        .iter()
                        .filter_map(|c| {
                            Some(format!(
                                "{} {}",
                                concept(&c["code"]),
                                quantity(&c["valueQuantity"])?
                            ))
                        })
                        .collect();
                    (!parts.is_empty()).then(|| parts.join(", "))
                });
            match value {
                Some(v) => format!("{what}: {v}"),
                None => what,
            }
        }
        "Encounter" => r["type"]
            .as_array()
            .and_then(|a| a.first())
            .map(concept)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                r["class"]["code"]
                    .as_str()
                    .unwrap_or("encounter")
                    .to_string()
            }),
        "Condition" => {
            let status = concept(&r["clinicalStatus"]);
            if status.is_empty() {
                concept(&r["code"])
            } else {
                format!("{} ({status})", concept(&r["code"]))
            }
        }
        "MedicationRequest" | "MedicationDispense" => {
            let m = concept(&r["medicationCodeableConcept"]);
            let m = if m.is_empty() {
                r["medicationReference"]["display"]
                    .as_str()
                    .unwrap_or("medication")
                    .to_string()
            } else {
                m
            };
            format!("{m} ({})", r["status"].as_str().unwrap_or("?"))
        }
        "Immunization" => concept(&r["vaccineCode"]),
        "Procedure" | "AllergyIntolerance" | "DiagnosticReport" => concept(&r["code"]),
        _ => rt.to_string(),
    }
}

/// The resources of a search result Bundle, in its order.
pub(crate) fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

/// What the viewer may see of a patient's chart under a purpose.
pub(crate) struct Chart {
    /// The Patient resource, or why it was withheld.
    pub patient: Result<Value, ServiceError>,
    /// Every record found, newest first.
    pub records: Vec<Value>,
}

/// Reads a patient's chart as `s` under `purpose` (each read and search consent-checked and
/// audited by the service).
pub(crate) fn load(svc: &Service, s: &Session, purpose: &Purpose, patient_id: &str) -> Chart {
    let patient = svc
        .read(s, purpose, "Patient", patient_id, None)
        .and_then(|p| {
            p.resource.ok_or_else(|| {
                ServiceError::new(
                    carechain_service::ErrorKind::Gone,
                    "the patient record is deleted",
                )
            })
        });
    let mut records = Vec::new();
    for (rt, _) in TYPES {
        let params = vec![
            ("patient".to_string(), format!("Patient/{patient_id}")),
            ("_count".to_string(), "1000".to_string()),
        ];
        if let Ok(b) = svc.search(s, purpose, rt, &params, "") {
            records.extend(resources(&b));
        }
    }
    records.sort_by_key(|r| std::cmp::Reverse(when(r)));
    Chart { patient, records }
}

/// One numeric series: (date, value) points of one code and unit.
struct Series {
    name: String,
    unit: String,
    points: Vec<(String, f64)>,
}

fn series(records: &[Value]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    let mut add = |name: String, q: &Value, date: &str| {
        let (Some(v), unit) = (
            q["value"].as_f64(),
            q["unit"].as_str().or(q["code"].as_str()).unwrap_or(""),
        ) else {
            return;
        };
        let date = date.get(..10).unwrap_or(date).to_string();
        match out.iter_mut().find(|s| s.name == name && s.unit == unit) {
            Some(s) => s.points.push((date, v)),
            None => out.push(Series {
                name,
                unit: unit.to_string(),
                points: vec![(date, v)],
            }),
        }
    };
    for r in records
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
    {
        let date = when(r);
        if r["valueQuantity"].is_object() {
            add(concept(&r["code"]), &r["valueQuantity"], &date);
        }
        for c in r["component"].as_array().into_iter().flatten() {
            add(concept(&c["code"]), &c["valueQuantity"], &date);
        }
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out.retain(|s| s.points.len() >= 2);
    out.sort_by_key(|s| std::cmp::Reverse(s.points.len()));
    out.truncate(6);
    out
}

/// A small line chart (inline SVG, no script) with its data as a table for screen readers.
fn plot(i: usize, s: &Series) -> Markup {
    let (w, h, pad) = (320.0, 120.0, 8.0);
    let lo = s.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = s
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = s.points.len();
    let xy: Vec<(f64, f64)> = s
        .points
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let x = pad + (w - 2.0 * pad) * k as f64 / (n.saturating_sub(1).max(1)) as f64;
            let y = h - pad - (h - 2.0 * pad) * (p.1 - lo) / span;
            (x, y)
        })
        .collect();
    let line: Vec<String> = xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let title_id = format!("plot-{i}-t");
    let desc_id = format!("plot-{i}-d");
    let first = &s.points[0];
    let last = &s.points[n - 1];
    html! {
        figure.plot {
            figcaption { strong { (s.name) } " (" (s.unit) ") — latest " (trim_number(last.1)) " on " (last.0) }
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby=(format!("{title_id} {desc_id}")) {
                title id=(title_id) { (s.name) " over time" }
                desc id=(desc_id) { (n) " values from " (trim_number(lo)) " to " (trim_number(hi)) " " (s.unit) ", " (first.0) " to " (last.0) }
                line x1="0" y1=(h - pad) x2=(w) y2=(h - pad) stroke="#8a8a8a" stroke-width="1" {}
                polyline points=(line.join(" ")) fill="none" stroke="#0b4f6c" stroke-width="2" {}
                @for ((x, y), p) in xy.iter().zip(&s.points) {
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" fill="#0b4f6c" {
                        title { (p.0) ": " (trim_number(p.1)) " " (s.unit) }
                    }
                }
            }
            details {
                summary { "Values" }
                table {
                    thead { tr { th scope="col" { "Date" } th scope="col" { "Value" } } }
                    tbody {
                        @for p in &s.points { tr { td { (p.0) } td { (trim_number(p.1)) " " (s.unit) } } }
                    }
                }
            }
        }
    }
}

fn kind_name(rt: &str) -> &str {
    TYPES
        .iter()
        .find(|(t, _)| *t == rt)
        .map(|(_, n)| *n)
        .unwrap_or(rt)
}

/// The chart's HTML: charts of numeric series, then the timeline. `erase` adds an "Erase…"
/// link to each record (the patient's own view).
pub(crate) fn render(records: &[Value], erase: bool) -> Markup {
    let plots = series(records);
    let shown = records.len().min(300);
    html! {
        @if !plots.is_empty() {
            section aria-labelledby="vitals-h" {
                h2 id="vitals-h" { "Vitals and labs over time" }
                div.plots {
                    @for (i, s) in plots.iter().enumerate() { (plot(i, s)) }
                }
            }
        }
        section aria-labelledby="timeline-h" {
            h2 id="timeline-h" { "Timeline" }
            @if records.is_empty() {
                p { "No records to show." }
            } @else {
                p.muted { (records.len()) " records" @if shown < records.len() { ", the latest " (shown) " shown" } "." }
                ol.timeline {
                    @for r in records.iter().take(shown) {
                        @let rt = r["resourceType"].as_str().unwrap_or("");
                        @let id = r["id"].as_str().unwrap_or("");
                        li {
                            span.date { (when(r).get(..10).unwrap_or("")) }
                            span class={ "tag tag-" (rt.to_lowercase()) } { (kind_name(rt)) }
                            span.what { (summary(r)) }
                            @if erase {
                                a.erase href=(format!("/patient/erase/{rt}/{id}")) aria-label=(format!("Erase this {} record", kind_name(rt))) { "Erase…" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn summaries_and_series_of_real_shapes() {
        let bp = json!({"resourceType": "Observation", "code": {"text": "Blood pressure"},
            "effectiveDateTime": "2026-01-02T10:00:00Z",
            "component": [
                {"code": {"coding": [{"display": "Systolic"}]}, "valueQuantity": {"value": 120.0, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"display": "Diastolic"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]});
        assert_eq!(
            summary(&bp),
            "Blood pressure: Systolic 120 mm[Hg], Diastolic 80 mm[Hg]"
        );
        let hr = |d: &str, v: f64| json!({"resourceType": "Observation", "code": {"coding": [{"code": "8867-4", "display": "Heart rate"}]}, "effectiveDateTime": d, "valueQuantity": {"value": v, "unit": "/min"}});
        let recs = vec![hr("2026-01-03", 70.5), hr("2026-01-01", 64.0), bp];
        let s = series(&recs);
        assert_eq!(s.len(), 1, "single points are not charted");
        assert_eq!(s[0].name, "Heart rate");
        assert_eq!(s[0].points[0], ("2026-01-01".to_string(), 64.0));
        assert_eq!(summary(&recs[0]), "Heart rate: 70.5 /min");
        assert_eq!(
            human_name(&json!({"name": [{"given": ["Ann", "B"], "family": "Lee"}]})),
            "Ann B Lee"
        );
        let html = render(&recs, true).into_string();
        assert!(html.contains("<svg") && html.contains("Erase…"));
        // Text from records is escaped.
        let evil =
            json!({"resourceType": "Immunization", "vaccineCode": {"text": "<script>x</script>"}});
        assert!(!render(&[evil], false).into_string().contains("<script>x"));
    }
}
