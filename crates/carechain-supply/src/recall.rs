//! Recalls that reach patients. A pharmacy records each dispense in the patient's record as
//! a FHIR `MedicationDispense` whose `identifier` (system `https://id.gs1.org`) is the
//! pack's canonical Digital Link: the link from a serial to a person lives only there, off
//! chain, under her consent. When a lot is recalled, the node serving the dispensing pharmacy
//! looks each dispensed pack up as the pharmacy (an ordinary, audited search: her access log
//! shows who looked) and writes a recall `Flag` into her record, which her portal shows. No
//! patient identity reaches the ledger.

use carechain_crypto::PublicKey;
use carechain_service::{Purpose, Session};
use carechain_types::Role;
use serde_json::{Value, json};

use crate::Supply;

/// The identifier system of a pack's Digital Link in a `MedicationDispense`.
pub const PACK_SYSTEM: &str = "https://id.gs1.org";
/// The identifier system of recall flags (`<recall tx>/<pack>`).
pub const RECALL_SYSTEM: &str = "https://carechain.dev/epcis/recall";

impl Supply {
    /// A session of `org` made by this node for work it does for the organization.
    fn org_session(&self, org: &PublicKey) -> Option<Session> {
        let snap = self.snapshot().ok()?;
        let raw =
            carechain_state::StateView::get(&snap, &carechain_state::identity_key(org)).ok()??;
        let ident: carechain_state::Identity = borsh::from_slice(&raw).ok()?;
        let did = org.did();
        Some(Session {
            did,
            role: Role::Organization,
            organization: Some(did),
            scopes: carechain_service::web_scopes(Role::Organization),
            expires_ms: carechain_node::now_ms() + 60_000,
            key: ident.current_key,
            origin: Default::default(),
        })
    }

    /// Tells every patient dispensed one of `packs` (by `pharmacy`) of the recalled lot; the
    /// pharmacy's alert of how many were told.
    pub(crate) fn reach_patients(
        &self,
        pharmacy: &PublicKey,
        packs: &[[u8; 32]],
        gtin: u64,
        lot: &str,
        height: u64,
        tx: &str,
    ) -> Vec<(String, Value)> {
        let Some(session) = self.org_session(pharmacy) else {
            return vec![];
        };
        // Her consent to the pharmacy covers its care of her: telling her that a medicine it
        // dispensed to her is recalled is that care.
        let purpose = Purpose::treatment();
        let mut told = 0usize;
        for id in packs {
            let Ok(Some(dl)) = self.pack_of(id) else {
                continue;
            };
            let params = vec![("identifier".to_string(), format!("{PACK_SYSTEM}|{dl}"))];
            let found = match self.service.search(
                &session,
                &purpose,
                "MedicationDispense",
                &params,
                "",
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "a recalled pack's dispense could not be looked up");
                    continue;
                }
            };
            for entry in found["entry"].as_array().into_iter().flatten() {
                let md = &entry["resource"];
                let Some(patient) = md["subject"]["reference"].as_str() else {
                    continue;
                };
                let when = md["whenHandedOver"]
                    .as_str()
                    .and_then(|w| w.get(..10))
                    .map_or_else(|| "recently".to_string(), |d| format!("on {d}"));
                let flag = json!({
                    "resourceType": "Flag",
                    "status": "active",
                    "identifier": [{"system": RECALL_SYSTEM, "value": format!("{tx}/{dl}")}],
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety", "display": "Safety"}]}],
                    "code": {
                        "coding": [{"system": "https://carechain.dev/epcis/", "code": "recall", "display": "Product recall"}],
                        "text": format!(
                            "Recall: the medicine dispensed to you {when} (GTIN {gtin:014}, lot {lot}) has been recalled by its manufacturer. Do not use it; contact your pharmacy."
                        ),
                    },
                    "subject": {"reference": patient},
                    "period": {"start": crate::capture::iso(carechain_node::now_ms() as i64)},
                });
                let query = format!("identifier={RECALL_SYSTEM}|{tx}/{dl}");
                match self
                    .service
                    .create_if_none_exist(&session, &purpose, "Flag", &query, flag)
                {
                    Ok(_) => told += 1,
                    Err(e) => tracing::warn!(error = %e, "a recall flag could not be written"),
                }
            }
        }
        vec![(
            pharmacy.did().to_string(),
            json!({"kind": "recall_patients", "height": height, "tx": tx,
                   "gtin": format!("{gtin:014}"), "lot": lot, "patients_told": told}),
        )]
    }
}
