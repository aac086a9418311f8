//! Writes: create, update (and create by `PUT`), delete. Every version is decided by the
//! access layer under the resource's write lock, on the version as stored and on the new one
//! (so a writer cannot move a record out of a compartment it may not write, nor make itself
//! the author: authorship stays with the creating organization), before anything is sealed;
//! then it is sealed, anchored, committed, and audited in each of its patients' logs.

use carechain_fhir::is_valid_id;
use carechain_node::now_ms;
use carechain_records::{Anchor, NewCreate, NewVersion, Written};
use serde_json::Value;

use crate::{
    DELEGATION_SYSTEM, ErrorKind, Interaction, Purpose, Served, Service, ServiceError, Session,
    access::{Action, Caller, Record},
    audit::AuditEntry,
    authorize::ServiceFacts,
    deletion_tombstone, did_of,
};

/// Whether a Consent is marked as recorded by a delegate of the patient's custodian.
pub(crate) fn is_delegated(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["system"] == DELEGATION_SYSTEM && t["code"] == "delegated")
}

/// The id in a URL: FHIR id syntax, or a bad request.
pub(crate) fn check_id(id: &str) -> Result<(), ServiceError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ServiceError::bad(
            "a resource id is 1 to 64 of A-Z a-z 0-9 - .",
        ))
    }
}

impl Service {
    /// The decision on one prepared version: a deletion, an update of the stored version, or
    /// a create. Refusals are audited.
    pub(crate) fn authorize_version(
        &self,
        facts: &ServiceFacts<'_>,
        c: &Caller<'_>,
        interaction: Interaction,
        w: &Written,
    ) -> Result<(), ServiceError> {
        let rt = w.resource_type.as_str();
        let what = format!("{rt}/{}", w.id);
        let stored = w.stored.as_ref().map(|m| Record::of(rt, m));
        if w.resource.is_none() {
            self.authorize_with(
                facts,
                c,
                interaction,
                &what,
                Action::Delete,
                (stored.as_ref(), None),
            )?;
            return Ok(());
        }
        let resource = w.resource.as_ref().unwrap_or(&Value::Null);
        let new = Record {
            delegated: rt == "Consent" && is_delegated(resource),
            names_caller: rt == "Patient" && did_of(resource) == Some(c.session.did),
            ..Record::of(rt, &w.meta)
        };
        let action = if stored.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        self.authorize_with(
            facts,
            c,
            interaction,
            &what,
            action,
            (stored.as_ref(), Some(&new)),
        )?;
        Ok(())
    }

    /// Who a new version's data key is wrapped to: its patient, when proven; a patient
    /// registering herself, to her own key.
    fn write_recipients(
        &self,
        s: &Session,
        rt: &str,
        id: &str,
        resource: &Value,
    ) -> Vec<carechain_vault::PublicEncryptionKey> {
        if rt == "Patient" && self.patient_reference(s).is_none() && did_of(resource) == Some(s.did)
        {
            return self.encryption_keys(&s.did);
        }
        let primary = carechain_records::patient_of(rt, id, resource);
        self.recipients(primary.as_deref())
    }

    /// Creates (`id` = None) or updates a resource.
    pub fn write(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: Option<&str>,
        if_match: Option<u64>,
        resource: Value,
    ) -> Result<Served, ServiceError> {
        let c = self.caller(s, purpose);
        if resource["resourceType"].as_str() != Some(rt) {
            return Err(ServiceError::bad("resourceType does not match the URL"));
        }
        let (interaction, perm) = match id {
            Some(i) => {
                check_id(i)?;
                (Interaction::Update, 'u')
            }
            None => (Interaction::Create, 'c'),
        };
        self.scope_first(&c, interaction, rt, id, perm)?;
        let author = s.organization.map(|o| o.to_string());
        let w = match id {
            Some(i) => {
                let also = self.write_recipients(s, rt, i, &resource);
                self.write_versions(
                    &c,
                    interaction,
                    vec![NewVersion {
                        resource,
                        id: i.to_string(),
                        if_match,
                        fresh: false,
                        patient: None,
                        also,
                        delete: false,
                        server_built: false,
                    }],
                    author.as_deref(),
                )?
                .pop()
                .ok_or_else(|| ServiceError::new(ErrorKind::Internal, "no version written"))?
            }
            None => {
                // Visible only once anchored; the metadata commit runs while the anchor's
                // block is made durable.
                let also = self.write_recipients(s, rt, "", &resource);
                let consent_txs = std::cell::RefCell::new(Vec::new());
                self.records.create_anchored(
                    NewCreate {
                        resource,
                        patient: None,
                        author: author.as_deref(),
                        also: &also,
                        now_ms: now_ms(),
                    },
                    |w: &Written| self.authorize_version(&self.facts(), &c, interaction, w),
                    |w: &Written| {
                        let commitment = w.meta.commitment.ok_or_else(|| {
                            ServiceError::new(ErrorKind::Internal, "no commitment")
                        })?;
                        // A Consent's ledger transactions go first: the record's anchor,
                        // last, durable means they are.
                        let mut payloads = self.consent_payloads(w)?;
                        let ledger = payloads.len();
                        payloads.push(self.record_anchor("record", w, commitment));
                        let txs = self.submit_anchors(payloads)?;
                        consent_txs.borrow_mut().extend_from_slice(&txs[..ledger]);
                        Ok::<_, ServiceError>(Anchor {
                            tx: txs.last().copied().unwrap_or_default(),
                            commitment,
                            salt: None,
                            batch: None,
                        })
                    },
                    |a: &Anchor| {
                        self.wait_durable(&a.tx)?;
                        self.check_consent_receipts(&consent_txs.borrow())
                    },
                )?
            }
        };
        self.after_write(&c, &w);
        let tx = w.meta.anchor.as_ref().map(|a| a.tx).unwrap_or_default();
        let target = format!("{rt}/{}/_history/{}", w.id, w.meta.version);
        self.audit_each(
            s,
            purpose,
            AuditEntry::allowed(interaction, &target, None, "allowed"),
            &w.meta.patients,
        );
        Ok(Served {
            resource: w.resource,
            version: w.meta.version,
            tx: Some(tx),
            break_glass: false,
        })
    }

    /// Writes versions (updates, deletions, creates with their ids) all or nothing: each
    /// decided under its write lock, then sealed, anchored first — its metadata is committed
    /// only once its anchor is durable, so no crash leaves a visible version without one,
    /// and a failed anchor leaves the previous version current.
    pub(crate) fn write_versions(
        &self,
        c: &Caller<'_>,
        interaction: Interaction,
        items: Vec<NewVersion>,
        author: Option<&str>,
    ) -> Result<Vec<Written>, ServiceError> {
        self.records.write_many(
            items,
            author,
            now_ms(),
            |ws: &[Written]| {
                let mut facts = self.facts();
                facts.registering(ws);
                ws.iter()
                    .try_for_each(|w| self.authorize_version(&facts, c, interaction, w))
            },
            |ws: &[Written]| self.anchor_versions(ws),
        )
    }

    /// Anchors written versions (new content or deletions) in order and waits until their
    /// blocks are durable: the anchors the record store then commits with the versions.
    pub(crate) fn anchor_versions(&self, ws: &[Written]) -> Result<Vec<Anchor>, ServiceError> {
        // Each Consent's ledger transactions go before its anchor (see `ledger_consent.rs`).
        let mut payloads = Vec::new();
        let mut ledger = Vec::new();
        let mut commitments = Vec::new();
        for w in ws {
            for p in self.consent_payloads(w)? {
                ledger.push(payloads.len());
                payloads.push(p);
            }
            let (kind, c) = match w.meta.commitment {
                Some(c) => ("record", c),
                None => ("deletion", deletion_tombstone(w)),
            };
            commitments.push((payloads.len(), c));
            payloads.push(self.record_anchor(kind, w, c));
        }
        let txs = self.anchor_many(payloads)?;
        let ledger_txs: Vec<_> = ledger.iter().filter_map(|i| txs.get(*i).copied()).collect();
        self.check_consent_receipts(&ledger_txs)?;
        Ok(commitments
            .into_iter()
            .map(|(i, commitment)| Anchor {
                tx: txs.get(i).copied().unwrap_or_default(),
                commitment,
                salt: None,
                batch: None,
            })
            .collect())
    }

    /// What a written version changes beside the store: a Consent recompiles its patient's
    /// policy (a revoke applies to the next request); a patient's own registration links her.
    pub(crate) fn after_write(&self, c: &Caller<'_>, w: &Written) {
        match (w.resource_type.as_str(), &w.resource) {
            ("Consent", Some(r)) => self.index_consent(&w.id, Some(r.clone())),
            ("Consent", None) => self.index_consent(&w.id, None),
            ("Patient", Some(r))
                if w.stored.is_none()
                    && c.patient.is_none()
                    && c.session.role == carechain_types::Role::Patient
                    && did_of(r) == Some(c.session.did) =>
            {
                self.link_self_registration(c.session, &format!("Patient/{}", w.id));
            }
            _ => {}
        }
    }

    /// Deletes a resource (history stays), if the caller may.
    pub fn delete(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
    ) -> Result<Served, ServiceError> {
        let c = self.caller(s, purpose);
        check_id(id)?;
        self.scope_first(&c, Interaction::Delete, rt, Some(id), 'd')?;
        let w = self
            .write_versions(
                &c,
                Interaction::Delete,
                vec![NewVersion::deletion(rt, id)],
                None,
            )?
            .pop()
            .ok_or_else(|| ServiceError::new(ErrorKind::Internal, "no version written"))?;
        self.after_write(&c, &w);
        self.audit_each(
            s,
            purpose,
            AuditEntry::allowed(
                Interaction::Delete,
                &format!("{rt}/{id}/_history/{}", w.meta.version),
                None,
                "allowed",
            ),
            &w.meta.patients,
        );
        Ok(Served {
            resource: None,
            version: w.meta.version,
            tx: w.meta.anchor.as_ref().map(|a| a.tx),
            break_glass: false,
        })
    }
}
