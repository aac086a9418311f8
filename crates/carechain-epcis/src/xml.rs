//! EPCIS 2.0 (and 1.x) XML documents read into the JSON-LD form of the same events, so one
//! capture path (schema, hash, custody) serves both syntaxes. The standard fields map by
//! name (lists to arrays, `type` attributes to `type` keys, sensor attributes to keys with
//! numbers as numbers); user extensions keep their namespace as a `prefix:name` key with
//! the prefix declared in `@context`. A test checks, on GS1's XML vectors, that the JSON made
//! here hashes exactly as the XML does.

use std::collections::BTreeMap;

use roxmltree::Node;
use serde_json::{Map, Value, json};

/// Why an XML document cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML (or a DTD, which is refused).
    #[error("not an XML document: {0}")]
    Parse(#[from] roxmltree::Error),
    /// No `EventList`.
    #[error("the document holds no EventList")]
    NoEvents,
}

const LISTS_OF_EPCS: [&str; 4] = ["epcList", "childEPCs", "inputEPCList", "outputEPCList"];
const QUANTITY_LISTS: [&str; 4] = [
    "quantityList",
    "childQuantityList",
    "inputQuantityList",
    "outputQuantityList",
];
const TYPED_LISTS: [(&str, &str); 3] = [
    ("bizTransactionList", "bizTransaction"),
    ("sourceList", "source"),
    ("destinationList", "destination"),
];
/// Sensor attributes that are numbers in JSON.
const NUMERIC: [&str; 8] = [
    "value",
    "minValue",
    "maxValue",
    "meanValue",
    "sDev",
    "percRank",
    "percValue",
    "quantity",
];

/// A `gs1:` or `cbv:` CURIE value as its full URI (as the XML event hash reads it).
fn curie(v: &str) -> String {
    for (p, uri) in [
        ("gs1:", "https://gs1.org/voc/"),
        ("cbv:", "https://ref.gs1.org/cbv/"),
    ] {
        if let Some(rest) = v.strip_prefix(p) {
            return format!("{uri}{rest}");
        }
    }
    v.to_string()
}

/// A CBV vocabulary URN (`urn:epcglobal:cbv:bizstep:shipping`) as the bare term JSON writes
/// (`shipping`); anything else as it is.
fn bare(v: &str) -> String {
    for p in [
        "urn:epcglobal:cbv:bizstep:",
        "urn:epcglobal:cbv:disp:",
        "urn:epcglobal:cbv:btt:",
        "urn:epcglobal:cbv:sdt:",
        "urn:epcglobal:cbv:er:",
    ] {
        if let Some(rest) = v.strip_prefix(p) {
            return rest.to_string();
        }
    }
    v.to_string()
}

/// Namespace URIs of the standard itself, never user extensions.
fn standard(ns: &str) -> bool {
    ns.starts_with("urn:epcglobal:epcis") || ns == "http://www.w3.org/2001/XMLSchema-instance"
}

struct Reader {
    /// Namespace URI → prefix used in keys.
    prefixes: BTreeMap<String, String>,
}

impl Reader {
    fn key(&mut self, n: Node<'_, '_>) -> String {
        self.name(n, n.tag_name().namespace(), n.tag_name().name())
    }

    /// `prefix:local` for a name in a user namespace (the prefix the document gave it, or a
    /// new one), `local` otherwise.
    fn name(&mut self, at: Node<'_, '_>, ns: Option<&str>, local: &str) -> String {
        match ns {
            Some(ns) if !standard(ns) => {
                let next = format!("ns{}-x", self.prefixes.len() + 1);
                let p = self
                    .prefixes
                    .entry(ns.to_string())
                    .or_insert_with(|| at.lookup_prefix(ns).map_or(next, |p| format!("{p}-x")))
                    .clone();
                format!("{p}:{local}")
            }
            _ => local.to_string(),
        }
    }

    fn text(n: Node<'_, '_>) -> String {
        curie(
            n.children()
                .filter(Node::is_text)
                .filter_map(|t| t.text())
                .collect::<String>()
                .trim(),
        )
    }

    /// The element children, EPCIS 1.x `extension`/`baseExtension` wrappers flattened.
    fn elements<'a, 'i>(n: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
        let mut out = Vec::new();
        for c in n.children().filter(Node::is_element) {
            if c.tag_name().namespace().is_none_or(standard)
                && matches!(c.tag_name().name(), "extension" | "baseExtension")
            {
                out.extend(Self::elements(c));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// An extension element: its text, or an object of its children (repeated names become
    /// arrays).
    fn generic(&mut self, n: Node<'_, '_>) -> Value {
        let kids = Self::elements(n);
        let mut m = self.attributes(n);
        if kids.is_empty() {
            let text = Self::text(n);
            if m.is_empty() {
                return Value::String(text);
            }
            if !text.is_empty() {
                m.insert("#text".into(), Value::String(text));
            }
            return Value::Object(m);
        }
        for c in kids {
            let k = self.key(c);
            let v = self.generic(c);
            match m.get_mut(&k) {
                Some(Value::Array(a)) => a.push(v),
                Some(prev) => {
                    let first = prev.take();
                    *prev = Value::Array(vec![first, v]);
                }
                None => {
                    m.insert(k, v);
                }
            }
        }
        Value::Object(m)
    }

    fn attributes(&mut self, n: Node<'_, '_>) -> Map<String, Value> {
        let mut m = Map::new();
        for a in n.attributes() {
            let name = a.name();
            let v = a.value();
            let value = if NUMERIC.contains(&name) {
                v.parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    .unwrap_or_else(|| Value::String(v.to_string()))
            } else {
                Value::String(curie(v))
            };
            let key = self.name(n, a.namespace(), name);
            m.insert(key, value);
        }
        m
    }

    fn event(&mut self, e: Node<'_, '_>) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(e.tag_name().name()));
        for c in Self::elements(e) {
            let name = c.tag_name().name();
            let extension = c.tag_name().namespace().is_some_and(|ns| !standard(ns));
            if extension {
                let k = self.key(c);
                let v = self.generic(c);
                m.insert(k, v);
                continue;
            }
            let v = if LISTS_OF_EPCS.contains(&name) {
                json!(
                    Self::elements(c)
                        .into_iter()
                        .map(Self::text)
                        .collect::<Vec<_>>()
                )
            } else if QUANTITY_LISTS.contains(&name) {
                json!(
                    Self::elements(c)
                        .into_iter()
                        .map(|q| self.quantity(q))
                        .collect::<Vec<_>>()
                )
            } else if let Some((_, item)) = TYPED_LISTS.iter().find(|(l, _)| *l == name) {
                json!(
                    Self::elements(c)
                        .into_iter()
                        .map(|t| {
                            let mut o = Map::new();
                            if let Some(ty) = t.attribute("type") {
                                o.insert("type".into(), json!(ty));
                            }
                            o.insert((*item).to_string(), json!(Self::text(t)));
                            Value::Object(o)
                        })
                        .collect::<Vec<_>>()
                )
            } else if matches!(name, "readPoint" | "bizLocation") {
                let mut o = Map::new();
                for k in Self::elements(c) {
                    let key = self.key(k);
                    let val = self.generic(k);
                    o.insert(key, val);
                }
                Value::Object(o)
            } else if name == "persistentDisposition" {
                let mut o: Map<String, Value> = Map::new();
                for k in Self::elements(c) {
                    let entry = o
                        .entry(k.tag_name().name().to_string())
                        .or_insert_with(|| json!([]));
                    if let Value::Array(a) = entry {
                        a.push(json!(bare(&Self::text(k))));
                    }
                }
                Value::Object(o)
            } else if name == "sensorElementList" {
                json!(
                    Self::elements(c)
                        .into_iter()
                        .map(|se| self.sensor_element(se))
                        .collect::<Vec<_>>()
                )
            } else if name == "ilmd" {
                let mut o = Map::new();
                for k in Self::elements(c) {
                    let key = self.key(k);
                    let val = self.generic(k);
                    o.insert(key, val);
                }
                Value::Object(o)
            } else if name == "errorDeclaration" {
                self.generic(c)
            } else if matches!(name, "bizStep" | "disposition") {
                json!(bare(&Self::text(c)))
            } else {
                json!(Self::text(c))
            };
            m.insert(name.to_string(), v);
        }
        Value::Object(m)
    }

    fn quantity(&mut self, q: Node<'_, '_>) -> Value {
        let mut o = Map::new();
        for k in Self::elements(q) {
            let name = k.tag_name().name();
            let t = Self::text(k);
            let v = if name == "quantity" {
                t.parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    .unwrap_or(Value::String(t))
            } else {
                Value::String(t)
            };
            o.insert(name.to_string(), v);
        }
        Value::Object(o)
    }

    fn sensor_element(&mut self, se: Node<'_, '_>) -> Value {
        let mut o = Map::new();
        let mut reports = Vec::new();
        for k in Self::elements(se) {
            match k.tag_name().name() {
                "sensorMetadata" => {
                    let a = self.attributes(k);
                    o.insert("sensorMetadata".into(), Value::Object(a));
                }
                "sensorReport" => reports.push(Value::Object(self.attributes(k))),
                _ => {
                    let key = self.key(k);
                    let val = self.generic(k);
                    o.insert(key, val);
                }
            }
        }
        if !reports.is_empty() {
            o.insert("sensorReport".into(), Value::Array(reports));
        }
        Value::Object(o)
    }
}

/// An XML document, DTDs refused.
pub(crate) fn parse(text: &str) -> Result<roxmltree::Document<'_>, XmlError> {
    Ok(roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..Default::default()
        },
    )?)
}

/// The document's `EventList` element.
pub(crate) fn event_list<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
) -> Result<Node<'a, 'i>, XmlError> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "EventList")
        .ok_or(XmlError::NoEvents)
}

/// The document's `ignoreFields` elements (of a query document's header).
pub(crate) fn ignore_lists<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
) -> impl Iterator<Item = Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "ignoreFields")
}

/// The EPCISDocument (JSON-LD) of an EPCIS XML document.
pub fn xml_to_json(text: &str) -> Result<Value, XmlError> {
    json_of(&parse(text)?)
}

/// The EPCISDocument (JSON-LD) of an EPCIS XML document and the CBV 2.0 hash of each of its
/// events as the XML writes it (in order), from one parse.
pub fn xml_to_json_with_hashes(text: &str) -> Result<(Value, Vec<String>), XmlError> {
    let doc = parse(text)?;
    let hashes = crate::hash::xml_prehashes_of(&doc)?
        .iter()
        .map(|p| crate::hash::hash_of_prehash(p))
        .collect();
    Ok((json_of(&doc)?, hashes))
}

fn json_of(doc: &roxmltree::Document<'_>) -> Result<Value, XmlError> {
    let list = event_list(doc)?;
    let mut r = Reader {
        prefixes: BTreeMap::new(),
    };
    // Keys take the document's own prefixes with `-x` added: a value written as
    // `prefix:name` stays as written (as the XML event hash reads it), never expanded by the
    // JSON-LD context the keys need.
    for ns in doc.root_element().namespaces() {
        if let Some(p) = ns.name()
            && !standard(ns.uri())
        {
            r.prefixes.insert(ns.uri().to_string(), format!("{p}-x"));
        }
    }
    let events: Vec<Value> = Reader::elements(list)
        .into_iter()
        .map(|e| r.event(e))
        .collect();
    // Fields a (query) document says are not part of its events' identity.
    let mut header = Map::new();
    for ig in ignore_lists(doc) {
        let key = r.key(ig);
        let names: Vec<Value> = Reader::elements(ig)
            .into_iter()
            .map(|f| json!(r.key(f)))
            .collect();
        header.insert(key, Value::Array(names));
    }
    let mut context = Map::new();
    for (uri, p) in &r.prefixes {
        context.insert(p.clone(), json!(uri));
    }
    let root = doc.root_element();
    let mut out = json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", Value::Object(context)],
        "type": "EPCISDocument",
        "schemaVersion": root.attribute("schemaVersion").unwrap_or("2.0"),
        "creationDate": root.attribute("creationDate").unwrap_or("1970-01-01T00:00:00Z"),
        "epcisBody": {"eventList": events},
    });
    if !header.is_empty() {
        out["epcisHeader"] = Value::Object(header);
    }
    Ok(out)
}
