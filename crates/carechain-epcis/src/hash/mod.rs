//! The CBV 2.0 EPCIS event hash (`ni:///sha-256;…?ver=CBV2.0`): a canonical pre-hash string
//! of an event's fields in GS1's property order, then SHA-256. One event gives one hash
//! whichever syntax (JSON/JSON-LD or XML) and whichever order of fields or list items it was
//! written in, and whether its identifiers were EPC URNs or Digital Links.
//!
//! The algorithm follows GS1's reference implementation (PyPI `epcis-event-hash-generator`)
//! wherever the specification leaves a choice, and is tested against its vectors.

mod canon;
mod tree;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use canon::{days_from_civil, timestamp as canonical_time, utc_iso};
use tree::Node;

/// Why a document's events could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Not JSON.
    #[error("not a JSON document: {0}")]
    Json(#[from] serde_json::Error),
    /// Not an EPCIS XML document.
    #[error(transparent)]
    Xml(#[from] crate::xml::XmlError),
    /// Neither an `epcisBody` with events nor an XML `EventList`.
    #[error("the document holds no event list")]
    NoEvents,
}

/// The order of a field's children in the pre-hash string.
struct Prop {
    name: &'static str,
    children: &'static [Prop],
}

const fn leaf(name: &'static str) -> Prop {
    Prop {
        name,
        children: &[],
    }
}

const QUANTITY: &[Prop] = &[leaf("epcClass"), leaf("quantity"), leaf("uom")];
const EPC: &[Prop] = &[leaf("epc")];
const ID: &[Prop] = &[leaf("id")];

/// The canonical property order of every event type.
const ORDER: &[Prop] = &[
    leaf("eventTime"),
    leaf("eventTimeZoneOffset"),
    leaf("certificationInfo"),
    leaf("parentID"),
    Prop {
        name: "epcList",
        children: EPC,
    },
    Prop {
        name: "inputEPCList",
        children: EPC,
    },
    Prop {
        name: "childEPCs",
        children: EPC,
    },
    Prop {
        name: "quantityList",
        children: &[Prop {
            name: "quantityElement",
            children: QUANTITY,
        }],
    },
    Prop {
        name: "childQuantityList",
        children: &[Prop {
            name: "quantityElement",
            children: QUANTITY,
        }],
    },
    Prop {
        name: "inputQuantityList",
        children: &[Prop {
            name: "quantityElement",
            children: QUANTITY,
        }],
    },
    Prop {
        name: "outputEPCList",
        children: EPC,
    },
    Prop {
        name: "outputQuantityList",
        children: &[Prop {
            name: "quantityElement",
            children: QUANTITY,
        }],
    },
    leaf("action"),
    leaf("transformationID"),
    leaf("bizStep"),
    leaf("disposition"),
    Prop {
        name: "persistentDisposition",
        children: &[leaf("set"), leaf("unset")],
    },
    Prop {
        name: "readPoint",
        children: ID,
    },
    Prop {
        name: "bizLocation",
        children: ID,
    },
    Prop {
        name: "sensorElementList",
        children: &[Prop {
            name: "sensorElement",
            children: &[
                Prop {
                    name: "sensorMetadata",
                    children: &[
                        leaf("time"),
                        leaf("startTime"),
                        leaf("endTime"),
                        leaf("deviceID"),
                        leaf("deviceMetadata"),
                        leaf("rawData"),
                        leaf("dataProcessingMethod"),
                        leaf("bizRules"),
                    ],
                },
                Prop {
                    name: "sensorReport",
                    children: &[
                        leaf("type"),
                        leaf("exception"),
                        leaf("deviceID"),
                        leaf("deviceMetadata"),
                        leaf("rawData"),
                        leaf("dataProcessingMethod"),
                        leaf("time"),
                        leaf("microorganism"),
                        leaf("chemicalSubstance"),
                        leaf("value"),
                        leaf("component"),
                        leaf("stringValue"),
                        leaf("booleanValue"),
                        leaf("hexBinaryValue"),
                        leaf("uriValue"),
                        leaf("minValue"),
                        leaf("maxValue"),
                        leaf("meanValue"),
                        leaf("sDev"),
                        leaf("percRank"),
                        leaf("percValue"),
                        leaf("uom"),
                        leaf("coordinateReferenceSystem"),
                    ],
                },
            ],
        }],
    },
];

/// Top-level fields that are not part of an event's identity.
const IGNORED: [&str; 4] = ["recordTime", "eventID", "type", "errorDeclaration"];

/// A field's name and value (time fields in UTC milliseconds) followed by its ordered
/// children; consumes what it writes from `node`.
fn field(node: &mut Node, children: &[Prop]) -> String {
    let inner = if children.is_empty() {
        String::new()
    } else {
        ordered(&mut node.children, children)
    };
    let text = node.text.trim();
    let mut value = String::new();
    if !text.is_empty() {
        let lower = node.name.to_ascii_lowercase();
        value = if lower.contains("time") && !lower.contains("offset") {
            canon::timestamp(text).unwrap_or_else(|| text.to_string())
        } else {
            canon::value(text)
        };
    }
    if value.is_empty() && inner.is_empty() {
        return String::new();
    }
    let eq = if value.is_empty() { "" } else { "=" };
    format!("{}{eq}{value}{inner}", node.name)
}

/// The children of `nodes` named in `order`, in that order (each name's values sorted), then
/// the user extensions of a nested field; removes what it wrote.
fn ordered(nodes: &mut Vec<Node>, order: &[Prop]) -> String {
    let extensions = take_extensions(nodes);
    let mut out = String::new();
    for prop in order {
        let mut values = Vec::new();
        let mut i = 0;
        while i < nodes.len() {
            if nodes[i].pair || nodes[i].name != prop.name {
                i += 1;
                continue;
            }
            let s = field(&mut nodes[i], prop.children);
            if !s.is_empty() {
                values.push(s);
            }
            if nodes[i].children.is_empty() {
                nodes.remove(i);
            } else {
                i += 1;
            }
        }
        values.sort();
        out.extend(values);
    }
    if !extensions.is_empty() {
        out.push_str(&generic(&extensions));
    }
    out
}

/// User extensions (`{namespace/}name`) inside a standard field: removed from `nodes` to be
/// written at the end of their field. At event level (a child is `eventTime` or `action`)
/// they stay, to be written after every standard field.
fn take_extensions(nodes: &mut Vec<Node>) -> Vec<Node> {
    if nodes.len() <= 1
        || nodes
            .iter()
            .any(|n| !n.pair && (n.name.contains("eventTime") || n.name.contains("action")))
    {
        return Vec::new();
    }
    let (ext, keep): (Vec<Node>, Vec<Node>) = std::mem::take(nodes)
        .into_iter()
        .partition(|n| !n.pair && n.name.contains('{') && n.name.contains("/}"));
    *nodes = keep;
    ext
}

/// Fields outside the property order: name, value and children, sorted (but a pair keeps
/// type before value).
fn generic(nodes: &[Node]) -> String {
    let mut values: Vec<String> = nodes
        .iter()
        .map(|n| {
            if n.pair {
                generic(&n.children)
            } else {
                let text = n.text.trim();
                let value = if text.is_empty() {
                    String::new()
                } else {
                    format!("={}", canon::value(text))
                };
                format!("{}{value}{}", n.name, generic(&n.children))
            }
        })
        .collect();
    let keep_order = nodes
        .iter()
        .any(|n| !n.pair && ["bizTransaction", "source", "destination"].contains(&n.name.as_str()));
    if values.len() > 1 && !keep_order {
        values.sort();
    }
    values.concat()
}

fn prehash_of(mut event: Node, ignored: &[String]) -> String {
    event.children.retain(|c| !ignored.contains(&c.name));
    let mut out = format!("eventType={}", event.name);
    out.push_str(&ordered(&mut event.children, ORDER));
    let rest: Vec<Node> = event
        .children
        .into_iter()
        .filter(|c| c.pair || !IGNORED.contains(&c.name.as_str()))
        .collect();
    out.push_str(&generic(&rest));
    out
}

/// The `ni:` URI of a pre-hash string.
pub fn hash_of_prehash(prehash: &str) -> String {
    format!(
        "ni:///sha-256;{}?ver=CBV2.0",
        hex::encode(Sha256::digest(prehash.as_bytes()))
    )
}

/// The pre-hash string of one JSON event, with the namespaces its document declares.
pub fn json_event_prehash(event: &Value, context: Option<&Value>) -> String {
    prehash_of(
        tree::from_json(event, &tree::context_namespaces(context)),
        &[],
    )
}

/// Fields a (query) document says are not part of its events' identity (a repository's own
/// additions, such as its `captureID`): the names listed under `…:ignoreFields`, expanded.
fn json_ignored(doc: &Value, ns: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![doc];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    if k == "ignoreFields" || k.ends_with(":ignoreFields") {
                        for name in c.as_array().into_iter().flatten().filter_map(Value::as_str) {
                            out.push(match name.split_once(':') {
                                Some((p, local)) if ns.contains_key(p) => {
                                    format!("{{{}}}{local}", ns[p])
                                }
                                _ => name.to_string(),
                            });
                        }
                    } else if k != "eventList" {
                        stack.push(c);
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// The event hash of one JSON event.
pub fn json_event_hash(event: &Value, context: Option<&Value>) -> String {
    hash_of_prehash(&json_event_prehash(event, context))
}

/// The events of a JSON or JSON-LD EPCIS (query) document.
pub fn json_events(doc: &Value) -> Result<Vec<&Value>, HashError> {
    let body = doc.get("epcisBody").ok_or(HashError::NoEvents)?;
    let list = body
        .get("eventList")
        .or_else(|| body.pointer("/queryResults/resultsBody/eventList"));
    match (list, body.get("event")) {
        (Some(Value::Array(events)), _) => Ok(events.iter().collect()),
        (_, Some(event)) => Ok(vec![event]),
        _ => Err(HashError::NoEvents),
    }
}

/// The pre-hash strings of every event of a JSON or JSON-LD document, in document order.
pub fn json_document_prehashes(text: &str) -> Result<Vec<String>, HashError> {
    let doc: Value = serde_json::from_str(text)?;
    let ns = tree::context_namespaces(doc.get("@context"));
    let ignored = json_ignored(&doc, &ns);
    Ok(json_events(&doc)?
        .into_iter()
        .map(|e| prehash_of(tree::from_json(e, &ns), &ignored))
        .collect())
}

/// The pre-hash strings of every event of an EPCIS 2.0 (or 1.x) XML document.
pub fn xml_document_prehashes(text: &str) -> Result<Vec<String>, HashError> {
    Ok(xml_prehashes_of(&crate::xml::parse(text)?)?)
}

/// The pre-hash strings of every event of a parsed XML document.
pub(crate) fn xml_prehashes_of(
    doc: &roxmltree::Document<'_>,
) -> Result<Vec<String>, crate::xml::XmlError> {
    let list = crate::xml::event_list(doc)?;
    let ignored: Vec<String> = crate::xml::ignore_lists(doc)
        .flat_map(|n| n.children().filter(roxmltree::Node::is_element))
        .map(|f| match f.tag_name().namespace() {
            Some(ns) => format!("{{{ns}}}{}", f.tag_name().name()),
            None => f.tag_name().name().to_string(),
        })
        .collect();
    Ok(list
        .children()
        .filter(roxmltree::Node::is_element)
        .map(|e| prehash_of(tree::from_xml(e), &ignored))
        .collect())
}
