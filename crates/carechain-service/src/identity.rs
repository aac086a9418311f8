//! Who a patient is, proven, not asserted. An identity is linked to a Patient record only
//!
//! - when a patient registers herself (a Patient she creates, signed in with her own key,
//!   naming her own did), or
//! - when she claims a record a custodian organization registered for her: the organization's
//!   staff issue a one-time activation code (`$activation-code`, handed to her as patient
//!   portals do), and she answers it with her signature over the claim
//!   ([`carechain_records::claim_message`], namespace `PatientClaim`).
//!
//! Editing `Patient.identifier` never changes a link, and links are read at start from their
//! own table, never rebuilt from Patient resources.

use std::collections::BTreeMap;

use carechain_crypto::{Did, Namespace, Signature};
use carechain_node::now_ms;
use carechain_records::claim_message;
use carechain_types::Role;
use serde_json::{Value, json};

use crate::{
    ErrorKind, Interaction, Outcome, Purpose, Service, ServiceError, Session, audit::AuditEntry,
};

/// How long an activation code stays valid.
pub const ACTIVATION_TTL_MS: u64 = 14 * 24 * 3_600_000;

/// The proven links, in memory (the records store holds them durably).
#[derive(Default)]
pub(crate) struct Links {
    by_did: BTreeMap<Did, String>,
    by_patient: BTreeMap<String, Did>,
}

impl Links {
    /// Every linked identity.
    pub(crate) fn dids(&self) -> Vec<Did> {
        self.by_did.keys().copied().collect()
    }

    fn insert(&mut self, did: Did, patient: String) {
        self.by_patient.insert(patient.clone(), did);
        self.by_did.insert(did, patient);
    }
}

/// A patient's claim of her record.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// The Patient record's id.
    pub patient_id: String,
    /// The activation code the custodian gave her.
    pub code: String,
    /// Her signature (hex, 64 bytes) over [`claim_message`] with namespace `PatientClaim`.
    pub signature: String,
}

impl Service {
    pub(crate) fn load_links(&self) -> Result<(), ServiceError> {
        let mut links = self.links.write();
        for (did, patient) in self.records.links()? {
            if let Ok(d) = did.parse() {
                links.insert(d, patient);
            }
        }
        Ok(())
    }

    /// The patient record (`Patient/<id>`) a session's identity is proven to be, if any.
    pub fn patient_reference(&self, s: &Session) -> Option<String> {
        self.linked_patient(&s.did)
    }

    /// The patient record (`Patient/<id>`) `did` is proven to be here, if any.
    pub(crate) fn linked_patient(&self, did: &Did) -> Option<String> {
        self.links.read().by_did.get(did).cloned()
    }

    /// The identity proven to be `patient`, if any.
    pub(crate) fn linked_did(&self, patient: &str) -> Option<Did> {
        self.links.read().by_patient.get(patient).copied()
    }

    /// Links `did` to `patient` durably, then in memory.
    fn link(&self, did: Did, patient: &str) -> Result<(), ServiceError> {
        self.records.link_patient(&did.to_string(), patient)?;
        self.links.write().insert(did, patient.to_string());
        self.publish_location(&did);
        Ok(())
    }

    /// Records a refused claim or activation code in the patient's log.
    fn audit_claim_refused(&self, s: &Session, purpose: &Purpose, patient: &str, note: &str) {
        self.audit(
            s,
            purpose,
            AuditEntry::new(
                Interaction::Claim,
                patient,
                Some(patient),
                Outcome::Refused,
                note,
            ),
        );
    }

    /// After a patient registered herself (a Patient created by her, naming her own did).
    pub(crate) fn link_self_registration(&self, s: &Session, patient: &str) {
        if let Err(e) = self.link(s.did, patient) {
            tracing::warn!(error = %e, "self-registration not linked");
        }
    }

    /// `POST /fhir/Patient/{id}/$activation-code`: a one-time code for the patient to claim
    /// her record, issued by staff of the organization that registered it (its author) or an
    /// operator. The code is returned once; only its hash is kept.
    pub fn activation_code(
        &self,
        s: &Session,
        purpose: &Purpose,
        patient_id: &str,
    ) -> Result<Value, ServiceError> {
        crate::write::check_id(patient_id)?;
        let patient = format!("Patient/{patient_id}");
        let meta = self.records.meta("Patient", patient_id, None)?;
        let custodian =
            meta.author.is_some() && meta.author == s.organization.map(|o| o.to_string());
        let staff = matches!(s.role, Role::Organization | Role::Practitioner) && custodian;
        if !(staff || s.role == Role::Operator) || !s.allows("Patient", 'u') {
            self.audit_claim_refused(
                s,
                purpose,
                &patient,
                "denied: activation code only from the custodian organization",
            );
            return Err(ServiceError::forbidden(
                "only the organization that registered this patient (or an operator) may issue its activation code",
            ));
        }
        if self.linked_did(&patient).is_some() {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "this patient record is already claimed",
            ));
        }
        let issuer = s
            .organization
            .map_or_else(|| s.did.to_string(), |o| o.to_string());
        let code =
            self.records
                .issue_activation(&patient, &issuer, now_ms() + ACTIVATION_TTL_MS)?;
        self.audit(
            s,
            purpose,
            AuditEntry::allowed(
                Interaction::Claim,
                &patient,
                Some(&patient),
                "activation code issued",
            ),
        );
        Ok(json!({
            "patient": patient,
            "code": code.code,
            "expires": carechain_records::format_instant(code.expires_ms),
            "claim_message": claim_message(&self.token_audience, &patient, "<code>", "<your did>"),
        }))
    }

    /// `POST /fhir/Patient/{id}/$claim`: the signed-in patient claims her record with the
    /// activation code and her signature over the claim. Links her identity to the record.
    pub fn claim(
        &self,
        s: &Session,
        purpose: &Purpose,
        req: &ClaimRequest,
    ) -> Result<Value, ServiceError> {
        crate::write::check_id(&req.patient_id)?;
        let patient = format!("Patient/{}", req.patient_id);
        let refuse = |note: &str, e: ServiceError| {
            self.audit_claim_refused(s, purpose, &patient, note);
            e
        };
        if s.role != Role::Patient {
            return Err(refuse(
                "denied: only a patient identity may claim a record",
                ServiceError::forbidden("only a patient identity may claim a record"),
            ));
        }
        let meta = self.records.meta("Patient", &req.patient_id, None)?;
        if meta.deleted || meta.erased {
            return Err(ServiceError::new(ErrorKind::Gone, "the record was deleted"));
        }
        let ident = self
            .identity(&s.did)
            .filter(|i| i.active)
            .ok_or(crate::AuthError::UnknownClient)?;
        let sig = hex::decode(req.signature.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(Signature)
            .ok_or_else(|| ServiceError::bad("signature must be 64 bytes of hex"))?;
        let message = claim_message(
            &self.token_audience,
            &patient,
            &req.code,
            &s.did.to_string(),
        );
        if ident
            .current_key
            .verify(Namespace::PatientClaim, message.as_bytes(), &sig)
            .is_err()
        {
            return Err(refuse(
                "denied: the claim's signature does not verify",
                ServiceError::new(
                    ErrorKind::Unauthenticated,
                    "the claim's signature does not verify under your key",
                ),
            ));
        }
        if let Err(e) = self
            .records
            .claim(&req.code, &patient, &s.did.to_string(), now_ms())
        {
            return Err(refuse("denied: claim refused", e.into()));
        }
        self.links.write().insert(s.did, patient.clone());
        // Her records written before the claim become hers to decrypt too.
        for key in self.encryption_keys(&s.did) {
            self.records.wrap_patient_records(&patient, &key)?;
        }
        self.audit(
            s,
            purpose,
            AuditEntry::allowed(
                Interaction::Claim,
                &patient,
                Some(&patient),
                "record claimed by the patient",
            ),
        );
        Ok(json!({"patient": patient, "did": s.did.to_string()}))
    }
}
