//! Consent: FHIR R4 `Consent` resources compiled into a policy that decides every access.
//!
//! Rules, as a patient would expect them:
//! - the patient always has access to their own records;
//! - the organization that authored a record (and its practitioners) may access it for
//!   treatment unless the patient explicitly denies them;
//! - anyone else is denied unless an active consent permits the request: a provision matches
//!   when every condition it states matches (actor, action, purpose of use, data class or
//!   category, security label, period); nested provisions are exceptions to their parent; a
//!   deny that states no condition only restates the default;
//! - deny overrides permit, across all of the patient's consents.
//!
//! Break-glass is not a consent rule: the service's access layer grants it per patient, on
//! top of this decision.

use serde_json::Value;

use crate::time::fhir_time_range;

const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The actor's own reference (`Practitioner/123`, `Patient/p1`, `Organization/o1`, or a
    /// `did:key`).
    pub reference: String,
    /// The organization the actor acts for (`Organization/o1`), if any.
    pub organization: Option<String>,
}

/// What is being done, in FHIR consent action terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read, vread, search, history (`access`).
    Access,
    /// Create or update (`correct`).
    Correct,
    /// Export or disclosure to a third party (`disclose`).
    Disclose,
}

impl Action {
    fn codes(self) -> &'static [&'static str] {
        match self {
            Action::Access => &["access", "use"],
            Action::Correct => &["correct", "collect"],
            Action::Disclose => &["disclose"],
        }
    }
}

/// One access request against one record.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// Who.
    pub actor: &'a Actor,
    /// What.
    pub action: Action,
    /// Why: a v3 ActReason code (`TREAT`, `ETREAT`, `HPAYMT`, `HRESCH`, ...).
    pub purpose: &'a str,
    /// The record's resource type.
    pub resource_type: &'a str,
    /// The record's category codes (e.g. `vital-signs`, `laboratory`).
    pub categories: &'a [String],
    /// The record's security labels (e.g. `R`, `PSY`, `HIV`).
    pub security_labels: &'a [String],
    /// The patient the record belongs to (`Patient/p1`).
    pub patient: &'a str,
    /// The organization that authored the record.
    pub author_organization: Option<&'a str>,
    /// When (Unix seconds).
    pub now: i64,
}

/// The decision, with what made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Permit(Basis),
    /// Refused.
    Deny(Basis),
}

/// Why a decision was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The patient reading their own record.
    Owner,
    /// The authoring organization, for treatment.
    Author,
    /// A consent provision (consent id).
    Consent(String),
    /// No consent permits it.
    NoConsent,
}

impl Decision {
    /// Whether access is allowed.
    pub fn permitted(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }
}

/// A consent resource that cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsentError {
    /// Not a Consent resource.
    #[error("not a Consent resource")]
    NotConsent,
    /// The provision structure is not usable.
    #[error("unusable provision: {0}")]
    Provision(String),
}

#[derive(Clone, Debug, Default)]
struct Provision {
    deny: Option<bool>,
    period: Option<(i64, i64)>,
    actors: Vec<String>,
    actions: Vec<String>,
    purposes: Vec<String>,
    classes: Vec<String>,
    labels: Vec<String>,
    nested: Vec<Provision>,
}

/// One compiled consent.
#[derive(Clone, Debug)]
pub struct CompiledConsent {
    id: String,
    patient: String,
    root: Provision,
}

fn codes(v: &Value, field: &str) -> Vec<String> {
    crate::codes(&v[field])
}

fn period(v: &Value) -> Result<Option<(i64, i64)>, ConsentError> {
    if v.is_null() {
        return Ok(None);
    }
    let start = match v["start"].as_str() {
        Some(s) => {
            fhir_time_range(s)
                .ok_or_else(|| ConsentError::Provision(format!("bad period start {s:?}")))?
                .0
        }
        None => i64::MIN,
    };
    let end = match v["end"].as_str() {
        Some(s) => {
            fhir_time_range(s)
                .ok_or_else(|| ConsentError::Provision(format!("bad period end {s:?}")))?
                .1
        }
        None => i64::MAX,
    };
    Ok(Some((start, end)))
}

fn provision(v: &Value, depth: usize) -> Result<Provision, ConsentError> {
    if depth > 16 {
        return Err(ConsentError::Provision(
            "provisions nested too deeply".into(),
        ));
    }
    let deny = match v["type"].as_str() {
        Some("deny") => Some(true),
        Some("permit") => Some(false),
        None => None,
        Some(other) => {
            return Err(ConsentError::Provision(format!(
                "unknown provision type {other:?}"
            )));
        }
    };
    let actors = v["actor"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            // A literal reference (`Organization/x`) or a logical one by identifier (a did).
            a["reference"]["reference"]
                .as_str()
                .or_else(|| a["reference"]["identifier"]["value"].as_str())
                .map(str::to_string)
        })
        .collect();
    let mut nested = Vec::new();
    for p in v["provision"].as_array().into_iter().flatten() {
        nested.push(provision(p, depth + 1)?);
    }
    Ok(Provision {
        deny,
        period: period(&v["period"])?,
        actors,
        actions: codes(v, "action"),
        purposes: codes(v, "purpose"),
        classes: codes(v, "class")
            .into_iter()
            .chain(codes(v, "code"))
            .collect(),
        labels: codes(v, "securityLabel"),
        nested,
    })
}

/// Compiles one Consent resource. Inactive consents compile to `None` (they never apply).
pub fn compile(consent: &Value) -> Result<Option<CompiledConsent>, ConsentError> {
    if consent["resourceType"] != "Consent" {
        return Err(ConsentError::NotConsent);
    }
    if consent["status"] != "active" {
        return Ok(None);
    }
    let patient = consent["patient"]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let root = if consent["provision"].is_null() {
        Provision::default()
    } else {
        provision(&consent["provision"], 0)?
    };
    Ok(Some(CompiledConsent {
        id: consent["id"].as_str().unwrap_or_default().to_string(),
        patient,
        root,
    }))
}

impl Provision {
    fn matches(&self, r: &Request<'_>) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|x| f(x))
        };
        self.period.is_none_or(|(a, b)| a <= r.now && r.now <= b)
            && any(&self.actors, &|a| {
                a == r.actor.reference || Some(a) == r.actor.organization.as_deref()
            })
            && any(&self.actions, &|a| r.action.codes().contains(&a))
            && any(&self.purposes, &|p| p == r.purpose)
            && any(&self.classes, &|c| {
                c == r.resource_type || r.categories.iter().any(|x| x == c)
            })
            && any(&self.labels, &|l| r.security_labels.iter().any(|x| x == l))
    }

    fn has_conditions(&self) -> bool {
        self.period.is_some()
            || !self.actors.is_empty()
            || !self.actions.is_empty()
            || !self.purposes.is_empty()
            || !self.classes.is_empty()
            || !self.labels.is_empty()
    }

    /// The decisions (true = deny) of the innermost matching provisions with a type. A deny
    /// that states no condition at all (the usual root of "deny all, except …") restates the
    /// default and is not collected: it must not take away the authoring organization's
    /// default access.
    fn collect(
        &self,
        r: &Request<'_>,
        inherited: Option<bool>,
        conditioned: bool,
        out: &mut Vec<bool>,
    ) {
        if !self.matches(r) {
            return;
        }
        let mine = self.deny.or(inherited);
        let conditioned = conditioned || self.has_conditions();
        let before = out.len();
        for n in &self.nested {
            n.collect(r, mine, conditioned, out);
        }
        // Nested provisions are exceptions: when one matched, it decides for its scope.
        if out.len() == before
            && let Some(d) = mine
            && (conditioned || !d)
        {
            out.push(d);
        }
    }
}

/// A patient's compiled consents.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    consents: Vec<CompiledConsent>,
}

impl Policy {
    /// Compiles a patient's consents (inactive ones are dropped).
    pub fn compile(consents: &[Value]) -> Result<Policy, ConsentError> {
        let mut out = Vec::new();
        for c in consents {
            if let Some(c) = compile(c)? {
                out.push(c);
            }
        }
        Ok(Policy { consents: out })
    }

    /// Decides one request.
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        if r.actor.reference == r.patient {
            return Decision::Permit(Basis::Owner);
        }
        let mut permit_by = None;
        for c in self.consents.iter().filter(|c| c.patient == r.patient) {
            let mut out = Vec::new();
            c.root.collect(r, None, false, &mut out);
            if out.contains(&true) {
                // Deny overrides permit.
                return Decision::Deny(Basis::Consent(c.id.clone()));
            }
            if out.contains(&false) && permit_by.is_none() {
                permit_by = Some(c.id.clone());
            }
        }
        if let Some(id) = permit_by {
            return Decision::Permit(Basis::Consent(id));
        }
        let author = r
            .author_organization
            .is_some_and(|o| Some(o) == r.actor.organization.as_deref() || o == r.actor.reference);
        if author && (r.purpose == "TREAT" || r.purpose == "ETREAT") {
            return Decision::Permit(Basis::Author);
        }
        Decision::Deny(Basis::NoConsent)
    }
}

/// The v3 ActReason code system of purposes of use.
pub const PURPOSE_SYSTEM: &str = ACT_REASON;
