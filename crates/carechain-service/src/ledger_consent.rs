//! FHIR `Consent` ↔ the ledger's consents. A Consent of a patient who is a proven ledger
//! identity, when the ledger can say it (a permit of `access` to did:key actors, with
//! purposes, data classes and a period), is the ledger's: writing it grants one ledger consent
//! per actor (and revokes those of the version it replaces; deleting or erasing it revokes
//! them), by transactions the node signs as the delegate she recorded, in the batch of the
//! record's own anchor and checked before the write is acknowledged. The node's own policy
//! leaves such a Consent to the ledger, so a revocation at any node denies here at the same
//! height; reading it back shows the ledger's status.
//!
//! A Consent the ledger cannot say (a deny, nested exceptions, security labels, actions beyond
//! `access`, actors by FHIR reference, no actor) stays this node's alone, as for patients who
//! are no ledger identity.

use carechain_crypto::{Hash, PublicKey, sha256_parts};
use carechain_records::Written;
use carechain_types::{ConsentPurpose, ConsentRule, MAX_CONSENT_CLASSES, Outcome, Payload};
use serde_json::{Value, json};

use crate::{ErrorKind, Service, ServiceError};

/// Most actors of one ledger-backed Consent (each becomes one ledger consent).
pub const MAX_LEDGER_ACTORS: usize = 16;

/// The ledger rules an active Consent compiles to, one per actor, or `None` when the ledger
/// cannot say it (it then stays a consent of this node alone).
pub fn ledger_rules(consent: &Value) -> Option<Vec<ConsentRule>> {
    if consent["resourceType"] != "Consent" || consent["status"] != "active" {
        return None;
    }
    let p = &consent["provision"];
    let unsupported = ["provision", "securityLabel", "data", "dataPeriod"];
    if p["type"] != "permit" || unsupported.iter().any(|f| !p[*f].is_null()) {
        return None;
    }
    // The ledger grants reads: a Consent that also permits writes or disclosure (or every
    // action, by naming none) stays this node's.
    let actions = carechain_fhir::codes(&p["action"]);
    if actions.is_empty() || !actions.iter().all(|a| a == "access" || a == "use") {
        return None;
    }
    let purposes: Vec<ConsentPurpose> = match carechain_fhir::codes(&p["purpose"]) {
        codes if codes.is_empty() => ConsentPurpose::ALL.to_vec(),
        codes => {
            let mut ps = codes
                .iter()
                .map(|c| ConsentPurpose::parse(c))
                .collect::<Option<Vec<_>>>()?;
            ps.sort();
            ps.dedup();
            ps
        }
    };
    let mut classes: Vec<String> = carechain_fhir::codes(&p["class"])
        .into_iter()
        .chain(carechain_fhir::codes(&p["code"]))
        .collect();
    classes.sort();
    classes.dedup();
    if classes.len() > MAX_CONSENT_CLASSES {
        return None;
    }
    let (not_before_ms, not_after_ms) = period_ms(&p["period"])?;
    let actors = p["actor"].as_array()?;
    if actors.is_empty() || actors.len() > MAX_LEDGER_ACTORS {
        return None;
    }
    let rules: Vec<ConsentRule> = actors
        .iter()
        .map(|a| {
            if !a["reference"]["reference"].is_null() {
                return None;
            }
            let did: carechain_crypto::Did = a["reference"]["identifier"]["value"]
                .as_str()?
                .parse()
                .ok()?;
            Some(ConsentRule {
                grantee: did.public_key(),
                purposes: purposes.clone(),
                classes: classes.clone(),
                not_before_ms,
                not_after_ms,
            })
        })
        .collect::<Option<_>>()?;
    rules
        .iter()
        .all(ConsentRule::is_well_formed)
        .then_some(rules)
}

/// A FHIR period as ledger milliseconds: from its first to past its last second.
fn period_ms(v: &Value) -> Option<(u64, Option<u64>)> {
    if v.is_null() {
        return Some((0, None));
    }
    let ms = |s: i64| u64::try_from(s).ok()?.checked_mul(1000);
    let start = match v["start"].as_str() {
        Some(s) => ms(carechain_fhir::fhir_time_range(s)?.0)?,
        None => 0,
    };
    let end = match v["end"].as_str() {
        Some(s) => Some(ms(carechain_fhir::fhir_time_range(s)?.1.checked_add(1)?)?),
        None => None,
    };
    Some((start, end))
}

/// The ledger id of the `index`th actor's consent of version `version` of `Consent/{id}`
/// written through `node`: unique per node, resource, version and actor, so any version's
/// ledger consents are found again without storing them.
pub fn ledger_consent_id(node: &PublicKey, id: &str, version: u64, index: usize) -> Hash {
    sha256_parts(&[
        b"carechain/v1/fhir-consent\0",
        &node.0,
        id.as_bytes(),
        &version.to_le_bytes(),
        &(index as u64).to_le_bytes(),
    ])
}

/// The ledger consents a set of versions of one Consent may have granted.
fn candidate_ids(node: &PublicKey, id: &str, versions: &[u64]) -> Vec<Hash> {
    versions
        .iter()
        .flat_map(|v| (0..MAX_LEDGER_ACTORS).map(move |i| ledger_consent_id(node, id, *v, i)))
        .collect()
}

/// What the ledger holds of one Consent version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LedgerStatus {
    /// Not on the ledger: this node's consent alone.
    Local,
    /// Granted, some consent still in force.
    InForce,
    /// Granted, and every one revoked since.
    Revoked,
}

impl Service {
    /// `did`'s consents on the ledger at the durable head (public ledger data), with the
    /// height.
    pub fn ledger_consents(
        &self,
        did: &carechain_crypto::Did,
    ) -> Result<(u64, Vec<carechain_state::ConsentState>), ServiceError> {
        self.ledger_consents_now(&did.public_key())
    }

    /// The signed-in patient revokes one of her ledger consents, with this node signing as
    /// her delegate (the portal without her key file); recorded in her access log.
    pub fn revoke_on_ledger(
        &self,
        s: &crate::Session,
        purpose: &crate::Purpose,
        id: Hash,
    ) -> Result<(), ServiceError> {
        let what = format!("Consent/ledger-{}", id.to_hex());
        let patient = self.patient_reference(s);
        if s.role != carechain_types::Role::Patient || patient.is_none() {
            return Err(ServiceError::forbidden(
                "only the patient revokes her consents",
            ));
        }
        let me = s.did.public_key();
        let (height, consents) = self.ledger_consents_now(&me)?;
        if !consents.iter().any(|c| c.id == id && c.in_force_at(height)) {
            return Err(ServiceError::new(
                ErrorKind::NotFound,
                "no consent of yours in force has this id",
            ));
        }
        self.may_sign_consents_for(&me)?;
        let txs = self.anchor_many(vec![Payload::RevokeConsent { patient: me, id }])?;
        self.check_consent_receipts(&txs)?;
        self.audit(
            s,
            purpose,
            crate::audit::AuditEntry::allowed(
                crate::Interaction::Update,
                &what,
                patient.as_deref(),
                "revoked on the ledger",
            ),
        );
        Ok(())
    }

    /// Her ledger identity, if the Consent's patient is a proven one.
    fn consent_patient(&self, patients: &[String]) -> Option<PublicKey> {
        patients
            .first()
            .and_then(|p| self.linked_did(p))
            .map(|d| d.public_key())
    }

    /// The ledger's consents of `patient` at the durable head.
    fn ledger_consents_now(
        &self,
        patient: &PublicKey,
    ) -> Result<(u64, Vec<carechain_state::ConsentState>), ServiceError> {
        self.node
            .store()
            .with_durable(|d| {
                carechain_state::consents_of(d.snapshot, patient).map(|l| (d.height, l))
            })
            .map_err(|e| ServiceError::internal("cannot read the ledger's consents", e))?
            .map_err(|e| ServiceError::internal("cannot read the ledger's consents", e))
    }

    /// The transactions a written Consent version needs: revocations of the in-force ledger
    /// consents of the versions it replaces (all of them, for a deletion), and grants of the
    /// new version's rules. Empty for other resources and for patients who are no ledger
    /// identity.
    pub(crate) fn consent_payloads(&self, w: &Written) -> Result<Vec<Payload>, ServiceError> {
        if w.resource_type != "Consent" {
            return Ok(vec![]);
        }
        let Some(patient) = self.consent_patient(&w.meta.patients) else {
            return Ok(vec![]);
        };
        let older: Vec<u64> = (1..w.meta.version).collect();
        let mut out = self.revocations(&patient, &w.id, &older)?;
        if let Some(rules) = w.resource.as_ref().and_then(ledger_rules) {
            if let Some(r) = rules
                .iter()
                .find(|r| !self.identity(&r.grantee.did()).is_some_and(|i| i.active))
            {
                return Err(ServiceError::bad(format!(
                    "{} is no active identity on the ledger: a consent cannot name it",
                    r.grantee.did()
                )));
            }
            let me = self.key.public();
            out.extend(
                rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, rule)| Payload::GrantConsent {
                        patient,
                        id: ledger_consent_id(&me, &w.id, w.meta.version, i),
                        rule,
                    }),
            );
        }
        if !out.is_empty() {
            self.may_sign_consents_for(&patient)?;
        }
        Ok(out)
    }

    /// Whether this node may sign `patient`'s consent changes (she delegated to it), checked
    /// before anything is submitted so that a refusal changes nothing.
    fn may_sign_consents_for(&self, patient: &PublicKey) -> Result<(), ServiceError> {
        let me = self.key.public();
        let delegated = self
            .node
            .store()
            .with_durable(|d| carechain_state::consent_delegates(d.snapshot, patient))
            .map_err(|e| ServiceError::internal("cannot read the ledger", e))?
            .map_err(|e| ServiceError::internal("cannot read the ledger", e))?
            .contains(&me);
        if delegated {
            Ok(())
        } else {
            Err(self.not_delegated())
        }
    }

    fn not_delegated(&self) -> ServiceError {
        ServiceError::new(
            ErrorKind::Forbidden,
            format!(
                "her consents are on the ledger, and she has not let this node sign them for \
                 her: sign the consent with her key in the portal, or record the delegation \
                 (`carechain consent delegate --to {}`)",
                self.node_did
            ),
        )
    }

    /// Revocations of `patient`'s in-force ledger consents granted for these versions of
    /// `Consent/{id}`.
    pub(crate) fn revocations(
        &self,
        patient: &PublicKey,
        id: &str,
        versions: &[u64],
    ) -> Result<Vec<Payload>, ServiceError> {
        if versions.is_empty() {
            return Ok(vec![]);
        }
        let candidates = candidate_ids(&self.key.public(), id, versions);
        let (height, consents) = self.ledger_consents_now(patient)?;
        Ok(consents
            .iter()
            .filter(|c| c.in_force_at(height) && candidates.contains(&c.id))
            .map(|c| Payload::RevokeConsent {
                patient: *patient,
                id: c.id,
            })
            .collect())
    }

    /// Revokes, on the ledger, every consent granted for any version up to `version` of an
    /// erased `Consent/{id}`, and waits for it.
    pub(crate) fn revoke_erased(
        &self,
        patients: &[String],
        id: &str,
        version: u64,
    ) -> Result<(), ServiceError> {
        let Some(patient) = self.consent_patient(patients) else {
            return Ok(());
        };
        let versions: Vec<u64> = (1..=version).collect();
        let payloads = self.revocations(&patient, id, &versions)?;
        if payloads.is_empty() {
            return Ok(());
        }
        self.may_sign_consents_for(&patient)?;
        let txs = self.anchor_many(payloads)?;
        self.check_consent_receipts(&txs)
    }

    /// Whether every transaction in `txs` (all durable) was applied; a refusal by the ledger
    /// names its reason and what the patient can do.
    pub(crate) fn check_consent_receipts(&self, txs: &[Hash]) -> Result<(), ServiceError> {
        for tx in txs {
            let outcome = self.outcome_of(tx)?;
            match outcome {
                Outcome::Applied { .. } => {}
                Outcome::Rejected(carechain_types::RejectReason::Unauthorized) => {
                    return Err(self.not_delegated());
                }
                Outcome::Rejected(why) => {
                    return Err(ServiceError::new(
                        ErrorKind::Forbidden,
                        format!("the ledger refused the consent change ({why:?})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The outcome of a durable transaction.
    fn outcome_of(&self, tx: &Hash) -> Result<Outcome, ServiceError> {
        let loc = self
            .node
            .store()
            .tx_location(tx)
            .map_err(|e| ServiceError::internal("cannot find a transaction", e))?
            .ok_or_else(|| ServiceError::new(ErrorKind::Internal, "transaction not durable"))?;
        let snap = self
            .node
            .snapshot()
            .map_err(|e| ServiceError::internal("cannot read the ledger", e))?;
        let receipts = snap
            .receipts(loc.height)
            .map_err(|e| ServiceError::internal("cannot read receipts", e))?
            .unwrap_or_default();
        receipts
            .get(loc.position as usize)
            .map(|r| r.outcome.clone())
            .ok_or_else(|| ServiceError::new(ErrorKind::Internal, "no receipt"))
    }

    /// What the ledger holds of a stored Consent version (`resource` carries its id and
    /// `meta.versionId`).
    pub(crate) fn ledger_status(&self, resource: &Value) -> LedgerStatus {
        let (Some(id), Some(version), Some(patient)) = (
            resource["id"].as_str(),
            resource["meta"]["versionId"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok()),
            resource["patient"]["reference"]
                .as_str()
                .and_then(carechain_fhir::patient_reference)
                .and_then(|p| self.linked_did(&p)),
        ) else {
            return LedgerStatus::Local;
        };
        let Ok((height, consents)) = self.ledger_consents_now(&patient.public_key()) else {
            return LedgerStatus::Local;
        };
        let me = self.key.public();
        let ids = candidate_ids(&me, id, &[version]);
        let mine: Vec<_> = consents.iter().filter(|c| ids.contains(&c.id)).collect();
        if mine.is_empty() {
            LedgerStatus::Local
        } else if mine.iter().any(|c| c.in_force_at(height)) {
            LedgerStatus::InForce
        } else {
            LedgerStatus::Revoked
        }
    }

    /// A stored Consent as the patient's control stands: one the ledger revoked (at any node)
    /// reads `inactive`, and every ledger-backed one names the ledger in `meta.tag`.
    pub(crate) fn consent_view(&self, resource: &mut Value) {
        if resource["resourceType"] != "Consent" {
            return;
        }
        let status = self.ledger_status(resource);
        if status == LedgerStatus::Local {
            return;
        }
        if status == LedgerStatus::Revoked && resource["status"] == "active" {
            resource["status"] = json!("inactive");
        }
        let tag = json!({"system": LEDGER_SYSTEM, "code": "ledger",
            "display": "enforced by the ledger at every node"});
        match resource["meta"]["tag"].as_array_mut() {
            Some(tags) => tags.push(tag),
            None => resource["meta"]["tag"] = json!([tag]),
        }
    }
}

/// The code system of the tag a ledger-backed Consent reads with.
pub const LEDGER_SYSTEM: &str = "http://carechain.example/fhir/CodeSystem/ledger";
