//! A typed view of one EPCIS 2.0 event (JSON/JSON-LD): what a repository indexes and what
//! custody rules read. Identifiers are held as constrained canonical Digital Links,
//! vocabulary as its bare CBV term (`shipping`, `in_transit`), times as UTC milliseconds.

use serde_json::Value;

use crate::hash::{canonical_time, days_from_civil};
use crate::link::normalise;

/// The five EPCIS event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Things observed, created or destroyed.
    Object,
    /// Children packed into or out of a parent.
    Aggregation,
    /// Things tied to a business transaction.
    Transaction,
    /// Inputs turned into outputs.
    Transformation,
    /// Assets associated with a parent.
    Association,
}

impl EventType {
    /// As JSON writes it (`ObjectEvent`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Object => "ObjectEvent",
            EventType::Aggregation => "AggregationEvent",
            EventType::Transaction => "TransactionEvent",
            EventType::Transformation => "TransformationEvent",
            EventType::Association => "AssociationEvent",
        }
    }

    /// By its JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ObjectEvent" => EventType::Object,
            "AggregationEvent" => EventType::Aggregation,
            "TransactionEvent" => EventType::Transaction,
            "TransformationEvent" => EventType::Transformation,
            "AssociationEvent" => EventType::Association,
            _ => return None,
        })
    }
}

/// `ADD`, `OBSERVE` or `DELETE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Created or added.
    Add,
    /// Seen.
    Observe,
    /// Destroyed or removed.
    Delete,
}

impl Action {
    /// As EPCIS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "ADD",
            Action::Observe => "OBSERVE",
            Action::Delete => "DELETE",
        }
    }

    /// By its EPCIS name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Action::Add,
            "OBSERVE" => Action::Observe,
            "DELETE" => Action::Delete,
            _ => return None,
        })
    }
}

/// A quantity of a class of things (an LGTIN: a GTIN's lot).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    /// The class, as a canonical Digital Link.
    pub class: String,
    /// How many, if said.
    pub quantity: Option<f64>,
}

/// A source or destination: its CBV type (`owning_party`, `possessing_party`, `location`)
/// and identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// The bare CBV type.
    pub kind: String,
    /// The identifier, as a canonical Digital Link when it is a GS1 key.
    pub id: String,
}

/// Why an event cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A required field is missing or of the wrong type.
    #[error("{0} is missing or malformed")]
    Field(&'static str),
    /// An identifier is not a valid EPC URN or Digital Link.
    #[error("{0} is not a valid EPC URN or GS1 Digital Link")]
    Identifier(String),
}

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Its type.
    pub kind: EventType,
    /// When (UTC ms).
    pub time_ms: i64,
    /// `eventTimeZoneOffset` as given.
    pub zone: String,
    /// Its action (absent for transformations).
    pub action: Option<Action>,
    /// Its bare business step (`commissioning`).
    pub biz_step: Option<String>,
    /// Its bare disposition (`active`).
    pub disposition: Option<String>,
    /// `epcList` (and the `childEPCs` of aggregations), canonical.
    pub epcs: Vec<String>,
    /// `parentID`, canonical.
    pub parent: Option<String>,
    /// `inputEPCList` and `outputEPCList`, canonical.
    pub inputs: Vec<String>,
    /// Outputs of a transformation.
    pub outputs: Vec<String>,
    /// Quantities (every quantity list).
    pub quantities: Vec<Quantity>,
    /// `readPoint.id`, canonical.
    pub read_point: Option<String>,
    /// `bizLocation.id`, canonical.
    pub biz_location: Option<String>,
    /// `sourceList`.
    pub sources: Vec<Party>,
    /// `destinationList`.
    pub destinations: Vec<Party>,
    /// `ilmd` lot number (`cbvmda:lotNumber`).
    pub lot: Option<String>,
    /// `ilmd` expiry (`cbvmda:itemExpirationDate`) as YYYYMMDD.
    pub expiry: Option<u32>,
    /// The event's own `eventID`, if it has one.
    pub event_id: Option<String>,
}

/// A vocabulary value's bare term: the part after `BizStep-`/`Disp-`/`SDT-` of a CBV Web URI
/// or after the last `:` of a CBV URN; a bare term as is.
pub fn bare_term(v: &str) -> String {
    if let Some(rest) = v.strip_prefix("https://ref.gs1.org/cbv/") {
        return rest.split_once('-').map_or(rest, |(_, t)| t).to_string();
    }
    if let Some(rest) = v.strip_prefix("urn:epcglobal:cbv:") {
        return rest.rsplit(':').next().unwrap_or(rest).to_string();
    }
    v.strip_prefix("cbv:")
        .map(|r| r.split_once('-').map_or(r, |(_, t)| t))
        .unwrap_or(v)
        .to_string()
}

fn id(v: &Value, what: &'static str) -> Result<String, EventError> {
    let s = v.as_str().ok_or(EventError::Field(what))?;
    normalise(s).ok_or_else(|| EventError::Identifier(s.to_string()))
}

/// An identifier that may be a GS1 key (canonicalised) or any other URI (kept).
fn any_id(v: &Value, what: &'static str) -> Result<String, EventError> {
    let s = v.as_str().ok_or(EventError::Field(what))?;
    if s.starts_with("urn:epc:") || s.starts_with("https://id.gs1.org/") {
        return normalise(s).ok_or_else(|| EventError::Identifier(s.to_string()));
    }
    Ok(normalise(s).unwrap_or_else(|| s.to_string()))
}

fn ids(v: Option<&Value>, what: &'static str) -> Result<Vec<String>, EventError> {
    match v {
        None => Ok(vec![]),
        Some(Value::Array(a)) => a.iter().map(|e| id(e, what)).collect(),
        Some(_) => Err(EventError::Field(what)),
    }
}

fn parties(v: Option<&Value>, key: &str, what: &'static str) -> Result<Vec<Party>, EventError> {
    let Some(list) = v else { return Ok(vec![]) };
    list.as_array()
        .ok_or(EventError::Field(what))?
        .iter()
        .map(|p| {
            Ok(Party {
                kind: bare_term(p["type"].as_str().ok_or(EventError::Field(what))?),
                id: any_id(&p[key], what)?,
            })
        })
        .collect()
}

/// UTC milliseconds of an ISO 8601 date-time.
pub fn time_ms(s: &str) -> Option<i64> {
    let t = canonical_time(s)?;
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    Some(((days * 24 + n(11..13)?) * 60 + n(14..16)?) * 60_000 + n(17..19)? * 1000 + n(20..23)?)
}

/// `2027-12-31` as 20271231.
pub fn date_number(s: &str) -> Option<u32> {
    let d: String = s.get(..10)?.chars().filter(|c| *c != '-').collect();
    (d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

impl Event {
    /// Reads an event.
    pub fn parse(v: &Value) -> Result<Event, EventError> {
        let kind = v["type"]
            .as_str()
            .and_then(EventType::parse)
            .ok_or(EventError::Field("type"))?;
        let time_ms = v["eventTime"]
            .as_str()
            .and_then(time_ms)
            .ok_or(EventError::Field("eventTime"))?;
        let mut epcs = ids(v.get("epcList"), "epcList")?;
        epcs.extend(ids(v.get("childEPCs"), "childEPCs")?);
        let mut quantities = Vec::new();
        for list in [
            "quantityList",
            "childQuantityList",
            "inputQuantityList",
            "outputQuantityList",
        ] {
            for q in v[list].as_array().into_iter().flatten() {
                quantities.push(Quantity {
                    class: id(&q["epcClass"], "epcClass")?,
                    quantity: q["quantity"].as_f64(),
                });
            }
        }
        let ilmd = &v["ilmd"];
        let ilmd_field = |name: &str| {
            ilmd.as_object().and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.rsplit([':', '/', '#']).next() == Some(name))
                    .and_then(|(_, v)| v.as_str())
            })
        };
        Ok(Event {
            kind,
            time_ms,
            zone: v["eventTimeZoneOffset"]
                .as_str()
                .ok_or(EventError::Field("eventTimeZoneOffset"))?
                .to_string(),
            action: match v.get("action") {
                None => None,
                Some(a) => Some(
                    a.as_str()
                        .and_then(Action::parse)
                        .ok_or(EventError::Field("action"))?,
                ),
            },
            biz_step: v["bizStep"].as_str().map(bare_term),
            disposition: v["disposition"].as_str().map(bare_term),
            epcs,
            parent: v.get("parentID").map(|p| id(p, "parentID")).transpose()?,
            inputs: ids(v.get("inputEPCList"), "inputEPCList")?,
            outputs: ids(v.get("outputEPCList"), "outputEPCList")?,
            quantities,
            read_point: v
                .get("readPoint")
                .map(|p| any_id(&p["id"], "readPoint"))
                .transpose()?,
            biz_location: v
                .get("bizLocation")
                .map(|p| any_id(&p["id"], "bizLocation"))
                .transpose()?,
            sources: parties(v.get("sourceList"), "source", "sourceList")?,
            destinations: parties(v.get("destinationList"), "destination", "destinationList")?,
            lot: ilmd_field("lotNumber").map(str::to_string),
            expiry: ilmd_field("itemExpirationDate").and_then(date_number),
            event_id: v["eventID"].as_str().map(str::to_string),
        })
    }

    /// Every identifier the event names (EPCs, parent, inputs, outputs, classes).
    pub fn all_ids(&self) -> impl Iterator<Item = &str> {
        self.epcs
            .iter()
            .chain(self.parent.iter())
            .chain(&self.inputs)
            .chain(&self.outputs)
            .chain(self.quantities.iter().map(|q| &q.class))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_terms() {
        assert_eq!(time_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(time_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            bare_term("https://ref.gs1.org/cbv/BizStep-shipping"),
            "shipping"
        );
        assert_eq!(bare_term("urn:epcglobal:cbv:disp:in_transit"), "in_transit");
        assert_eq!(bare_term("receiving"), "receiving");
        assert_eq!(date_number("2027-12-31"), Some(20271231));
    }
}
