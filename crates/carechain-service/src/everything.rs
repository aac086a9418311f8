//! `Patient/{id}/$everything` at this node: every record of the patient's compartment the
//! caller may see (each decided by the access layer), in one audit event.

use serde_json::Value;

use crate::{Interaction, Purpose, Service, ServiceError, Session, audit::AuditEntry};

impl Service {
    /// The patient's records here that `s` may see: her Patient resource first, then her
    /// compartment by type and id. Records withheld by consent are counted in the audit event.
    pub fn everything(
        &self,
        s: &Session,
        purpose: &Purpose,
        patient_id: &str,
    ) -> Result<Vec<Value>, ServiceError> {
        let patient = format!("Patient/{patient_id}");
        let c = self.caller(s, purpose);
        self.scope_first(
            &c,
            Interaction::SearchType,
            "Patient",
            Some(patient_id),
            's',
        )?;
        self.open_break_glass(&c, std::slice::from_ref(&patient))?;
        let mut ids = vec![("Patient".to_string(), patient_id.to_string())];
        ids.extend(
            self.records
                .patient_resources(&patient)?
                .into_iter()
                .filter(|(t, i)| !(t == "Patient" && i == patient_id)),
        );
        let (mut out, mut withheld, mut glass) = (Vec::new(), 0usize, false);
        for (rt, id) in ids {
            let Ok(meta) = self.records.meta(&rt, &id, None) else {
                continue;
            };
            if meta.deleted || meta.erased {
                continue;
            }
            // The same decision a search takes on each record it finds.
            let Some(bg) = self.visible(s, purpose, &rt, &meta) else {
                withheld += 1;
                continue;
            };
            glass |= bg;
            if let Ok(r) = self.records.read_version(&rt, &id, &meta) {
                out.push(r);
            }
        }
        let note = format!("$everything: {} records, {withheld} withheld", out.len());
        let note = self.access_note(&c, glass, std::slice::from_ref(&patient), &note);
        self.audit(
            s,
            purpose,
            AuditEntry::allowed(Interaction::SearchType, &patient, Some(&patient), &note),
        );
        Ok(out)
    }
}
