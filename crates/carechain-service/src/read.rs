//! Reads: read, vread, instance and type history. The scope is checked before the record is
//! looked up (a missing record and a forbidden one look the same to a caller out of scope);
//! every version is decided on its own stored metadata, and only the versions allowed are
//! decrypted and returned.

use std::collections::BTreeMap;

use carechain_records::VersionMeta;
use serde_json::Value;

use crate::{
    Interaction, Outcome, Purpose, Served, Service, ServiceError, Session,
    access::{Action, Caller, Deny, Record},
    audit::AuditEntry,
};

/// Versions of one resource: (metadata, content if allowed and not deleted or erased).
pub type Versions = Vec<(VersionMeta, Option<Value>)>;

/// What one patient's log gets for a multi-record read: how many of her records, and
/// whether any of them by break-glass.
pub(crate) type Touched = BTreeMap<String, (usize, bool)>;

impl Service {
    /// The scope check that comes before any lookup. A refusal is audited — in the log of
    /// the record's patients when it exists — and is the same answer whether or not it does.
    pub(crate) fn scope_first(
        &self,
        c: &Caller<'_>,
        interaction: Interaction,
        rt: &str,
        id: Option<&str>,
        perm: char,
    ) -> Result<(), ServiceError> {
        let reads = matches!(perm, 'r' | 's');
        let why = if !c.session.allows(rt, perm) {
            Deny::Scope(match perm {
                'c' => crate::access::Permission::Create,
                'u' => crate::access::Permission::Update,
                'd' => crate::access::Permission::Delete,
                's' => crate::access::Permission::Search,
                _ => crate::access::Permission::Read,
            })
        } else if reads && !crate::access::role_reads(c.session.role) {
            Deny::Role
        } else {
            return Ok(());
        };
        let what = id.map_or_else(|| rt.to_string(), |i| format!("{rt}/{i}"));
        let patients = id
            .and_then(|i| self.records.meta(rt, i, None).ok())
            .map(|m| m.patients)
            .unwrap_or_default();
        self.audit_each(
            c.session,
            c.purpose,
            AuditEntry::new(interaction, &what, None, Outcome::Refused, why.note()),
            &patients,
        );
        Err(ServiceError::forbidden(format!(
            "{} on {rt}",
            why.message()
        )))
    }

    /// Reads the current version (or `version`) of a resource, if the caller may.
    pub fn read(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<Served, ServiceError> {
        let c = self.caller(s, purpose);
        let interaction = if version.is_some() {
            Interaction::Vread
        } else {
            Interaction::Read
        };
        crate::write::check_id(id)?;
        self.scope_first(&c, interaction, rt, Some(id), 'r')?;
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, version)?;
        self.open_break_glass(&c, &meta.patients)?;
        let d = self.authorize(
            &c,
            interaction,
            &what,
            Action::Read,
            Some(&Record::of(rt, &meta)),
            None,
        )?;
        let break_glass = d.break_glass();
        let resource = self.records.read_version(rt, id, &meta).map(|mut r| {
            self.consent_view(&mut r);
            r
        });
        let basis = match &d {
            crate::access::Decision::Permit(crate::access::Permit::LedgerConsent {
                id,
                height,
            }) => {
                format!("allowed by ledger consent {id} at height {height}")
            }
            _ => "allowed".to_string(),
        };
        let (outcome, note) = match &resource {
            Ok(_) => (
                Outcome::Success,
                self.access_note(&c, break_glass, &meta.patients, &basis),
            ),
            Err(_) => (Outcome::Refused, "not available".to_string()),
        };
        self.audit_each(
            s,
            purpose,
            AuditEntry::new(interaction, &what, None, outcome, &note),
            &meta.patients,
        );
        Ok(Served {
            resource: Some(resource?),
            version: meta.version,
            tx: None,
            break_glass,
        })
    }

    /// The versions of a resource the caller may read, newest first: each version decided on
    /// its own metadata (a version from before the record moved to another compartment is
    /// that compartment's). Refused when none is allowed.
    pub fn history(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
    ) -> Result<Versions, ServiceError> {
        let c = self.caller(s, purpose);
        let interaction = Interaction::HistoryInstance;
        crate::write::check_id(id)?;
        self.scope_first(&c, interaction, rt, Some(id), 'r')?;
        let what = format!("{rt}/{id}");
        let head = self.records.meta(rt, id, None)?;
        self.open_break_glass(&c, &head.patients)?;
        let mut out = Vec::new();
        let mut touched = Touched::new();
        for v in (1..=head.version).rev() {
            let meta = self.records.meta(rt, id, Some(v))?;
            let d = self.decide(&c, Action::Read, Some(&Record::of(rt, &meta)), None);
            if !d.permitted() {
                continue;
            }
            for p in &meta.patients {
                let e = touched.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 |= d.break_glass();
            }
            let resource = if meta.deleted || meta.erased {
                None
            } else {
                self.records.read_version(rt, id, &meta).ok()
            };
            out.push((meta, resource));
        }
        if out.is_empty() {
            // Nothing the caller may see: the refusal of the newest version, audited.
            self.authorize(
                &c,
                interaction,
                &what,
                Action::Read,
                Some(&Record::of(rt, &head)),
                None,
            )?;
            return Err(ServiceError::forbidden(
                "no version of this resource is readable",
            ));
        }
        let withheld = usize::try_from(head.version).unwrap_or(usize::MAX) - out.len();
        self.audit_touched(&c, interaction, &what, &touched, |n| {
            format!("history: {n} versions, {withheld} withheld")
        });
        Ok(out)
    }

    /// Type-level history: every version of the resources of `rt` the caller may read, newest
    /// first, optionally since a time, at most `count`. Each version is decided on its own
    /// metadata; each patient whose versions are returned gets one audit event.
    pub fn history_type(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        since_ms: Option<u64>,
        count: usize,
    ) -> Result<Vec<(String, VersionMeta, Option<Value>)>, ServiceError> {
        let c = self.caller(s, purpose);
        let interaction = Interaction::HistoryType;
        self.scope_first(&c, interaction, rt, None, 'r')?;
        let mut found: Vec<(String, VersionMeta, bool)> = Vec::new();
        let mut withheld = 0usize;
        for id in self.records.ids(rt)? {
            let Ok(head) = self.records.meta(rt, &id, None) else {
                continue;
            };
            if since_ms.is_some_and(|t| head.last_updated_ms < t) {
                continue;
            }
            for v in (1..=head.version).rev() {
                let Ok(meta) = self.records.meta(rt, &id, Some(v)) else {
                    continue;
                };
                if since_ms.is_some_and(|t| meta.last_updated_ms < t) {
                    continue;
                }
                let d = self.decide(&c, Action::Read, Some(&Record::of(rt, &meta)), None);
                if d.permitted() {
                    found.push((id.clone(), meta, d.break_glass()));
                } else {
                    withheld += 1;
                }
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.1.last_updated_ms));
        found.truncate(count);
        let mut touched = Touched::new();
        let mut out = Vec::with_capacity(found.len());
        for (id, meta, bg) in found {
            for p in &meta.patients {
                let e = touched.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 |= bg;
            }
            let resource = if meta.deleted || meta.erased {
                None
            } else {
                self.records.read_version(rt, &id, &meta).ok()
            };
            out.push((id, meta, resource));
        }
        let total = out.len();
        self.audit_touched(&c, interaction, rt, &touched, |n| {
            format!("history: {n} of this patient's versions")
        });
        self.audit(
            s,
            purpose,
            AuditEntry::allowed(
                interaction,
                rt,
                None,
                &format!("history: {total} versions, {withheld} withheld"),
            ),
        );
        Ok(out)
    }

    /// One audit event per patient touched by a multi-record read (history, search,
    /// Bundle), marked break-glass when any of her records needed it.
    pub(crate) fn audit_touched(
        &self,
        c: &Caller<'_>,
        interaction: Interaction,
        what: &str,
        touched: &Touched,
        note: impl Fn(usize) -> String,
    ) {
        for (patient, (n, bg)) in touched {
            let note = self.access_note(c, *bg, std::slice::from_ref(patient), &note(*n));
            self.audit(
                c.session,
                c.purpose,
                AuditEntry::allowed(interaction, what, Some(patient), &note),
            );
        }
    }
}
