//! Which patient a version belongs to.

use serde_json::Value;

/// The patient a resource belongs to (its primary compartment): itself for a Patient, else
/// the patient its subject, patient or beneficiary names, else the first patient of its
/// compartments ([`carechain_fhir::patients_of`]).
pub fn patient_of(resource_type: &str, id: &str, r: &Value) -> Option<String> {
    primary_patient(
        resource_type,
        id,
        r,
        &carechain_fhir::patients_of(resource_type, id, r),
    )
}

pub(crate) fn primary_patient(
    resource_type: &str,
    id: &str,
    r: &Value,
    patients: &[String],
) -> Option<String> {
    if resource_type == "Patient" {
        return Some(format!("Patient/{id}"));
    }
    ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|f| r[*f]["reference"].as_str())
        .filter_map(carechain_fhir::patient_reference)
        .find(|p| patients.contains(p))
        .or_else(|| patients.first().cloned())
}
