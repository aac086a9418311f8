//! The repository's own store (redb, `epcis.redb` in the node's data directory): captured
//! events as they were captured (with where their anchor is), indexed by record order, by
//! event hash and eventID, by every identifier they name and by event time; capture jobs;
//! named queries and subscriptions. Events are trade data, never health data, and are not
//! encrypted; their hashes are on the ledger. A failed write is fatal to the handle.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::error::SupplyError;

/// seq → the stored event (JSON, see [`StoredEvent`]).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// event hash digest → seq.
const BY_HASH: TableDefinition<&[u8], u64> = TableDefinition::new("by_hash");
/// eventID (the capturer's own, or the event hash URI) → seq.
const BY_EVENT_ID: TableDefinition<&str, u64> = TableDefinition::new("by_event_id");
/// (identifier id, seq) → how the event names it ([`Role`] bits).
const BY_EPC: TableDefinition<(&[u8], u64), u8> = TableDefinition::new("by_epc");
/// (event time ms, seq) → ().
const BY_TIME: TableDefinition<(i64, u64), ()> = TableDefinition::new("by_time");
/// capture id → the capture job (JSON).
const CAPTURES: TableDefinition<&str, &[u8]> = TableDefinition::new("captures");
/// named query → its definition (JSON).
const QUERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("queries");
/// subscription id → its definition and progress (JSON).
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// `next_seq` → the next event's seq; `followed` → the last block the follower read.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// event hash digest → an event on its way to the ledger (JSON [`NewEvent`]): written before
/// its batch is submitted, moved to `events` when the batch is applied (by the capture, or by
/// the chain follower after a restart), dropped when it is refused.
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// (GTIN, lot, item id) → (): every product commissioned on the ledger, by lot.
const LOTS: TableDefinition<(u64, &str, &[u8]), ()> = TableDefinition::new("lots");
/// (organization or patient did, alert seq) → the alert (JSON).
const ALERTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alerts");

/// How an event names an identifier.
pub mod role {
    /// In `epcList` or `childEPCs`.
    pub const EPC: u8 = 1;
    /// As `parentID`.
    pub const PARENT: u8 = 2;
    /// As an input or output of a transformation.
    pub const IO: u8 = 4;
    /// As a quantity's class.
    pub const CLASS: u8 = 8;
}

/// An event as stored.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredEvent {
    /// The event as captured (with `eventID` and `recordTime` set).
    pub event: Value,
    /// Its CBV 2.0 event hash.
    pub hash: String,
    /// The capturing organization (did).
    pub organization: String,
    /// The capture it came in.
    pub capture: String,
    /// The anchoring transaction (hex).
    pub tx: String,
    /// Its position among the transaction's events.
    pub index: u32,
    /// The transaction's log index.
    pub log_index: u64,
    /// The capture document's `@context` (its namespace prefixes name the event's
    /// extension fields, so the event hashes the same when returned).
    #[serde(default)]
    pub context: Value,
}

/// A new event to store.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NewEvent {
    /// What is stored.
    pub stored: StoredEvent,
    /// Its hash digest.
    pub digest: [u8; 32],
    /// Its event time.
    pub time_ms: i64,
    /// The identifiers it names, by id, with their roles.
    pub ids: Vec<([u8; 32], u8)>,
    /// The capturer's own eventID, when it is not the hash.
    pub own_id: Option<String>,
}

/// The repository store.
pub struct Store {
    db: Database,
    failed: AtomicBool,
}

fn json_of(b: &[u8]) -> Result<Value, SupplyError> {
    serde_json::from_slice(b).map_err(|e| SupplyError::Bad(format!("corrupt record: {e}")))
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, SupplyError> {
        let db = Database::create(path)?;
        let w = db.begin_write()?;
        {
            w.open_table(EVENTS)?;
            w.open_table(BY_HASH)?;
            w.open_table(BY_EVENT_ID)?;
            w.open_table(BY_EPC)?;
            w.open_table(BY_TIME)?;
            w.open_table(CAPTURES)?;
            w.open_table(QUERIES)?;
            w.open_table(SUBSCRIPTIONS)?;
            w.open_table(META)?;
            w.open_table(LOTS)?;
            w.open_table(ALERTS)?;
            w.open_table(PENDING)?;
        }
        w.commit()?;
        Ok(Store {
            db,
            failed: AtomicBool::new(false),
        })
    }

    fn check(&self) -> Result<(), SupplyError> {
        if self.failed.load(Ordering::SeqCst) {
            Err(SupplyError::Store(redb::Error::Corrupted(
                "an earlier write failed; reopen the node".into(),
            )))
        } else {
            Ok(())
        }
    }

    /// Runs a write transaction; a failure marks the handle failed.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, SupplyError>,
    ) -> Result<T, SupplyError> {
        self.check()?;
        let r = (|| {
            let w = self.db.begin_write()?;
            let out = f(&w)?;
            w.commit()?;
            Ok(out)
        })();
        if let Err(SupplyError::Store(_)) = &r {
            self.failed.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Which of `digests` are stored already.
    pub fn known(&self, digests: &[[u8; 32]]) -> Result<Vec<bool>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(BY_HASH)?;
        digests
            .iter()
            .map(|d| Ok(t.get(d.as_slice())?.is_some()))
            .collect()
    }

    /// Stores `events` (their seqs in order), skipping any whose hash is stored already.
    pub fn put_events(&self, events: Vec<NewEvent>) -> Result<Vec<u64>, SupplyError> {
        self.write(|w| {
            let mut meta = w.open_table(META)?;
            let mut next = meta.get("next_seq")?.map_or(1, |v| v.value());
            let mut ev = w.open_table(EVENTS)?;
            let mut by_hash = w.open_table(BY_HASH)?;
            let mut by_id = w.open_table(BY_EVENT_ID)?;
            let mut by_epc = w.open_table(BY_EPC)?;
            let mut by_time = w.open_table(BY_TIME)?;
            let mut pending = w.open_table(PENDING)?;
            let mut seqs = Vec::with_capacity(events.len());
            for e in events {
                pending.remove(e.digest.as_slice())?;
                if let Some(s) = by_hash.get(e.digest.as_slice())? {
                    seqs.push(s.value());
                    continue;
                }
                let seq = next;
                next += 1;
                let bytes = serde_json::to_vec(&e.stored)
                    .map_err(|e| SupplyError::bad(format!("unencodable event: {e}")))?;
                ev.insert(seq, bytes.as_slice())?;
                by_hash.insert(e.digest.as_slice(), seq)?;
                by_id.insert(e.stored.hash.as_str(), seq)?;
                if let Some(own) = &e.own_id {
                    by_id.insert(own.as_str(), seq)?;
                }
                for (id, roles) in &e.ids {
                    by_epc.insert((id.as_slice(), seq), *roles)?;
                }
                by_time.insert((e.time_ms, seq), ())?;
                seqs.push(seq);
            }
            meta.insert("next_seq", next)?;
            Ok(seqs)
        })
    }

    /// The event stored at `seq`.
    pub fn event(&self, seq: u64) -> Result<Option<StoredEvent>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        t.get(seq)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .map_err(|e| SupplyError::bad(format!("corrupt event: {e}")))
            })
            .transpose()
    }

    /// The seq of the event with `event_id` (its own id or its hash URI).
    pub fn by_event_id(&self, event_id: &str) -> Result<Option<u64>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        Ok(r.open_table(BY_EVENT_ID)?.get(event_id)?.map(|v| v.value()))
    }

    /// Events naming identifier `id` with some role in `roles`, after `after`, in record
    /// order, at most `limit`.
    pub fn by_identifier(
        &self,
        id: &[u8; 32],
        roles: u8,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(BY_EPC)?;
        let mut out = Vec::new();
        for item in t.range((id.as_slice(), after.saturating_add(1))..=(id.as_slice(), u64::MAX))? {
            let (k, v) = item?;
            if v.value() & roles != 0 {
                out.push(k.value().1);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Seqs after `after` in record order, at most `limit`.
    pub fn seqs_after(&self, after: u64, limit: usize) -> Result<Vec<u64>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let mut out = Vec::new();
        for item in t.range(after.saturating_add(1)..)? {
            out.push(item?.0.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Seqs of events with time in `[from, to)`, from `(time, seq)` cursor `after` on, in
    /// time order, at most `limit` (each with its time, for the next cursor).
    pub fn by_time(
        &self,
        from: i64,
        to: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<(i64, u64)>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(BY_TIME)?;
        let start = match after {
            Some((tm, s)) => (tm, s.saturating_add(1)),
            None => (from, 0),
        };
        let mut out = Vec::new();
        if start.0 >= to {
            return Ok(out);
        }
        for item in t.range(start..(to, 0))? {
            let (k, _) = item?;
            out.push(k.value());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The highest seq stored (0 when empty).
    pub fn last_seq(&self) -> Result<u64, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        Ok(r.open_table(META)?
            .get("next_seq")?
            .map_or(1, |v| v.value())
            - 1)
    }

    fn put_json(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        v: &Value,
    ) -> Result<(), SupplyError> {
        let bytes = serde_json::to_vec(v).map_err(|e| SupplyError::bad(e.to_string()))?;
        self.write(|w| {
            w.open_table(table)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    fn get_json(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Value>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(table)?;
        t.get(key)?.map(|v| json_of(v.value())).transpose()
    }

    fn list_json(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Value)>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), json_of(v.value())?));
        }
        Ok(out)
    }

    fn delete_json(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<bool, SupplyError> {
        self.write(|w| Ok(w.open_table(table)?.remove(key)?.is_some()))
    }

    /// Saves a capture job.
    pub fn put_capture(&self, id: &str, job: &Value) -> Result<(), SupplyError> {
        self.put_json(CAPTURES, id, job)
    }

    /// A capture job.
    pub fn capture(&self, id: &str) -> Result<Option<Value>, SupplyError> {
        self.get_json(CAPTURES, id)
    }

    /// Every capture job.
    pub fn captures(&self) -> Result<Vec<(String, Value)>, SupplyError> {
        self.list_json(CAPTURES)
    }

    /// Saves a named query.
    pub fn put_query(&self, name: &str, q: &Value) -> Result<(), SupplyError> {
        self.put_json(QUERIES, name, q)
    }

    /// A named query.
    pub fn query(&self, name: &str) -> Result<Option<Value>, SupplyError> {
        self.get_json(QUERIES, name)
    }

    /// Every named query.
    pub fn queries(&self) -> Result<Vec<(String, Value)>, SupplyError> {
        self.list_json(QUERIES)
    }

    /// Deletes a named query.
    pub fn delete_query(&self, name: &str) -> Result<bool, SupplyError> {
        self.delete_json(QUERIES, name)
    }

    /// Saves a subscription.
    pub fn put_subscription(&self, id: &str, s: &Value) -> Result<(), SupplyError> {
        self.put_json(SUBSCRIPTIONS, id, s)
    }

    /// Every subscription.
    pub fn subscriptions(&self) -> Result<Vec<(String, Value)>, SupplyError> {
        self.list_json(SUBSCRIPTIONS)
    }

    /// Deletes a subscription.
    pub fn delete_subscription(&self, id: &str) -> Result<bool, SupplyError> {
        self.delete_json(SUBSCRIPTIONS, id)
    }

    /// The last block the follower read.
    pub fn followed(&self) -> Result<u64, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        Ok(r.open_table(META)?
            .get("followed")?
            .map_or(0, |v| v.value()))
    }

    /// Records what one block said: products by lot, alerts by recipient; and that the
    /// block was read (one write transaction, so a crash re-reads the block whole).
    pub fn followed_block(
        &self,
        height: u64,
        lots: &[(u64, String, [u8; 32])],
        alerts: &[(String, Value)],
    ) -> Result<(), SupplyError> {
        self.write(|w| {
            let mut meta = w.open_table(META)?;
            let mut next = meta.get("next_alert")?.map_or(1, |v| v.value());
            {
                let mut t = w.open_table(LOTS)?;
                for (g, lot, id) in lots {
                    t.insert((*g, lot.as_str(), id.as_slice()), ())?;
                }
                let mut a = w.open_table(ALERTS)?;
                for (who, alert) in alerts {
                    let bytes =
                        serde_json::to_vec(alert).map_err(|e| SupplyError::bad(e.to_string()))?;
                    a.insert((who.as_str(), next), bytes.as_slice())?;
                    next += 1;
                }
            }
            meta.insert("next_alert", next)?;
            meta.insert("followed", height)?;
            Ok(())
        })
    }

    /// The products of a lot.
    pub fn lot(&self, gtin: u64, lot: &str) -> Result<Vec<[u8; 32]>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(LOTS)?;
        let lo: &[u8] = &[];
        let mut out = Vec::new();
        for item in t.range((gtin, lot, lo)..)? {
            let (k, _) = item?;
            let (g, l, id) = k.value();
            if g != gtin || l != lot {
                break;
            }
            let mut a = [0u8; 32];
            if id.len() == 32 {
                a.copy_from_slice(id);
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The newest alerts of `who` (a did), newest first, at most `limit`.
    pub fn alerts(&self, who: &str, limit: usize) -> Result<Vec<Value>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(ALERTS)?;
        let mut out = Vec::new();
        for item in t.range((who, 0)..=(who, u64::MAX))?.rev() {
            let (_, v) = item?;
            out.push(json_of(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Records events on their way to the ledger.
    pub fn put_pending(&self, events: &[NewEvent]) -> Result<(), SupplyError> {
        self.write(|w| {
            let mut t = w.open_table(PENDING)?;
            for e in events {
                let bytes = serde_json::to_vec(e).map_err(|e| SupplyError::bad(e.to_string()))?;
                t.insert(e.digest.as_slice(), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Drops events the ledger refused.
    pub fn drop_pending(&self, digests: &[[u8; 32]]) -> Result<(), SupplyError> {
        self.write(|w| {
            let mut t = w.open_table(PENDING)?;
            for d in digests {
                t.remove(d.as_slice())?;
            }
            Ok(())
        })
    }

    /// The event on its way to the ledger with hash `digest`, if any.
    pub fn pending(&self, digest: &[u8; 32]) -> Result<Option<NewEvent>, SupplyError> {
        self.check()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(PENDING)?;
        t.get(digest.as_slice())?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .map_err(|e| SupplyError::bad(format!("corrupt pending event: {e}")))
            })
            .transpose()
    }
}
