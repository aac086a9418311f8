//! FHIR R4 structure validation driven by the official StructureDefinitions.
//!
//! The node carries a compact table (`r4.table`, generated from `profiles-types.json` and
//! `profiles-resources.json` by `cargo xtask gen-fhir` and committed) listing, for every
//! resource and data type, its elements with cardinality and types, and for every primitive
//! the official value regex. [`validate_resource`] checks a JSON resource against it: unknown
//! elements, wrong JSON or FHIR types, cardinality (arrays vs single values, required
//! elements), choice types (`value[x]`), primitive extensions (`_birthDate`), contained and
//! nested resources, recursive elements (`contentReference`), and id / date / dateTime /
//! instant / code / uri ... formats; then the FHIRPath invariants of the core definitions
//! (`invariants.table`) on every element that carries them.

pub mod compartment;
pub mod consent;
mod invariants;
pub mod model;
mod native;
pub mod search;
pub mod table_gen;
mod time;
mod validate;

pub use compartment::{patient_reference, patients_of};
pub use invariants::invariant_coverage;
pub use model::{Model, model};
pub use time::fhir_time_range;
pub use validate::{Issue, is_valid_id, validate_bundle, validate_resource};

/// The codes of an array of `Coding`s or `CodeableConcept`s (`[{code}]` or `[{coding: [{code}]}]`).
pub fn codes(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for item in v.as_array().into_iter().flatten() {
        if let Some(c) = item["code"].as_str() {
            out.push(c.to_string());
        }
        for c in item["coding"].as_array().into_iter().flatten() {
            if let Some(c) = c["code"].as_str() {
                out.push(c.to_string());
            }
        }
    }
    out
}
