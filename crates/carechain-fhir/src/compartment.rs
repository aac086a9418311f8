//! The Patient compartment of the official definition (`compartment.table`, generated from
//! `compartmentdefinition-patient.json`): which patients a resource belongs to. A resource is
//! in the compartment of every patient that one of its compartment parameters references —
//! relative (`Patient/1`) or absolute (`https://host/fhir/Patient/1`, `/_history/n` dropped) —
//! so access to it is decided by each of those patients' consents.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::Value;

use crate::search::{search_param, values_at};

const TABLE: &str = include_str!("compartment.table");

fn table() -> &'static HashMap<&'static str, Vec<&'static str>> {
    static T: OnceLock<HashMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    T.get_or_init(|| {
        TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let mut it = l.split(' ');
                Some((it.next()?, it.collect()))
            })
            .collect()
    })
}

/// The compartment parameters of a resource type (empty when it is not in the compartment).
pub fn compartment_params(resource_type: &str) -> &'static [&'static str] {
    table().get(resource_type).map_or(&[], Vec::as_slice)
}

/// The search parameter that links a resource type to its patient in a compartment search
/// (`patient`, else `subject`), if the type has one.
pub fn patient_link(resource_type: &str) -> Option<&'static str> {
    ["patient", "subject"]
        .into_iter()
        .find(|c| crate::search::search_param(resource_type, c).is_some())
}

/// `Patient/<id>` of a reference string naming a patient, relative or absolute; `None` for
/// anything else (another type, a contained `#ref`, an unresolved `urn:uuid:`).
pub fn patient_reference(reference: &str) -> Option<String> {
    let r = reference.split("/_history/").next()?;
    let tail = match r.rfind("/Patient/") {
        Some(i) if r.contains("://") || r.starts_with('/') => &r[i + 1..],
        _ => r,
    };
    let id = tail.strip_prefix("Patient/")?;
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| format!("Patient/{id}"))
}

/// Every patient whose compartment `resource` (of type `resource_type`, id `id`) is in,
/// sorted and without duplicates. A Patient is in its own compartment (and in that of the
/// patients it links to).
pub fn patients_of(resource_type: &str, id: &str, resource: &Value) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    if resource_type == "Patient" && !id.is_empty() {
        out.insert(format!("Patient/{id}"));
    }
    for code in compartment_params(resource_type) {
        let Some(param) = search_param(resource_type, code) else {
            continue;
        };
        for (path, _) in &param.paths {
            for v in values_at(resource, path) {
                if let Some(p) = v["reference"].as_str().and_then(patient_reference) {
                    out.insert(p);
                }
            }
        }
    }
    out.into_iter().collect()
}
