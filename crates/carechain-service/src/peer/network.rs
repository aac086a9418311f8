//! FHIR across the network: a search or `$everything` that names a patient by her identity
//! (or by a local record linked to it) is answered here and by every other node of her
//! record locator, merged into one Bundle. Remote entries carry their custodian's URL as
//! `fullUrl`; a node that gave nothing is an `OperationOutcome` entry (`search.mode` =
//! `outcome`), so the caller knows the answer may be incomplete.

use carechain_crypto::Did;
use serde_json::{Value, json};

use super::{Gathered, PeerQuery};
use crate::{
    DID_SYSTEM, Purpose, Service, ServiceError, Session, search::searchset_entry as entry,
};

/// Parameters that page or shape one node's answer and are not forwarded.
const LOCAL_ONLY: &[&str] = &[
    "_offset",
    "_count",
    "_include",
    "_revinclude",
    "_sort",
    "_total",
];

impl Service {
    /// The patient identity a search names: `patient.identifier` / `subject.identifier` (or
    /// `identifier` of a Patient search) equal to `urn:ietf:rfc:3986|<did>`, or `patient` /
    /// `subject` naming a local Patient linked to an identity. The parameter is returned too
    /// (it is replaced by the custodian's own compartment).
    fn named_patient(&self, rt: &str, params: &[(String, String)]) -> Option<(Did, String)> {
        for (k, v) in params {
            let by_identifier = match k.as_str() {
                "patient.identifier" | "subject.identifier" => true,
                "identifier" => rt == "Patient",
                _ => false,
            };
            if by_identifier {
                if let Some(d) = v
                    .strip_prefix(DID_SYSTEM)
                    .and_then(|r| r.strip_prefix('|'))
                    .and_then(|d| d.parse().ok())
                {
                    return Some((d, k.clone()));
                }
            } else if k == "patient" || k == "subject" || (k == "_id" && rt == "Patient") {
                let id = v.strip_prefix("Patient/").unwrap_or(v);
                if let Some(d) = self.linked_did(&format!("Patient/{id}")) {
                    return Some((d, k.clone()));
                }
            }
        }
        None
    }

    /// A search here and, when it names a patient by her identity, at every node that holds
    /// records of hers (see the module doc). Paging applies to this node's matches; the
    /// network's follow on the first page.
    pub fn network_search(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        params: &[(String, String)],
        base: &str,
    ) -> Result<Value, ServiceError> {
        let mut bundle = self.search(s, purpose, rt, params, base)?;
        let Some((did, named_by)) = self.named_patient(rt, params) else {
            return Ok(bundle);
        };
        let first_page = !params.iter().any(|(k, v)| k == "_offset" && v != "0");
        if !first_page {
            return Ok(bundle);
        }
        let forwarded: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| *k != named_by && !LOCAL_ONLY.iter().any(|l| k.starts_with(l)))
            .cloned()
            .collect();
        let query = PeerQuery::Search {
            resource_type: rt.to_string(),
            params: forwarded,
        };
        let gathered = self.gather(s, purpose, &did, &query)?;
        merge(&mut bundle, gathered, "match");
        Ok(bundle)
    }

    /// `Patient/{id}/$everything`: her records here and at every node of her locator (when
    /// the record is linked to her identity), as a searchset Bundle.
    pub fn network_everything(
        &self,
        s: &Session,
        purpose: &Purpose,
        patient_id: &str,
        base: &str,
    ) -> Result<Value, ServiceError> {
        let here = self.everything(s, purpose, patient_id)?;
        let mut bundle = searchset(here.into_iter().map(|r| (base.to_string(), r)), "match");
        if let Some(did) = self.linked_did(&format!("Patient/{patient_id}")) {
            let gathered = self.gather(s, purpose, &did, &PeerQuery::Everything)?;
            merge(&mut bundle, gathered, "match");
        }
        Ok(bundle)
    }

    /// The signed-in patient's own access log here (if a record here is linked to her) and
    /// at every node of her locator, newest first; each event keeps what verifies it against
    /// the shared ledger, at any node. Nodes that gave nothing are listed.
    pub fn network_access_log(
        &self,
        s: &Session,
    ) -> Result<(Vec<Value>, Vec<super::Unavailable>), ServiceError> {
        if s.role != carechain_types::Role::Patient {
            return Err(ServiceError::forbidden(
                "only the patient may read their access log",
            ));
        }
        let mut events = match self.patient_reference(s) {
            Some(p) => self.access_log(s, p.trim_start_matches("Patient/"))?,
            None => Vec::new(),
        };
        let g = self.gather(s, &Purpose::treatment(), &s.did, &PeerQuery::AccessLog)?;
        events.extend(g.resources.into_iter().map(|(_, e)| e));
        events.sort_by(|a, b| {
            b["event"]["recorded"]
                .as_str()
                .cmp(&a["event"]["recorded"].as_str())
        });
        Ok((events, g.unavailable))
    }
}

fn searchset(resources: impl Iterator<Item = (String, Value)>, mode: &str) -> Value {
    let entries: Vec<Value> = resources.map(|(b, r)| entry(&b, r, mode)).collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries})
}

/// Adds what the network gave to a searchset: its records, and an outcome per node that gave
/// nothing.
fn merge(bundle: &mut Value, g: Gathered, mode: &str) {
    let added = g.resources.len();
    let mut entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    entries.extend(g.resources.into_iter().map(|(b, r)| entry(&b, r, mode)));
    for u in g.unavailable {
        entries.push(json!({
            "resource": {"resourceType": "OperationOutcome", "issue": [{
                "severity": "warning", "code": "incomplete",
                "diagnostics": format!("node {} ({}) gave nothing: {}", u.node, u.endpoint, u.reason)
            }]},
            "search": {"mode": "outcome"}
        }));
    }
    if let Some(t) = bundle["total"].as_u64() {
        bundle["total"] = json!(t + added as u64);
    }
    bundle["entry"] = Value::Array(entries);
}
