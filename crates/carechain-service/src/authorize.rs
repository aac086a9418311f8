//! Asking the access layer: the service's [`Facts`] (consents, custodians, break-glass
//! grants), the caller of a session, and [`Service::authorize`], which decides and, on a
//! refusal, records it in the access log of every patient the record concerns.

use std::{rc::Rc, sync::Arc};

use carechain_crypto::Did;
use carechain_fhir::consent::Policy;
use carechain_node::now_ms;

use crate::{
    BREAK_GLASS, Interaction, Outcome, PatientConsents, Purpose, Service, ServiceError, Session,
    access::{self, Action, Caller, Decision, Facts, PolicyState, Record},
    audit::AuditEntry,
    breakglass,
};

/// The service's facts at one moment.
pub(crate) struct ServiceFacts<'a> {
    svc: &'a Service,
    now_ms: u64,
    /// Each patient's custodian, looked up once per decision batch — and, for patients
    /// registered by the same write (a transaction creating a Patient and her records), that
    /// write's author, though not stored yet.
    custodians: std::cell::RefCell<std::collections::BTreeMap<String, Option<String>>>,
    /// Each patient's ledger consents with the height they were read at, read once per
    /// decision batch (`None`: she is no proven identity).
    ledger: std::cell::RefCell<std::collections::BTreeMap<String, Option<LedgerConsents>>>,
}

/// A patient's consents in the durable state, and its height.
type LedgerConsents = Rc<(u64, Vec<carechain_state::ConsentState>)>;

impl ServiceFacts<'_> {
    /// `patient`'s ledger consents (memoized for the batch).
    fn ledger_consents(&self, patient: &str) -> Option<LedgerConsents> {
        if let Some(l) = self.ledger.borrow().get(patient) {
            return l.clone();
        }
        let read = self.svc.linked_did(patient).and_then(|did| {
            self.svc
                .node
                .store()
                .with_durable(|d| {
                    carechain_state::consents_of(d.snapshot, &did.public_key())
                        .map(|l| (d.height, l))
                })
                .ok()?
                .ok()
                .map(Rc::new)
        });
        self.ledger
            .borrow_mut()
            .insert(patient.to_string(), read.clone());
        read
    }
}

impl ServiceFacts<'_> {
    /// Adds the Patients a batch of versions registers.
    pub(crate) fn registering(&mut self, ws: &[carechain_records::Written]) {
        for w in ws {
            if w.resource_type == "Patient" && w.stored.is_none() {
                self.custodians
                    .get_mut()
                    .insert(format!("Patient/{}", w.id), w.meta.author.clone());
            }
        }
    }
}

impl Facts for ServiceFacts<'_> {
    fn policy(&self, patient: &str) -> PolicyState {
        match self.svc.consents.read().get(patient) {
            None => PolicyState::Active(Arc::new(Policy::default())),
            Some(PatientConsents {
                policy: Some(p), ..
            }) => PolicyState::Active(p.clone()),
            Some(PatientConsents { policy: None, .. }) => PolicyState::Broken,
        }
    }

    fn custodian(&self, patient: &str) -> Option<String> {
        if let Some(a) = self.custodians.borrow().get(patient) {
            return a.clone();
        }
        let author = patient
            .strip_prefix("Patient/")
            .and_then(|id| self.svc.records.meta("Patient", id, None).ok())
            .and_then(|m| m.author);
        self.custodians
            .borrow_mut()
            .insert(patient.to_string(), author.clone());
        author
    }

    fn break_glass(&self, actor: &Did, patient: &str) -> bool {
        self.svc.glass.active(actor, patient, self.now_ms).is_some()
    }

    fn now_s(&self) -> i64 {
        i64::try_from(self.now_ms / 1000).unwrap_or(i64::MAX)
    }

    fn ledger_consent(
        &self,
        patient: &str,
        caller: &Caller<'_>,
        r: &Record<'_>,
    ) -> Option<(String, u64)> {
        let purpose = carechain_types::ConsentPurpose::parse(&caller.purpose.code)?;
        let ledger = self.ledger_consents(patient)?;
        let (height, consents) = (ledger.0, &ledger.1);
        let mut who = vec![caller.session.did.public_key()];
        who.extend(caller.session.organization.map(|o| o.public_key()));
        let classes: Vec<Option<&str>> = r
            .categories
            .iter()
            .map(|c| Some(c.as_str()))
            .chain([Some(r.resource_type)])
            .collect();
        consents
            .iter()
            .find(|c| {
                c.in_force_at(height)
                    && classes
                        .iter()
                        .any(|class| c.rule.allows(&who, purpose, *class, self.now_ms))
            })
            .map(|c| (c.id.to_hex(), height))
    }
}

impl Service {
    pub(crate) fn facts(&self) -> ServiceFacts<'_> {
        ServiceFacts {
            svc: self,
            now_ms: now_ms(),
            custodians: Default::default(),
            ledger: Default::default(),
        }
    }

    /// The caller of a session: its proven patient record, if any.
    pub(crate) fn caller<'a>(&self, s: &'a Session, purpose: &'a Purpose) -> Caller<'a> {
        Caller {
            session: s,
            patient: self.patient_reference(s),
            purpose,
        }
    }

    /// The decision alone (searches ask it for every candidate, and audit once).
    pub(crate) fn decide(
        &self,
        c: &Caller<'_>,
        action: Action,
        stored: Option<&Record<'_>>,
        new: Option<&Record<'_>>,
    ) -> Decision {
        access::decide(&self.facts(), c, action, stored, new)
    }

    /// Decides; a refusal is audited — in the log of every patient of `stored` and `new` —
    /// and returned as a `Forbidden` error.
    pub(crate) fn authorize(
        &self,
        c: &Caller<'_>,
        interaction: Interaction,
        what: &str,
        action: Action,
        stored: Option<&Record<'_>>,
        new: Option<&Record<'_>>,
    ) -> Result<Decision, ServiceError> {
        self.authorize_with(&self.facts(), c, interaction, what, action, (stored, new))
    }

    /// [`Service::authorize`] with given facts; `records` is (stored, new).
    pub(crate) fn authorize_with(
        &self,
        facts: &ServiceFacts<'_>,
        c: &Caller<'_>,
        interaction: Interaction,
        what: &str,
        action: Action,
        (stored, new): (Option<&Record<'_>>, Option<&Record<'_>>),
    ) -> Result<Decision, ServiceError> {
        let d = access::decide(facts, c, action, stored, new);
        match d {
            Decision::Permit(_) => Ok(d),
            Decision::Deny(why) => {
                let patients = patients_of(stored, new);
                self.audit_each(
                    c.session,
                    c.purpose,
                    AuditEntry::new(interaction, what, None, Outcome::Refused, why.note()),
                    &patients,
                );
                Err(ServiceError::forbidden(why.message()))
            }
        }
    }

    /// A break-glass request naming `patients` (one record, or a compartment search): opens
    /// the caller's grant for them when the purpose is `ETREAT` with a reason.
    pub(crate) fn open_break_glass(
        &self,
        c: &Caller<'_>,
        patients: &[String],
    ) -> Result<(), ServiceError> {
        if let Some(reason) = breakglass::reason(c.purpose)? {
            self.glass.open(c.session, reason, patients, now_ms())?;
        }
        Ok(())
    }

    /// The audit note of an access: `note`, marked break-glass with the grant's reason when
    /// the decision was by break-glass.
    pub(crate) fn access_note(
        &self,
        c: &Caller<'_>,
        break_glass: bool,
        patients: &[String],
        note: &str,
    ) -> String {
        if !break_glass {
            return note.to_string();
        }
        // The request's own reason when it gives one, else the grant's.
        let now = now_ms();
        let reason = match breakglass::reason(c.purpose) {
            Ok(Some(r)) => r.to_string(),
            _ => patients
                .iter()
                .find_map(|p| self.glass.active(&c.session.did, p, now))
                .unwrap_or_default(),
        };
        if note.is_empty() {
            format!("{BREAK_GLASS}: {reason}")
        } else {
            format!("{BREAK_GLASS}: {reason}; {note}")
        }
    }
}

/// The patients of a decision's records, sorted, once each.
pub(crate) fn patients_of(stored: Option<&Record<'_>>, new: Option<&Record<'_>>) -> Vec<String> {
    let mut all: Vec<String> = stored
        .into_iter()
        .chain(new)
        .flat_map(|r| r.patients.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}
