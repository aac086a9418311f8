//! Conditional interactions: create (`If-None-Exist`), update (`PUT [type]?query`) and
//! delete (`DELETE [type]?query`), and a transaction's `ifNoneExist`. The query only sees what
//! the caller may see (a hidden match counts as absent, so its existence is not revealed);
//! the write itself is then decided like any other.

use serde_json::{Value, json};

use crate::{
    ErrorKind, Interaction, Purpose, Served, Service, ServiceError, Session, audit::AuditEntry,
    search,
};

impl Service {
    /// Conditional create (`If-None-Exist`): creates the resource unless the query matches
    /// one the caller can see — then that one is returned (`created` = false); several
    /// matches are a 412. Matches hidden by consent are not revealed: they count as absent.
    pub fn create_if_none_exist(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        query: &str,
        resource: Value,
    ) -> Result<(Served, bool), ServiceError> {
        let params = conditional_query(s, rt, query, 'c', "create")?;
        // Two conditional creates of the same thing must not both create.
        let _one_at_a_time = self.conditional.lock();
        let found = self.find(s, purpose, rt, &params, 0)?;
        match found.hits.len() {
            0 => self
                .write(s, purpose, rt, None, None, resource)
                .map(|sv| (sv, true)),
            1 => {
                let existing = found.hits.into_iter().next().unwrap_or_default();
                let id = existing["id"].as_str().unwrap_or_default().to_string();
                let version = existing["meta"]["versionId"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let patients = self.records.meta(rt, &id, None)?.patients;
                self.audit_each(
                    s,
                    purpose,
                    AuditEntry::allowed(
                        Interaction::Create,
                        &format!("{rt}/{id}"),
                        None,
                        "conditional create: a match exists, nothing written",
                    ),
                    &patients,
                );
                Ok((
                    Served {
                        resource: Some(existing),
                        version,
                        tx: None,
                        break_glass: found.glass,
                    },
                    false,
                ))
            }
            n => Err(ServiceError::new(
                ErrorKind::Duplicate,
                format!("If-None-Exist matches {n} resources"),
            )),
        }
    }

    /// Conditional update (`PUT /fhir/{type}?query`): updates the one visible resource the
    /// query matches (the body's id, if any, must be its id); with no match, creates the
    /// resource (with the body's id, if it has one); several matches are a 412. Returns the
    /// version written and whether it was created. As with conditional create, matches hidden
    /// by consent count as absent.
    pub fn update_conditional(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        query: &str,
        mut resource: Value,
    ) -> Result<(Served, bool), ServiceError> {
        let params = conditional_query(s, rt, query, 'u', "update")?;
        let _one_at_a_time = self.conditional.lock();
        let id = self.one_match(
            s,
            purpose,
            rt,
            &params,
            ErrorKind::MultipleMatches,
            "the conditional update",
        )?;
        let body_id = resource["id"].as_str().map(str::to_string);
        match (id, body_id) {
            (Some(id), Some(b)) if b != id => Err(ServiceError::bad(format!(
                "the resource id {b} is not the id of the resource the query matches"
            ))),
            (Some(id), _) => {
                resource["id"] = json!(id);
                self.write(s, purpose, rt, Some(&id), None, resource)
                    .map(|sv| (sv, false))
            }
            (None, Some(b)) => self
                .write(s, purpose, rt, Some(&b), None, resource)
                .map(|sv| {
                    let created = sv.version == 1;
                    (sv, created)
                }),
            (None, None) => self
                .write(s, purpose, rt, None, None, resource)
                .map(|sv| (sv, true)),
        }
    }

    /// Conditional delete (`DELETE /fhir/{type}?query`): deletes the one visible resource the
    /// query matches and returns its deletion; `None` when nothing matches; several matches
    /// are a 412 (one resource at a time).
    pub fn delete_conditional(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        query: &str,
    ) -> Result<Option<Served>, ServiceError> {
        let params = conditional_query(s, rt, query, 'd', "delete")?;
        let _one_at_a_time = self.conditional.lock();
        match self.one_match(
            s,
            purpose,
            rt,
            &params,
            ErrorKind::MultipleMatches,
            "the conditional delete",
        )? {
            Some(id) => self.delete(s, purpose, rt, &id).map(Some),
            None => Ok(None),
        }
    }

    /// The id an `ifNoneExist` entry of a transaction resolves to, if a visible resource
    /// matches (`None`: create it).
    pub(crate) fn existing_match(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        query: &str,
    ) -> Result<Option<String>, ServiceError> {
        let params: Vec<(String, String)> = search::query_pairs(query);
        self.one_match(
            s,
            purpose,
            rt,
            &params,
            ErrorKind::Duplicate,
            &format!("ifNoneExist {query:?}"),
        )
    }

    /// The id of the one resource of `rt` that `params` match among those the caller may see
    /// (`None`: none); several are an error of `kind` ("`what` matches N resources").
    fn one_match(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        params: &[(String, String)],
        kind: ErrorKind,
        what: &str,
    ) -> Result<Option<String>, ServiceError> {
        let found = self.find(s, purpose, rt, params, 0)?;
        match found.hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(one["id"].as_str().map(str::to_string)),
            more => Err(ServiceError::new(
                kind,
                format!("{what} matches {} resources", more.len()),
            )),
        }
    }
}

/// The search of a conditional create, update or delete (`what`), which needs the write
/// permission `perm` and `s` on `rt`, and a query.
fn conditional_query(
    s: &Session,
    rt: &str,
    query: &str,
    perm: char,
    what: &str,
) -> Result<Vec<(String, String)>, ServiceError> {
    let params: Vec<(String, String)> = search::query_pairs(query);
    if params.is_empty() {
        return Err(ServiceError::bad(format!(
            "a conditional {what} needs a search query, e.g. identifier=sys|value"
        )));
    }
    if !s.allows(rt, 's') || !s.allows(rt, perm) {
        return Err(ServiceError::forbidden(format!(
            "a conditional {what} of {rt} needs the '{perm}' and 's' scopes"
        )));
    }
    Ok(params)
}
