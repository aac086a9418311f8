//! Bundles: `batch` (each entry on its own, as if sent alone) and `transaction` (all or
//! nothing: `urn:uuid` references resolved, every entry decided by the access layer before
//! any is written, one audit event per patient touched).

use std::collections::BTreeMap;

use carechain_fhir::is_valid_id;
use carechain_records::{NewVersion, format_instant};
use serde_json::{Value, json};

use crate::{
    ErrorKind, Interaction, Outcome, Purpose, Service, ServiceError, Session, audit::AuditEntry,
    read::Touched, search,
};

/// `Type/id` of a request URL naming one resource.
fn type_and_id(url: &str) -> Option<(String, String)> {
    let (t, id) = url.split_once('/')?;
    (carechain_fhir::model().is_resource(t) && is_valid_id(id))
        .then(|| (t.to_string(), id.to_string()))
}

/// A failed entry's response: its status line (named by kind; the server maps kinds to
/// codes) and its OperationOutcome.
fn error_entry(e: &ServiceError) -> Value {
    json!({"response": {"status": crate::error::status_line(e.kind), "outcome": e.outcome()}})
}

/// The Bundle rules the core definitions state as invariants: `fullUrl` absolute
/// (`urn:uuid:`, `urn:oid:` or a URL) and unique.
fn check_entries(entries: &[Value]) -> Result<(), ServiceError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(full) = e["fullUrl"].as_str() else {
            continue;
        };
        let absolute = full.starts_with("urn:uuid:")
            || full.starts_with("urn:oid:")
            || full.starts_with("https://")
            || full.starts_with("http://");
        if !absolute {
            return Err(ServiceError {
                issues: vec![(
                    format!("Bundle.entry[{i}].fullUrl"),
                    "fullUrl must be an absolute URI (bdl-7, bdl-8)".into(),
                )],
                ..ServiceError::new(ErrorKind::Invalid, "a fullUrl is not absolute")
            });
        }
        if !seen.insert(full) {
            return Err(ServiceError {
                issues: vec![(
                    format!("Bundle.entry[{i}].fullUrl"),
                    "two entries have the same fullUrl (bdl-7)".into(),
                )],
                ..ServiceError::new(ErrorKind::Invalid, "duplicate fullUrl")
            });
        }
    }
    Ok(())
}

impl Service {
    /// Audits a refused Bundle (nothing of it was written).
    fn audit_bundle_refused(&self, s: &Session, purpose: &Purpose, why: &str) {
        self.audit(
            s,
            purpose,
            AuditEntry::new(
                Interaction::Transaction,
                "Bundle",
                None,
                Outcome::Refused,
                &format!("bundle refused ({why}): nothing written"),
            ),
        );
    }

    /// A `transaction` (all or nothing, `urn:uuid` references resolved) or `batch` Bundle.
    pub fn bundle(
        &self,
        s: &Session,
        purpose: &Purpose,
        bundle: Value,
    ) -> Result<Value, ServiceError> {
        if bundle["resourceType"] != "Bundle" {
            return Err(ServiceError::new(
                ErrorKind::Structure,
                "POST /fhir takes a Bundle",
            ));
        }
        if let Err(issues) = carechain_fhir::validate_bundle(&bundle) {
            self.audit_bundle_refused(s, purpose, &format!("{} validation issues", issues.len()));
            return Err(ServiceError {
                issues: issues.into_iter().map(|i| (i.path, i.message)).collect(),
                ..ServiceError::new(ErrorKind::Invalid, "the Bundle does not conform to FHIR R4")
            });
        }
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        if entries.len() > 10_000 {
            return Err(ServiceError::new(
                ErrorKind::TooCostly,
                "at most 10000 entries per Bundle",
            ));
        }
        check_entries(&entries)?;
        match bundle["type"].as_str() {
            Some("transaction") => self.transaction(s, purpose, entries),
            Some("batch") => Ok(self.batch(s, purpose, entries)),
            _ => Err(ServiceError::bad(
                "Bundle.type must be transaction or batch",
            )),
        }
    }

    fn batch(&self, s: &Session, purpose: &Purpose, entries: Vec<Value>) -> Value {
        let out: Vec<Value> = entries
            .into_iter()
            .map(|e| {
                let method = e["request"]["method"].as_str().unwrap_or_default().to_string();
                let url = e["request"]["url"].as_str().unwrap_or_default().to_string();
                if method == "GET" && (url.contains('?') || !url.contains('/')) {
                    let (rt, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
                    let params = search::query_pairs(query);
                    return match self.search(s, purpose, rt, &params, "") {
                        Ok(b) => json!({"resource": b, "response": {"status": "200 OK"}}),
                        Err(e) => error_entry(&e),
                    };
                }
                let (rt, id) = url.split_once('/').map_or((url.as_str(), None), |(a, b)| (a, Some(b)));
                let r = match method.as_str() {
                    "POST" | "PUT" => self.write(s, purpose, rt, id, None, e["resource"].clone()),
                    "GET" => match id {
                        Some(id) => self.read(s, purpose, rt, id, None),
                        None => Err(ServiceError::bad("GET needs Type/id or Type?query")),
                    },
                    "DELETE" => match id {
                        Some(id) => self.delete(s, purpose, rt, id),
                        None => Err(ServiceError::unsupported("conditional delete is not supported inside a batch (use DELETE [type]?query)")),
                    },
                    _ => Err(ServiceError::bad("unknown request method")),
                };
                match r {
                    Ok(sv) => {
                        let id = sv.resource.as_ref().and_then(|x| x["id"].as_str()).map(str::to_string).or(id.map(str::to_string)).unwrap_or_default();
                        let status = match method.as_str() { "POST" => "201 Created", "DELETE" => "204 No Content", _ => "200 OK" };
                        let mut entry = json!({"response": {"status": status, "location": format!("{rt}/{id}/_history/{}", sv.version), "etag": format!("W/\"{}\"", sv.version)}});
                        if method == "GET" && let Some(r) = sv.resource {
                            entry["resource"] = r;
                        }
                        entry
                    }
                    Err(e) => error_entry(&e),
                }
            })
            .collect();
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": out})
    }

    fn transaction(
        &self,
        s: &Session,
        purpose: &Purpose,
        entries: Vec<Value>,
    ) -> Result<Value, ServiceError> {
        let c = self.caller(s, purpose);
        // 1. Identify every entry: POST gets a new id (or, with ifNoneExist, the id of the one
        //    visible match), PUT keeps its own; GETs run after the writes; map fullUrls.
        let conditional = entries
            .iter()
            .any(|e| e["request"]["ifNoneExist"].is_string());
        let _one_at_a_time = conditional.then(|| self.conditional.lock());
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        let mut plan = Vec::with_capacity(entries.len());
        let mut reads = Vec::new();
        let mut deletes: Vec<(usize, String, String)> = Vec::new();
        let mut existing: BTreeMap<usize, String> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let method = e["request"]["method"].as_str().unwrap_or_default();
            let url = e["request"]["url"].as_str().unwrap_or_default();
            let rt = e["resource"]["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (id, fresh) = match method {
                "GET" | "DELETE" => {
                    let Some((t, id)) = type_and_id(url) else {
                        return Err(ServiceError::unsupported(format!(
                            "entry {i}: {method} in a transaction must name Type/id (no searches, no conditional delete)"
                        )));
                    };
                    if method == "GET" {
                        reads.push((i, t, id));
                    } else {
                        deletes.push((i, t, id));
                    }
                    continue;
                }
                "POST" => {
                    if let Some(q) = e["request"]["ifNoneExist"].as_str()
                        && let Some(id) = self.existing_match(s, purpose, &rt, q)?
                    {
                        existing.insert(i, format!("{rt}/{id}"));
                        if let Some(full) = e["fullUrl"].as_str() {
                            map.insert(full.to_string(), format!("{rt}/{id}"));
                        }
                        continue;
                    }
                    (carechain_records::new_id()?, true)
                }
                "PUT" => match url.split_once('/') {
                    Some((t, id)) if t == rt && is_valid_id(id) => (id.to_string(), false),
                    _ => {
                        return Err(ServiceError::bad(format!(
                            "entry {i}: PUT url must be {rt}/<id>"
                        )));
                    }
                },
                other => {
                    return Err(ServiceError::unsupported(format!(
                        "entry {i}: {other} is not supported in a transaction (DELETE, POST, PUT and GET are)"
                    )));
                }
            };
            if let Some(full) = e["fullUrl"].as_str() {
                map.insert(full.to_string(), format!("{rt}/{id}"));
            }
            plan.push((i, rt, id, fresh));
        }
        // 2. Deletions first (FHIR order), then the writes with their references resolved.
        //    Every entry is decided by the access layer, on the record as stored, before
        //    anything is written: one refusal refuses the whole transaction.
        let mut items = Vec::with_capacity(plan.len() + deletes.len());
        for (_, rt, id) in &deletes {
            self.scope_first(&c, Interaction::Transaction, rt, Some(id), 'd')?;
            items.push(NewVersion::deletion(rt, id));
        }
        for (i, rt, id, fresh) in &plan {
            let mut resource = entries[*i]["resource"].clone();
            resolve_references(&mut resource, &map);
            if !*fresh {
                resource["id"] = json!(id);
            }
            let perm = if *fresh { 'c' } else { 'u' };
            self.scope_first(
                &c,
                Interaction::Transaction,
                rt,
                (!*fresh).then_some(id.as_str()),
                perm,
            )?;
            let primary = carechain_records::patient_of(rt, id, &resource);
            items.push(NewVersion {
                also: self.recipients(primary.as_deref()),
                resource,
                id: id.clone(),
                if_match: None,
                fresh: *fresh,
                patient: None,
                delete: false,
                server_built: false,
            });
        }
        // 3. All or nothing: validate, decide, seal, anchor and commit all.
        let author = s.organization.map(|o| o.to_string());
        let written =
            match self.write_versions(&c, Interaction::Transaction, items, author.as_deref()) {
                Ok(w) => w,
                Err(e) => {
                    // Nothing was written; the refusal itself is audited (no content in the note).
                    self.audit_bundle_refused(s, purpose, &format!("{:?}", e.kind));
                    return Err(e);
                }
            };
        let mut touched = Touched::new();
        for w in &written {
            self.after_write(&c, w);
            for p in &w.meta.patients {
                touched.entry(p.clone()).or_default().0 += 1;
            }
        }
        // One event per patient touched, and one for the transaction as a whole.
        self.audit_touched(&c, Interaction::Transaction, "Bundle", &touched, |n| {
            format!("transaction: {n} of this patient's resources written")
        });
        self.audit(
            s,
            purpose,
            AuditEntry::allowed(
                Interaction::Transaction,
                "Bundle",
                None,
                &format!("transaction of {} resources", written.len()),
            ),
        );
        // Responses in the order of the request's entries.
        let mut out = vec![Value::Null; entries.len()];
        let (deleted, written) = written.split_at(deletes.len());
        for (w, (i, _, _)) in deleted.iter().zip(&deletes) {
            out[*i] = json!({"response": {
                "status": "204 No Content",
                "etag": format!("W/\"{}\"", w.meta.version),
                "lastModified": format_instant(w.meta.last_updated_ms),
            }});
        }
        for (w, (i, _, _, fresh)) in written.iter().zip(&plan) {
            out[*i] = json!({"response": {
                "status": if *fresh || w.meta.version == 1 { "201 Created" } else { "200 OK" },
                "location": format!("{}/{}/_history/{}", w.resource_type, w.id, w.meta.version),
                "etag": format!("W/\"{}\"", w.meta.version),
                "lastModified": format_instant(w.meta.last_updated_ms),
            }});
        }
        for (i, reference) in existing {
            out[i] = json!({"response": {"status": "200 OK", "location": reference}});
        }
        // 4. Reads run last (FHIR order: DELETE, POST, PUT, GET), each consent-checked.
        for (i, rt, id) in reads {
            out[i] = match self.read(s, purpose, &rt, &id, None) {
                Ok(sv) => json!({
                    "resource": sv.resource,
                    "response": {"status": "200 OK", "etag": format!("W/\"{}\"", sv.version)}
                }),
                Err(e) => error_entry(&e),
            };
        }
        Ok(json!({"resourceType": "Bundle", "type": "transaction-response", "entry": out}))
    }
}

/// Replaces every `reference` that names a bundle entry's `fullUrl` by the entry's new
/// `Type/id`.
fn resolve_references(v: &mut Value, map: &BTreeMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "reference"
                    && let Some(r) = x.as_str()
                    && let Some(new) = map.get(r)
                {
                    *x = json!(new);
                } else {
                    resolve_references(x, map);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_references(x, map)),
        _ => {}
    }
}
