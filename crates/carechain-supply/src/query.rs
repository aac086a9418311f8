//! The standard query interface over the REST binding: `GET /events` and its resource views
//! (`/epcs/{epc}/events`, `/bizSteps/{step}/events`, ...), with `perPage` and
//! `nextPageToken` paging. Each event carries its anchor (the ledger transaction, its index
//! among the transaction's events, and the log inclusion under a signed checkpoint); the
//! document lists that field under `ignoreFields`, so hashing a returned event gives the
//! captured hash. An organization sees the events it captured, the events of products whose
//! custody it had (or commissioned), and every recall.

use std::collections::BTreeSet;

use carechain_epcis::{Event, bare_term, normalise};
use serde_json::{Value, json};

use crate::capture::iso;
use crate::custody::item_id;
use crate::store::{StoredEvent, role};
use crate::{Actor, Supply, SupplyError};

/// Default and largest page.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Largest page a client may ask for.
pub const MAX_PER_PAGE: usize = 1_000;
/// The namespace of carechain's own fields in EPCIS documents.
pub const NAMESPACE: &str = "https://carechain.dev/epcis/";

/// A query: every field a conjunction, each list a disjunction.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Query {
    /// `eventType`.
    pub event_type: Vec<String>,
    /// `GE_eventTime` (ms).
    pub ge_event_time: Option<i64>,
    /// `LT_eventTime` (ms).
    pub lt_event_time: Option<i64>,
    /// `GE_recordTime` (ms).
    pub ge_record_time: Option<i64>,
    /// `LT_recordTime` (ms).
    pub lt_record_time: Option<i64>,
    /// `EQ_action`.
    pub action: Vec<String>,
    /// `EQ_bizStep` (bare terms).
    pub biz_step: Vec<String>,
    /// `EQ_disposition` (bare terms).
    pub disposition: Vec<String>,
    /// `EQ_readPoint` (canonical).
    pub read_point: Vec<String>,
    /// `EQ_bizLocation` (canonical).
    pub biz_location: Vec<String>,
    /// `MATCH_epc`, `MATCH_parentID`, `MATCH_inputEPC`/`MATCH_outputEPC`, `MATCH_anyEPC`,
    /// `MATCH_epcClass`/`MATCH_anyEPCClass`: identifiers (canonical) with the roles they
    /// match.
    pub matches: Vec<(String, u8)>,
    /// `EQ_eventID`.
    pub event_id: Vec<String>,
}

/// A page of results.
pub struct QueryPage {
    /// The EPCISQueryDocument.
    pub document: Value,
    /// The token of the next page, if there is one.
    pub next: Option<String>,
}

fn list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn time(name: &str, v: &str) -> Result<i64, SupplyError> {
    carechain_epcis::event::time_ms(v)
        .ok_or_else(|| SupplyError::bad(format!("{name}: {v} is not an RFC 3339 date-time")))
}

fn canonical(name: &str, v: &str) -> Result<String, SupplyError> {
    if v.starts_with("urn:epc:") || v.starts_with("https://id.gs1.org/") {
        normalise(v).ok_or_else(|| {
            SupplyError::bad(format!(
                "{name}: {v} is not a valid EPC URN or GS1 Digital Link"
            ))
        })
    } else {
        Ok(normalise(v).unwrap_or_else(|| v.to_string()))
    }
}

impl Query {
    /// From query-string pairs (repeated or `|`-separated values); the page size and token
    /// apart. An unknown parameter is an error, not ignored.
    pub fn parse(
        pairs: &[(String, String)],
    ) -> Result<(Query, usize, Option<String>), SupplyError> {
        let mut q = Query::default();
        let mut per_page = DEFAULT_PER_PAGE;
        let mut token = None;
        for (k, v) in pairs {
            match k.as_str() {
                "perPage" => {
                    per_page = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PER_PAGE).contains(n))
                        .ok_or_else(|| {
                            SupplyError::bad(format!("perPage is 1 to {MAX_PER_PAGE}"))
                        })?;
                }
                "nextPageToken" => token = Some(v.clone()),
                _ => q.add(k, v)?,
            }
        }
        Ok((q, per_page, token))
    }

    /// Adds one parameter.
    pub fn add(&mut self, k: &str, v: &str) -> Result<(), SupplyError> {
        let m = |q: &mut Query, r: u8| -> Result<(), SupplyError> {
            for s in list(v) {
                q.matches.push((canonical(k, &s)?, r));
            }
            Ok(())
        };
        match k {
            "eventType" => self.event_type.extend(list(v)),
            "GE_eventTime" => self.ge_event_time = Some(time(k, v)?),
            "LT_eventTime" => self.lt_event_time = Some(time(k, v)?),
            "GE_recordTime" => self.ge_record_time = Some(time(k, v)?),
            "LT_recordTime" => self.lt_record_time = Some(time(k, v)?),
            "EQ_action" => self.action.extend(list(v)),
            "EQ_bizStep" => self.biz_step.extend(list(v).map(|s| bare_term(&s))),
            "EQ_disposition" => self.disposition.extend(list(v).map(|s| bare_term(&s))),
            "EQ_readPoint" => {
                for s in list(v) {
                    self.read_point.push(canonical(k, &s)?);
                }
            }
            "EQ_bizLocation" => {
                for s in list(v) {
                    self.biz_location.push(canonical(k, &s)?);
                }
            }
            "MATCH_epc" => m(self, role::EPC)?,
            "MATCH_parentID" => m(self, role::PARENT)?,
            "MATCH_inputEPC" | "MATCH_outputEPC" => m(self, role::IO)?,
            "MATCH_anyEPC" => m(self, role::EPC | role::PARENT | role::IO)?,
            "MATCH_epcClass"
            | "MATCH_inputEPCClass"
            | "MATCH_outputEPCClass"
            | "MATCH_anyEPCClass" => m(self, role::CLASS)?,
            "EQ_eventID" => self.event_id.extend(list(v)),
            other => {
                return Err(SupplyError::bad(format!(
                    "query parameter {other} is not supported (QueryParameterException)"
                )));
            }
        }
        Ok(())
    }

    /// From a named query's JSON (`{"eventType": [...], "EQ_bizStep": [...]}`).
    pub fn from_json(v: &Value) -> Result<Query, SupplyError> {
        let mut q = Query::default();
        let obj = v
            .as_object()
            .ok_or_else(|| SupplyError::bad("a query is an object"))?;
        for (k, val) in obj {
            let vals: Vec<String> = match val {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                Value::Number(n) => vec![n.to_string()],
                _ => {
                    return Err(SupplyError::bad(format!(
                        "{k}: a value or a list of values"
                    )));
                }
            };
            for s in vals {
                q.add(k, &s)?;
            }
        }
        Ok(q)
    }

    /// Whether a stored event matches (the index already narrowed what it could).
    pub fn matches(&self, e: &Event, stored: &StoredEvent, record_ms: i64) -> bool {
        let any = |want: &[String], have: Option<&str>| {
            want.is_empty() || have.is_some_and(|h| want.iter().any(|w| w == h))
        };
        any(&self.event_type, Some(e.kind.as_str()))
            && self.ge_event_time.is_none_or(|t| e.time_ms >= t)
            && self.lt_event_time.is_none_or(|t| e.time_ms < t)
            && self.ge_record_time.is_none_or(|t| record_ms >= t)
            && self.lt_record_time.is_none_or(|t| record_ms < t)
            && any(&self.action, e.action.map(|a| a.as_str()))
            && any(&self.biz_step, e.biz_step.as_deref())
            && any(&self.disposition, e.disposition.as_deref())
            && any(&self.read_point, e.read_point.as_deref())
            && any(&self.biz_location, e.biz_location.as_deref())
            && (self.event_id.is_empty()
                || self.event_id.iter().any(|i| {
                    *i == stored.hash || stored.event["eventID"].as_str() == Some(i.as_str())
                }))
            && (self.matches.is_empty()
                || self.matches.iter().any(|(id, r)| {
                    let mut named = Vec::new();
                    if r & role::EPC != 0 {
                        named.extend(&e.epcs);
                    }
                    if r & role::PARENT != 0 {
                        named.extend(e.parent.iter());
                    }
                    if r & role::IO != 0 {
                        named.extend(e.inputs.iter().chain(&e.outputs));
                    }
                    if r & role::CLASS != 0 {
                        named.extend(e.quantities.iter().map(|q| &q.class));
                    }
                    named.contains(&id)
                }))
    }
}

/// Where a page resumes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    after: u64,
    time: Option<(i64, u64)>,
}

fn token_of(c: &Cursor) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn cursor_of(t: &str) -> Result<Cursor, SupplyError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| SupplyError::bad("nextPageToken is not a token this repository issued"))
}

impl Supply {
    /// Whether `actor` may see `stored`.
    pub fn may_see(
        &self,
        actor: &Actor,
        stored: &StoredEvent,
        e: &Event,
        snap: &carechain_storage::Snapshot,
    ) -> Result<bool, SupplyError> {
        let me = actor.organization;
        if stored.organization == me.did().to_string()
            || e.disposition.as_deref() == Some("recalled")
        {
            return Ok(true);
        }
        for id in e.all_ids() {
            if let Some(item) = carechain_state::supply_item(snap, &item_id(id))?
                && (item.commissioner == me
                    || item.custodian == me
                    || item.history.iter().any(|c| c.organization == me))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One page of `q`'s results for `actor`.
    pub fn query(
        &self,
        actor: &Actor,
        q: &Query,
        per_page: usize,
        token: Option<&str>,
        name: &str,
    ) -> Result<QueryPage, SupplyError> {
        let cursor = token.map(cursor_of).transpose()?;
        let snap = self.snapshot()?;
        let mut out = Vec::new();
        let mut after = cursor.as_ref().map_or(0, |c| c.after);
        let mut time_after = cursor.as_ref().and_then(|c| c.time);
        let by_time =
            q.matches.is_empty() && (q.ge_event_time.is_some() || q.lt_event_time.is_some());
        let mut exhausted = false;
        // Read candidates in chunks until the page is full.
        while out.len() < per_page && !exhausted {
            let chunk = (per_page * 2).clamp(64, 2_048);
            let seqs: Vec<u64> = if !q.matches.is_empty() {
                let mut all = BTreeSet::new();
                for (id, r) in &q.matches {
                    all.extend(self.store.by_identifier(&item_id(id).0, *r, after, chunk)?);
                }
                all.into_iter().take(chunk).collect()
            } else if by_time {
                let got = self.store.by_time(
                    q.ge_event_time.unwrap_or(i64::MIN),
                    q.lt_event_time.unwrap_or(i64::MAX),
                    time_after,
                    chunk,
                )?;
                if let Some(last) = got.last() {
                    time_after = Some(*last);
                }
                got.into_iter().map(|(_, s)| s).collect()
            } else {
                self.store.seqs_after(after, chunk)?
            };
            if seqs.len() < chunk {
                exhausted = true;
            }
            if seqs.is_empty() {
                break;
            }
            for seq in seqs {
                if !by_time {
                    after = seq;
                }
                if let Some((stored, e)) = self.selected(actor, q, seq, &snap)? {
                    out.push(stored);
                    if out.len() >= per_page {
                        if by_time {
                            // Resume after this event's (time, seq).
                            time_after = Some((e.time_ms, seq));
                        }
                        exhausted = false;
                        break;
                    }
                }
            }
        }
        let next = (!exhausted || out.len() >= per_page)
            .then(|| {
                token_of(&Cursor {
                    after,
                    time: time_after,
                })
            })
            .filter(|_| !out.is_empty());
        Ok(QueryPage {
            document: self.query_document(out, name),
            next,
        })
    }

    /// The event stored at `seq`, if `q` matches it and `actor` may see it.
    pub(crate) fn selected(
        &self,
        actor: &Actor,
        q: &Query,
        seq: u64,
        snap: &carechain_storage::Snapshot,
    ) -> Result<Option<(StoredEvent, Event)>, SupplyError> {
        let Some(stored) = self.store.event(seq)? else {
            return Ok(None);
        };
        let Ok(e) = Event::parse(&stored.event) else {
            return Ok(None);
        };
        let record_ms = stored.event["recordTime"]
            .as_str()
            .and_then(carechain_epcis::event::time_ms)
            .unwrap_or(0);
        let keep = q.matches(&e, &stored, record_ms) && self.may_see(actor, &stored, &e, snap)?;
        Ok(keep.then_some((stored, e)))
    }

    /// The event `id` (its own eventID or its hash) as a query document, if `actor` may see
    /// it.
    pub fn event_document(&self, actor: &Actor, id: &str) -> Result<Value, SupplyError> {
        let missing = || SupplyError::NotFound(format!("no event {id}"));
        let seq = self.store.by_event_id(id)?.ok_or_else(missing)?;
        let (stored, _) = self
            .selected(actor, &Query::default(), seq, &self.snapshot()?)?
            .ok_or_else(missing)?;
        Ok(self.query_document(vec![stored], "SimpleEventQuery"))
    }

    /// An EPCISQueryDocument of `events`, each with its anchor.
    pub fn query_document(&self, events: Vec<StoredEvent>, name: &str) -> Value {
        // The namespace prefixes of every capture the events came from, and ours.
        let mut prefixes = serde_json::Map::new();
        for s in &events {
            for c in s
                .context
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&s.context))
            {
                if let Value::Object(m) = c {
                    for (k, v) in m {
                        prefixes.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        prefixes.insert("carechain".into(), json!(NAMESPACE));
        // Events of one batch share their transaction and its inclusion: each read once.
        let snap = self.service.node().snapshot().ok();
        let mut anchors: std::collections::BTreeMap<String, (Option<String>, Option<Value>)> =
            Default::default();
        let list: Vec<Value> = events
            .into_iter()
            .map(|s| {
                let (tx, inclusion) = anchors
                    .entry(s.tx.clone())
                    .or_insert_with(|| {
                        (
                            snap.as_ref().and_then(|snap| tx_hex(snap, &s.tx)),
                            carechain_service::log_inclusion(self.service.node(), s.log_index),
                        )
                    })
                    .clone();
                with_anchor(s, tx, inclusion)
            })
            .collect();
        json!({
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", Value::Object(prefixes)],
            "type": "EPCISQueryDocument",
            "schemaVersion": "2.0",
            "creationDate": iso(carechain_node::now_ms() as i64),
            "epcisBody": {"queryResults": {
                "queryName": name,
                "carechain:ignoreFields": ["carechain:anchor"],
                "resultsBody": {"eventList": list},
            }},
        })
    }
}

/// The transaction `tx` (hex hash) as its canonical bytes (hex), if a durable block holds it.
fn tx_hex(snap: &carechain_storage::Snapshot, tx: &str) -> Option<String> {
    let h = carechain_crypto::Hash::from_hex(tx).ok()?;
    let loc = snap.tx_location(&h).ok()??;
    let block = snap.block(loc.height).ok()??;
    block
        .txs
        .get(loc.position as usize)
        .map(|t| hex::encode(carechain_types::encode(t)))
}

/// `s`'s event with its anchor: `carechain:anchor` = the transaction (hex), the event's index
/// in it, and the inclusion under the latest checkpoint.
fn with_anchor(s: StoredEvent, tx: Option<String>, inclusion: Option<Value>) -> Value {
    let mut ev = s.event;
    ev["carechain:anchor"] = json!({
        "context": s.context,
        "organization": s.organization,
        "tx_hash": s.tx,
        "tx": tx,
        "event_index": s.index,
        "inclusion": inclusion,
    });
    ev
}
