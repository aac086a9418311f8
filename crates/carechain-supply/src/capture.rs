//! `POST /capture`: an EPCISDocument (JSON/JSON-LD) checked at once (size, JSON, who may
//! capture, how many events), then captured in the background as a capture job: validated
//! against GS1's schema, each event hashed (CBV 2.0), read for what it does to custody, and
//! anchored in one ledger transaction signed by this node for the organization. With
//! `rollback` any error captures nothing (the transaction is atomic); with `proceed` the
//! events that fail are left out, each with its error. A replayed event (its hash already
//! stored) is not captured again.

use std::sync::Arc;

use carechain_crypto::{Hash, PublicKey};
use carechain_epcis::hash::json_event_hash;
use carechain_epcis::{Event, schema};
use carechain_types::{Outcome, Payload, RejectReason};
use serde_json::{Value, json};

use crate::custody::{Directory, item_id, supply_event};
use crate::store::{NewEvent, StoredEvent, role};
use crate::{Actor, Supply, SupplyError};

/// Most events one capture takes (`GS1-EPCIS-Capture-Limit`): one ledger transaction.
pub const CAPTURE_LIMIT: usize = 1_000;
/// Capture jobs run at once (each holds its document and signs one batch); more wait their
/// turn, still `running`.
pub const CONCURRENT_CAPTURES: usize = 4;
/// Largest capture document, in bytes (`GS1-EPCIS-Capture-File-Size-Limit`).
pub const MAX_CAPTURE_BYTES: usize = 4 * 1024 * 1024;

/// The syntax of a capture document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON or JSON-LD.
    Json,
    /// EPCIS 2.0 (or 1.x) XML, read into its JSON-LD form.
    Xml,
}

/// `GS1-Capture-Error-Behaviour`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Any error: nothing is captured.
    Rollback,
    /// Errors leave out their events only.
    Proceed,
}

impl Behaviour {
    /// From the header (default `rollback`; `all` is treated as `proceed`).
    pub fn parse(h: Option<&str>) -> Result<Behaviour, SupplyError> {
        match h.map(str::trim) {
            None | Some("rollback") => Ok(Behaviour::Rollback),
            Some("proceed" | "all") => Ok(Behaviour::Proceed),
            Some(other) => Err(SupplyError::bad(format!(
                "GS1-Capture-Error-Behaviour {other} is not rollback, proceed or all"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Behaviour::Rollback => "rollback",
            Behaviour::Proceed => "proceed",
        }
    }
}

fn now_iso() -> String {
    iso(carechain_node::now_ms() as i64)
}

/// `ms` as an RFC 3339 UTC time with milliseconds.
pub fn iso(ms: i64) -> String {
    carechain_epcis::hash::utc_iso(ms)
}

fn problem(index: Option<usize>, title: &str, detail: String) -> Value {
    json!({
        "type": "epcisException:ValidationException",
        "title": title,
        "status": 400,
        "detail": detail,
        "instance": index.map(|i| format!("/epcisBody/eventList/{i}")),
        "eventIndex": index,
    })
}

/// Resolves GLNs to organizations through the ledger's company prefixes.
struct StateDirectory<'a>(&'a carechain_storage::Snapshot);

impl Directory for StateDirectory<'_> {
    fn owner_of_gln(&self, gln: u64) -> Option<PublicKey> {
        carechain_state::gln_prefix_owner(self.0, gln)
            .ok()
            .flatten()
    }
}

/// One event on its way to the ledger.
#[derive(Clone)]
struct Pending {
    index: usize,
    event: Value,
    parsed: Event,
    digest: [u8; 32],
    hash: String,
}

impl Supply {
    /// Whether this node may sign supply transactions for `org` (it is the node the
    /// organization registered).
    pub fn captures_for(&self, org: &PublicKey) -> Result<bool, SupplyError> {
        let snap = self.snapshot()?;
        let node = self.service.node().ledger().node_key();
        Ok(carechain_state::node_of_organization(&snap, org)?.is_some_and(|n| n.node == node))
    }

    /// Checks a capture and starts it; its capture id.
    pub fn capture(
        self: &Arc<Self>,
        actor: &Actor,
        body: &[u8],
        format: Format,
        behaviour: Behaviour,
    ) -> Result<String, SupplyError> {
        if body.len() > MAX_CAPTURE_BYTES {
            return Err(SupplyError::TooLarge(format!(
                "a capture is at most {MAX_CAPTURE_BYTES} bytes"
            )));
        }
        let (doc, xml_hashes): (Value, Option<Vec<String>>) = match format {
            Format::Json => (
                serde_json::from_slice(body)
                    .map_err(|e| SupplyError::bad(format!("the document is not JSON: {e}")))?,
                None,
            ),
            Format::Xml => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| SupplyError::bad("the XML document is not UTF-8"))?;
                let (doc, hashes) = carechain_epcis::xml::xml_to_json_with_hashes(text)
                    .map_err(|e| SupplyError::bad(e.to_string()))?;
                (doc, Some(hashes))
            }
        };
        let n = carechain_epcis::hash::json_events(&doc)
            .map_err(|e| SupplyError::bad(e.to_string()))?
            .len();
        if n > CAPTURE_LIMIT {
            return Err(SupplyError::TooLarge(format!(
                "{n} events: a capture takes at most {CAPTURE_LIMIT}"
            )));
        }
        if !self.captures_for(&actor.organization)? {
            return Err(SupplyError::Forbidden(format!(
                "this node does not capture for {}: the organization registers it first \
                 (register_node)",
                actor.organization.did()
            )));
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| SupplyError::bad("no randomness for a capture id"))?;
        let id = hex::encode(id);
        let job = json!({
            "captureID": id, "createdAt": now_iso(), "running": true, "success": true,
            "captureErrorBehaviour": behaviour.as_str(), "errors": [],
            "organization": actor.organization.did().to_string(),
        });
        self.store.put_capture(&id, &job)?;
        let me = self.clone();
        let (actor, job_id) = (actor.clone(), id.clone());
        std::thread::Builder::new()
            .name("epcis-capture".into())
            .spawn(move || {
                let done = {
                    let (n, cv) = &me.capturing;
                    let mut running = n.lock();
                    while *running >= CONCURRENT_CAPTURES {
                        cv.wait(&mut running);
                    }
                    *running += 1;
                    drop(running);
                    let done = me.run_checked(&actor, &doc, behaviour, job, xml_hashes.as_deref());
                    *n.lock() -= 1;
                    cv.notify_one();
                    done
                };
                if let Err(e) = done {
                    tracing::error!(error = %e, capture = %job_id, "capture failed");
                    let failed = json!({
                        "captureID": job_id, "running": false, "success": false,
                        "finishedAt": now_iso(), "captureErrorBehaviour": behaviour.as_str(),
                        "errors": [{"type": "epcisException:ImplementationException",
                                    "title": "the capture could not be completed",
                                    "status": 500, "detail": e.to_string()}],
                    });
                    let _ = me.store.put_capture(&job_id, &failed);
                }
            })
            .map_err(|_| SupplyError::bad("cannot start the capture"))?;
        Ok(id)
    }

    /// Captures `doc` now (the capture job's body); the finished job.
    pub fn run(
        &self,
        actor: &Actor,
        doc: &Value,
        behaviour: Behaviour,
        job: Value,
    ) -> Result<Value, SupplyError> {
        self.run_checked(actor, doc, behaviour, job, None)
    }

    /// [`Supply::run`], each event's hash checked against `xml_hashes` (the hashes of the XML
    /// document `doc` was read from): an event whose JSON-LD form cannot say what its XML
    /// says is refused rather than given another identity.
    fn run_checked(
        &self,
        actor: &Actor,
        doc: &Value,
        behaviour: Behaviour,
        mut job: Value,
        xml_hashes: Option<&[String]>,
    ) -> Result<Value, SupplyError> {
        let id = job["captureID"].as_str().unwrap_or_default().to_string();
        let mut errors = Vec::new();
        let violations = schema::validate(doc, 100);
        let doc_level = violations.iter().any(|v| v.event.is_none());
        for v in &violations {
            errors.push(problem(
                v.event,
                "schema violation",
                format!("{}: {}", v.path, v.message),
            ));
        }
        let events =
            carechain_epcis::hash::json_events(doc).map_err(|e| SupplyError::bad(e.to_string()))?;
        let context = doc.get("@context");
        let snap = self.snapshot()?;
        let dir = StateDirectory(&snap);
        let mut pending = Vec::new();
        let mut steps = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut duplicates = 0usize;
        if !doc_level {
            for (i, ev) in events.iter().enumerate() {
                if violations.iter().any(|v| v.event == Some(i)) {
                    continue;
                }
                let parsed = match Event::parse(ev) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(problem(Some(i), "unreadable event", e.to_string()));
                        continue;
                    }
                };
                let hash = json_event_hash(ev, context);
                if let Some(want) = xml_hashes.and_then(|h| h.get(i))
                    && *want != hash
                {
                    errors.push(problem(
                        Some(i),
                        "event refused",
                        "its JSON-LD form does not hash as its XML does (a user extension whose name ends in List): capture it as JSON-LD".into(),
                    ));
                    continue;
                }
                let digest = digest_of(&hash);
                if !seen.insert(digest) {
                    duplicates += 1;
                    continue;
                }
                match supply_event(&parsed, Hash(digest), &dir) {
                    Ok(s) => {
                        steps.push(s);
                        pending.push(Pending {
                            index: i,
                            event: (*ev).clone(),
                            parsed,
                            digest,
                            hash,
                        });
                    }
                    Err(e) => errors.push(problem(Some(i), "event refused", e)),
                }
            }
        }
        // Replays: events stored already change nothing.
        let known = self
            .store
            .known(&pending.iter().map(|p| p.digest).collect::<Vec<_>>())?;
        let mut fresh = Vec::new();
        let mut fresh_steps = Vec::new();
        for ((p, s), k) in pending.into_iter().zip(steps).zip(known) {
            if k {
                duplicates += 1;
            } else {
                fresh.push(p);
                fresh_steps.push(s);
            }
        }
        let abort = behaviour == Behaviour::Rollback && !errors.is_empty() || doc_level;
        let mut captured = Vec::new();
        let mut tx_info = Value::Null;
        if !abort && !fresh.is_empty() {
            // Written first: if the node stops after the batch is applied and before the events
            // are stored, the chain follower stores them from the block.
            let record_time = now_iso();
            let unanchored: Vec<NewEvent> = fresh
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let at = Anchored {
                        capture: &id,
                        tx: &Hash([0; 32]),
                        index: k as u32,
                        log_index: 0,
                        record_time: &record_time,
                        context: doc.get("@context"),
                    };
                    new_event(p.clone(), actor, &at)
                })
                .collect();
            self.store.put_pending(&unanchored)?;
            let all_digests: Vec<[u8; 32]> = fresh.iter().map(|p| p.digest).collect();
            let payload = Payload::Supply {
                organization: actor.organization,
                events: fresh_steps,
                atomic: behaviour == Behaviour::Rollback,
            };
            let tx = self.service.submit_node_tx(payload)?;
            let receipt = tx.receipt().clone();
            tx_info = json!({"tx": tx.hash.to_hex(), "height": tx.block.header.height});
            match receipt.outcome {
                Outcome::Applied { log_index } => {
                    let skipped = carechain_state::skipped_events(&receipt);
                    let mut new = Vec::new();
                    let mut refused = Vec::new();
                    for (k, p) in fresh.into_iter().enumerate() {
                        if let Some((_, why)) = skipped.iter().find(|(i, _)| *i as usize == k) {
                            refused.push(p.digest);
                            errors.push(problem(
                                Some(p.index),
                                "refused by the ledger",
                                format!("{}: {}", why.code(), why.message()),
                            ));
                            continue;
                        }
                        captured.push(p.hash.clone());
                        let at = Anchored {
                            capture: &id,
                            tx: &tx.hash,
                            index: k as u32,
                            log_index,
                            record_time: &record_time,
                            context: doc.get("@context"),
                        };
                        new.push(new_event(p, actor, &at));
                    }
                    self.store.put_events(new)?;
                    self.store.drop_pending(&refused)?;
                }
                Outcome::Rejected(RejectReason::SupplyEvent { index, reason }) => {
                    self.store.drop_pending(&all_digests)?;
                    let at = fresh.get(index as usize).map(|p| p.index);
                    errors.push(problem(
                        at,
                        "refused by the ledger",
                        format!("{}: {}", reason.code(), reason.message()),
                    ));
                }
                Outcome::Rejected(r) => {
                    self.store.drop_pending(&all_digests)?;
                    errors.push(problem(
                        None,
                        "refused by the ledger",
                        format!("{}: {}", r.code(), r.message()),
                    ));
                }
            }
        }
        job["running"] = json!(false);
        job["success"] = json!(errors.is_empty());
        job["finishedAt"] = json!(now_iso());
        job["errors"] = json!(errors);
        job["captured"] = json!(captured.len());
        job["duplicates"] = json!(duplicates);
        job["eventIDs"] = json!(captured);
        job["ledger"] = tx_info;
        self.store.put_capture(&id, &job)?;
        self.deliveries.wake();
        Ok(job)
    }

    /// Capture jobs a restart interrupted (still `running` in the store) end as failed. Their
    /// events that the ledger applied are stored by the chain follower from the block (they
    /// were written as pending before their batch was submitted).
    pub(crate) fn interrupted_captures(&self) -> Result<(), SupplyError> {
        for (id, mut job) in self.store.captures()? {
            if job["running"] == true {
                job["running"] = json!(false);
                job["success"] = json!(false);
                job["finishedAt"] = json!(now_iso());
                job["errors"] = json!([{"type": "epcisException:ImplementationException",
                    "title": "interrupted", "status": 500,
                    "detail": "the node restarted during this capture: events the ledger applied are stored (query them); capture the document again to be sure (a replay changes nothing)"}]);
                self.store.put_capture(&id, &job)?;
            }
        }
        Ok(())
    }

    /// A capture job (only the capturing organization's).
    pub fn capture_job(&self, actor: &Actor, id: &str) -> Result<Value, SupplyError> {
        let job = self
            .store
            .capture(id)?
            .ok_or_else(|| SupplyError::NotFound(format!("no capture {id}")))?;
        if job["organization"] != actor.organization.did().to_string() {
            return Err(SupplyError::NotFound(format!("no capture {id}")));
        }
        Ok(job)
    }
}

/// The SHA-256 digest of an `ni:///sha-256;…` event hash.
pub fn digest_of(ni: &str) -> [u8; 32] {
    let hex_part = ni
        .strip_prefix("ni:///sha-256;")
        .and_then(|r| r.split('?').next())
        .unwrap_or_default();
    let mut d = [0u8; 32];
    let _ = hex::decode_to_slice(hex_part, &mut d);
    d
}

/// Where a captured event was anchored.
struct Anchored<'a> {
    capture: &'a str,
    tx: &'a Hash,
    index: u32,
    log_index: u64,
    record_time: &'a str,
    context: Option<&'a Value>,
}

fn new_event(p: Pending, actor: &Actor, at: &Anchored<'_>) -> NewEvent {
    let (capture, tx, index, log_index, record_time) =
        (at.capture, at.tx, at.index, at.log_index, at.record_time);
    let mut event = p.event;
    let own_id = event["eventID"]
        .as_str()
        .map(str::to_string)
        .filter(|i| *i != p.hash);
    if event.get("eventID").is_none() {
        event["eventID"] = json!(p.hash);
    }
    event["recordTime"] = json!(record_time);
    let mut ids: Vec<([u8; 32], u8)> = Vec::new();
    let mut add = |s: &str, r: u8| {
        let id = item_id(s).0;
        match ids.iter_mut().find(|(i, _)| *i == id) {
            Some((_, roles)) => *roles |= r,
            None => ids.push((id, r)),
        }
    };
    for e in &p.parsed.epcs {
        add(e, role::EPC);
    }
    if let Some(pa) = &p.parsed.parent {
        add(pa, role::PARENT);
    }
    for e in p.parsed.inputs.iter().chain(&p.parsed.outputs) {
        add(e, role::IO);
    }
    for q in &p.parsed.quantities {
        add(&q.class, role::CLASS);
    }
    NewEvent {
        digest: p.digest,
        time_ms: p.parsed.time_ms,
        ids,
        own_id,
        stored: StoredEvent {
            event,
            hash: p.hash,
            organization: actor.organization.did().to_string(),
            capture: capture.to_string(),
            tx: tx.to_hex(),
            index,
            log_index,
            context: at.context.cloned().unwrap_or(Value::Null),
        },
    }
}
