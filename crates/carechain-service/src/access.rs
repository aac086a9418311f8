//! The access layer: the one decision "may this caller do this to this record", taken on the
//! record as stored (and, for a write, on the new version too), never on a request body's
//! claims about itself. Every path of the service — read, vread, history, search and every
//! resource it returns or uses (`_include`, `_revinclude`, chains, `_has`), create, update,
//! delete, conditional writes, Bundle entries, `$erase`, `$envelope`, the access log — asks
//! [`decide`] and records the answer in an audit event.
//!
//! [`decide`] is a pure function of the caller, the action, the records and the [`Facts`]
//! (consent policies, custodians, break-glass grants), so that it can be checked against a
//! small reference model (the property test in `tests/it/access.rs`).
//!
//! The rules (README, "Who may do what"):
//! - the token's SMART scopes come first: out of scope is denied whatever else holds;
//! - a device writes observations and reads nothing;
//! - audit events are written by the node only and read by their patient and operators;
//! - a record outside every patient's compartment (directory data: Organization,
//!   Practitioner, …) is read by any signed-in caller, written by organizations and their
//!   staff, and changed or deleted by its authoring organization or an operator;
//! - a record in patients' compartments needs every one of those patients to allow it: the
//!   patient herself reads, deletes and erases her records, writes her own Patient and her
//!   Consents; anyone else needs her consent (the authoring organization may treat by
//!   default, on a create the custodian of her Patient record), checked on the version as
//!   stored and on the new version;
//! - a Consent is written only by its patient, or by her custodian's staff as a marked
//!   delegation;
//! - break-glass (purpose `ETREAT`) is a practitioner's time-boxed grant for one patient
//!   ([`crate::breakglass`]); it lets reads through that consent would refuse, never writes.

use std::sync::Arc;

use carechain_crypto::Did;
use carechain_fhir::consent::{self, Action as ConsentAction, Policy};
use carechain_records::VersionMeta;
use carechain_types::Role;

use crate::{Purpose, Session};

/// A SMART v2 permission letter (`c r u d s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// `c`
    Create,
    /// `r`
    Read,
    /// `u`
    Update,
    /// `d`
    Delete,
    /// `s`
    Search,
}

impl Permission {
    /// The scope letter.
    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }
}

/// What the caller does to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Read a version (read, vread, history, an included or chained resource).
    Read,
    /// Find it by a search.
    Search,
    /// Create it.
    Create,
    /// Write a new version of it.
    Update,
    /// Delete it (history stays).
    Delete,
    /// Erase it (keys and ciphertext destroyed).
    Erase,
    /// Take its ciphertext and wrapped keys (its patient, to decrypt offline).
    Envelope,
}

impl Action {
    /// The scope permission the action needs.
    pub fn permission(self) -> Permission {
        match self {
            Action::Read | Action::Envelope => Permission::Read,
            Action::Search => Permission::Search,
            Action::Create => Permission::Create,
            Action::Update => Permission::Update,
            Action::Delete | Action::Erase => Permission::Delete,
        }
    }

    fn consent_action(self) -> ConsentAction {
        match self {
            Action::Read | Action::Search | Action::Envelope => ConsentAction::Access,
            Action::Create | Action::Update | Action::Delete | Action::Erase => {
                ConsentAction::Correct
            }
        }
    }

    fn reads(self) -> bool {
        matches!(self, Action::Read | Action::Search)
    }
}

/// Why access is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permit {
    /// The patient, on her own record.
    Owner,
    /// The authoring organization (or its staff), for treatment.
    Author,
    /// A consent of the patient (its id).
    Consent(String),
    /// A consent the patient granted on the ledger (its id, hex), in force in the state at
    /// `height`: the same answer at every node for that height.
    LedgerConsent {
        /// The consent's id.
        id: String,
        /// The height of the state the decision read.
        height: u64,
    },
    /// A break-glass grant for this patient.
    BreakGlass,
    /// Directory data outside every compartment.
    Directory,
    /// An operator reading audit events, deleting or erasing.
    Operator,
    /// Staff of the patient's custodian recording a consent on her behalf (marked).
    Delegate,
    /// An organization or its staff registering a patient, or a patient herself.
    Registration,
}

/// Why access is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deny {
    /// The token's scopes do not allow this permission on this type.
    Scope(Permission),
    /// This role may not do this at all.
    Role,
    /// Audit events are the node's: read by their patient and operators only.
    AuditEvent,
    /// Only the patient (or an operator) may do this.
    NotOwner,
    /// Only the authoring organization (or an operator) may do this.
    NotAuthor,
    /// Only the patient (or a marked delegate of her custodian) may write her consents.
    ConsentOwner,
    /// The patient's consent does not allow it.
    Consent,
}

impl Deny {
    /// The audit note (no health data).
    pub fn note(self) -> &'static str {
        match self {
            Deny::Scope(_) => "denied: outside the token's scopes",
            Deny::Role => "denied: not allowed for this role",
            Deny::AuditEvent => "denied: audit events are for their patient and auditors",
            Deny::NotOwner => "denied: only the patient or an operator",
            Deny::NotAuthor => "denied: only the authoring organization or an operator",
            Deny::ConsentOwner => "denied: consents are the patient's",
            Deny::Consent => "denied by consent",
        }
    }

    /// The message for the caller.
    pub fn message(self) -> String {
        match self {
            Deny::Scope(p) => format!("the token's scopes do not allow '{}'", p.letter()),
            Deny::Role => "this identity's role may not do this".into(),
            Deny::AuditEvent => {
                "audit events are readable only by their patient and auditors, and written by the node".into()
            }
            Deny::NotOwner => "only the patient or an operator may do this".into(),
            Deny::NotAuthor => {
                "only the authoring organization or an operator may change this record".into()
            }
            Deny::ConsentOwner => {
                "a consent is written only by its patient (or a marked delegate of her custodian)"
                    .into()
            }
            Deny::Consent => "access denied by the patient's consent".into(),
        }
    }
}

/// The decision, with what made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: why (for a record in several compartments, the weakest reason: break-glass
    /// if any patient's part needed it).
    Permit(Permit),
    /// Refused, and why.
    Deny(Deny),
}

impl Decision {
    /// Whether it is allowed.
    pub fn permitted(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }

    /// Whether it is allowed by break-glass.
    pub fn break_glass(&self) -> bool {
        *self == Decision::Permit(Permit::BreakGlass)
    }
}

/// Who is asking.
#[derive(Clone, Debug)]
pub struct Caller<'a> {
    /// The signed-in identity and its token.
    pub session: &'a Session,
    /// The patient record the identity is proven to be (`Patient/<id>`), if any.
    pub patient: Option<String>,
    /// Why.
    pub purpose: &'a Purpose,
}

impl Caller<'_> {
    fn organization(&self) -> Option<String> {
        self.session.organization.map(|o| o.to_string())
    }

    fn consent_actor(&self) -> consent::Actor {
        consent::Actor {
            reference: self
                .patient
                .clone()
                .unwrap_or_else(|| self.session.did.to_string()),
            organization: self.organization(),
        }
    }
}

/// A record as the decision sees it: a stored version's metadata, or a new version's.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Resource type.
    pub resource_type: &'a str,
    /// The patients whose compartments it is in.
    pub patients: &'a [String],
    /// The authoring organization (did).
    pub author: Option<&'a str>,
    /// Category codes.
    pub categories: &'a [String],
    /// Security labels.
    pub labels: &'a [String],
    /// (New versions only) a Consent marked as recorded by a delegate.
    pub delegated: bool,
    /// (New versions only) a Patient naming the caller's own did (self-registration).
    pub names_caller: bool,
}

impl<'a> Record<'a> {
    /// A stored (or prepared) version.
    pub fn of(resource_type: &'a str, meta: &'a VersionMeta) -> Record<'a> {
        Record {
            resource_type,
            patients: &meta.patients,
            author: meta.author.as_deref(),
            categories: &meta.categories,
            labels: &meta.labels,
            delegated: false,
            names_caller: false,
        }
    }
}

/// A patient's consent policy as the decision sees it.
#[derive(Clone, Debug)]
pub enum PolicyState {
    /// Her consents, compiled (none: the default rules alone).
    Active(Arc<Policy>),
    /// Some consent of hers does not compile: everyone but her is denied.
    Broken,
}

/// What the decision needs to know beyond the request.
pub trait Facts {
    /// The patient's consent policy.
    fn policy(&self, patient: &str) -> PolicyState;
    /// The organization that holds her Patient record (its author), if any.
    fn custodian(&self, patient: &str) -> Option<String>;
    /// Whether `actor` holds an active break-glass grant for `patient`.
    fn break_glass(&self, actor: &Did, patient: &str) -> bool;
    /// Now, in Unix seconds (consent periods).
    fn now_s(&self) -> i64;
    /// A consent `patient` granted on the ledger that lets `caller` read record `r` (a data
    /// class of a ledger consent is one of its categories or its resource type) for the
    /// caller's purpose now: its id and the height decided at.
    fn ledger_consent(
        &self,
        _patient: &str,
        _caller: &Caller<'_>,
        _r: &Record<'_>,
    ) -> Option<(String, u64)> {
        None
    }
}

/// Whether a role reads records at all (devices and validators never do).
pub fn role_reads(role: Role) -> bool {
    !matches!(role, Role::Device | Role::Validator)
}

/// Decides `action` by `caller` on a record: `stored` is the current version (absent for a
/// create), `new` the version to be written (absent for reads, deletions and erasure).
pub fn decide(
    facts: &dyn Facts,
    caller: &Caller<'_>,
    action: Action,
    stored: Option<&Record<'_>>,
    new: Option<&Record<'_>>,
) -> Decision {
    let Some(rt) = stored.or(new).map(|r| r.resource_type) else {
        return Decision::Deny(Deny::Role);
    };
    let s = caller.session;
    let perm = action.permission();
    if !s.allows(rt, perm.letter()) {
        return Decision::Deny(Deny::Scope(perm));
    }
    match s.role {
        Role::Device => {
            // A device reports observations; it never reads.
            return if action == Action::Create && matches!(rt, "Observation" | "Device") {
                Decision::Permit(Permit::Registration)
            } else {
                Decision::Deny(Deny::Role)
            };
        }
        Role::Validator => return Decision::Deny(Deny::Role),
        _ => {}
    }
    if rt == "AuditEvent" {
        return audit_event(caller, action, stored);
    }
    let mut result = Decision::Permit(Permit::Directory);
    for (r, is_new) in [(stored, false), (new, true)]
        .into_iter()
        .filter_map(|(r, n)| Some((r?, n)))
    {
        let d = if r.patients.is_empty() {
            directory(caller, action, stored)
        } else {
            // Neutral start (`weaker` keeps the other side): the decision keeps its basis.
            let mut all = Decision::Permit(Permit::Directory);
            for p in r.patients {
                // A patient the new version adds is new to the record: decided as a create
                // in her compartment (the record's author is no author of hers).
                let joins = action == Action::Create
                    || (is_new && stored.is_some_and(|s| !s.patients.contains(p)));
                let d = for_patient(facts, caller, action, r, p, joins);
                all = weaker(all, d);
            }
            all
        };
        result = weaker(result, d);
        if !result.permitted() {
            break;
        }
    }
    result
}

/// Combines two decisions: a denial wins; between permits, break-glass is kept (it must be
/// audited and shown).
fn weaker(a: Decision, b: Decision) -> Decision {
    match (a, b) {
        (Decision::Deny(d), _) | (_, Decision::Deny(d)) => Decision::Deny(d),
        (Decision::Permit(Permit::BreakGlass), _) | (_, Decision::Permit(Permit::BreakGlass)) => {
            Decision::Permit(Permit::BreakGlass)
        }
        (Decision::Permit(Permit::Directory), b) => b,
        (a, _) => a,
    }
}

fn audit_event(caller: &Caller<'_>, action: Action, stored: Option<&Record<'_>>) -> Decision {
    if !action.reads() && action != Action::Envelope {
        return Decision::Deny(Deny::AuditEvent);
    }
    if caller.session.role == Role::Operator && action != Action::Envelope {
        return Decision::Permit(Permit::Operator);
    }
    let own = stored.is_some_and(|r| {
        caller
            .patient
            .as_ref()
            .is_some_and(|p| r.patients.contains(p))
    });
    if own {
        Decision::Permit(Permit::Owner)
    } else {
        Decision::Deny(Deny::AuditEvent)
    }
}

/// Records outside every compartment.
fn directory(caller: &Caller<'_>, action: Action, stored: Option<&Record<'_>>) -> Decision {
    let role = caller.session.role;
    match action {
        Action::Read | Action::Search => Decision::Permit(Permit::Directory),
        Action::Create => match role {
            Role::Organization | Role::Practitioner | Role::Operator => {
                Decision::Permit(Permit::Directory)
            }
            _ => Decision::Deny(Deny::Role),
        },
        Action::Update | Action::Delete => {
            if role == Role::Operator {
                return Decision::Permit(Permit::Operator);
            }
            let author = stored.and_then(|r| r.author);
            if author.is_some() && author.map(str::to_string) == caller.organization() {
                Decision::Permit(Permit::Author)
            } else {
                Decision::Deny(Deny::NotAuthor)
            }
        }
        Action::Erase => {
            if role == Role::Operator {
                Decision::Permit(Permit::Operator)
            } else {
                Decision::Deny(Deny::NotOwner)
            }
        }
        Action::Envelope => Decision::Deny(Deny::NotOwner),
    }
}

/// One patient's part of a decision on a record in her compartment.
fn for_patient(
    facts: &dyn Facts,
    caller: &Caller<'_>,
    action: Action,
    r: &Record<'_>,
    patient: &str,
    joins: bool,
) -> Decision {
    let role = caller.session.role;
    let owner = caller.patient.as_deref() == Some(patient);
    match action {
        Action::Envelope => {
            return if owner {
                Decision::Permit(Permit::Owner)
            } else {
                Decision::Deny(Deny::NotOwner)
            };
        }
        Action::Erase => {
            return if owner {
                Decision::Permit(Permit::Owner)
            } else if role == Role::Operator {
                Decision::Permit(Permit::Operator)
            } else {
                Decision::Deny(Deny::NotOwner)
            };
        }
        Action::Read | Action::Search if owner => return Decision::Permit(Permit::Owner),
        _ => {}
    }
    if r.resource_type == "Consent" && !action.reads() {
        if owner {
            return Decision::Permit(Permit::Owner);
        }
        let custodian_staff = matches!(role, Role::Organization | Role::Practitioner)
            && caller.organization().is_some()
            && facts.custodian(patient) == caller.organization();
        return if custodian_staff && (r.delegated || action == Action::Delete) {
            Decision::Permit(Permit::Delegate)
        } else {
            Decision::Deny(Deny::ConsentOwner)
        };
    }
    if r.resource_type == "Patient" && action == Action::Create {
        // Registering a patient: an organization, its staff or an operator; or a patient
        // herself, once, naming her own did.
        return match role {
            Role::Organization | Role::Practitioner | Role::Operator => {
                Decision::Permit(Permit::Registration)
            }
            Role::Patient if caller.patient.is_none() && r.names_caller => {
                Decision::Permit(Permit::Registration)
            }
            _ => Decision::Deny(Deny::Role),
        };
    }
    if owner {
        // Her own demographics, and her own records away (a deletion keeps history).
        return match (action, r.resource_type) {
            (Action::Update, "Patient") | (Action::Delete, _) => Decision::Permit(Permit::Owner),
            _ => Decision::Deny(Deny::Role),
        };
    }
    if role == Role::Patient {
        return Decision::Deny(Deny::Role);
    }
    if action == Action::Delete && role == Role::Operator {
        return Decision::Permit(Permit::Operator);
    }
    let policy = match facts.policy(patient) {
        PolicyState::Active(p) => p,
        PolicyState::Broken => return Decision::Deny(Deny::Consent),
    };
    // Who authored it: the stored author; for a create (or a patient an update adds), the
    // custodian of her Patient record (its registering organization treats her by default).
    let author = if joins {
        facts.custodian(patient)
    } else {
        r.author.map(str::to_string)
    };
    if action == Action::Delete && (author.is_none() || author != caller.organization()) {
        return Decision::Deny(Deny::NotAuthor);
    }
    let actor = caller.consent_actor();
    let decision = policy.decide(&consent::Request {
        actor: &actor,
        action: action.consent_action(),
        purpose: &caller.purpose.code,
        resource_type: r.resource_type,
        categories: r.categories,
        security_labels: r.labels,
        patient,
        author_organization: author.as_deref(),
        now: facts.now_s(),
    });
    match decision {
        consent::Decision::Permit(consent::Basis::Author) => Decision::Permit(Permit::Author),
        consent::Decision::Permit(consent::Basis::Consent(id)) => {
            Decision::Permit(Permit::Consent(id))
        }
        consent::Decision::Permit(_) => Decision::Permit(Permit::Owner),
        consent::Decision::Deny(consent::Basis::NoConsent)
            if action.reads()
                && let Some((id, height)) = facts.ledger_consent(patient, caller, r) =>
        {
            Decision::Permit(Permit::LedgerConsent { id, height })
        }
        consent::Decision::Deny(_) => {
            if action.reads()
                && role == Role::Practitioner
                && caller.purpose.code == "ETREAT"
                && facts.break_glass(&caller.session.did, patient)
            {
                Decision::Permit(Permit::BreakGlass)
            } else {
                Decision::Deny(Deny::Consent)
            }
        }
    }
}
