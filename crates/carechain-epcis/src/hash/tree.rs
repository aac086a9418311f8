//! One tree for both syntaxes: an event as (name, text, children), where JSON keys and XML
//! elements and attributes all become children. The JSON side is reshaped to the XML data
//! model (list children named, `quantityElement`, source/destination/bizTransaction as a
//! type-and-value pair), so that both syntaxes of one event give one pre-hash string.

use std::collections::BTreeMap;

use serde_json::Value;

/// A node of the event tree. `pair` marks a (type, value) pair of a source, destination or
/// business transaction: its two children are written type first, never sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
    pub pair: bool,
}

impl Node {
    fn leaf(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            ..Self::default()
        }
    }
}

const PAIRED_LISTS: [&str; 3] = ["sourceList", "destinationList", "bizTransactionList"];
const PAIRED: [&str; 3] = ["source", "destination", "bizTransaction"];

/// CBV vocabularies of JSON's bare-string values, by the field that holds them.
fn vocabulary(field: &str, parent: &str) -> Option<&'static str> {
    Some(match (parent, field) {
        (_, "bizStep") => "https://ref.gs1.org/cbv/BizStep-",
        (_, "disposition") | ("persistentDisposition", "set" | "unset") => {
            "https://ref.gs1.org/cbv/Disp-"
        }
        ("sourceList" | "destinationList", "type") => "https://ref.gs1.org/cbv/SDT-",
        ("bizTransactionList", "type") => "https://ref.gs1.org/cbv/BTT-",
        ("sensorReport", "type" | "exception") => "https://gs1.org/voc/",
        ("sensorReport", "component") => "https://ref.gs1.org/cbv/Comp-",
        ("errorDeclaration", "reason") => "https://ref.gs1.org/cbv/ER-",
        _ => return None,
    })
}

/// The CURIE prefixes of the EPCIS context.
const CONTEXT_PREFIXES: [(&str, &str); 3] = [
    ("gs1:", "https://gs1.org/voc/"),
    ("cbv:", "https://ref.gs1.org/cbv/"),
    ("epcis:", "https://ref.gs1.org/epcis/"),
];

/// The full URIs a JSON event's vocabulary fields stand for (bare terms and CURIEs expanded),
/// as a JSON-LD expansion with the EPCIS context gives them. `field` is the key a value sits
/// under (a list's items sit under the list's key), `parent` the key of the object holding it.
fn expanded_terms(v: &Value, field: &str, parent: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(vocab) = vocabulary(field, parent)
                && !s.contains(':')
            {
                out.push(format!("{vocab}{s}"));
            } else if let Some((p, uri)) = CONTEXT_PREFIXES.iter().find(|(p, _)| s.starts_with(p)) {
                out.push(format!("{uri}{}", &s[p.len()..]));
            } else if s.starts_with("https://ref.gs1.org/cbv")
                || s.starts_with("https://gs1.org/voc")
            {
                out.push(s.clone());
            }
        }
        Value::Array(items) => {
            for i in items {
                expanded_terms(i, field, parent, out);
            }
        }
        Value::Object(map) => {
            for (k, i) in map {
                expanded_terms(i, k, field, out);
            }
        }
        _ => {}
    }
}

/// Namespace prefixes declared in a document's `@context` (`"ex": "https://ns.example.com/"`).
pub(crate) fn context_namespaces(context: Option<&Value>) -> BTreeMap<String, String> {
    let mut ns = BTreeMap::new();
    let mut add = |c: &Value| {
        if let Value::Object(m) = c {
            for (k, v) in m {
                if let Value::String(uri) = v {
                    ns.insert(k.clone(), uri.clone());
                }
            }
        }
    };
    match context {
        Some(Value::Array(items)) => items.iter().for_each(&mut add),
        Some(c @ Value::Object(_)) => add(c),
        _ => {}
    }
    ns
}

struct JsonReader<'a> {
    ns: BTreeMap<String, String>,
    terms: &'a [String],
}

impl JsonReader<'_> {
    /// `prefix:local` as `{namespace}local` (a key) or `namespacelocal` (a value).
    fn expand(&self, s: &str, key: bool) -> String {
        if let Some((p, local)) = s.split_once(':')
            && let Some(uri) = self.ns.get(p)
        {
            return if key {
                format!("{{{uri}}}{local}")
            } else {
                format!("{uri}{local}")
            };
        }
        s.to_string()
    }

    /// A bare vocabulary string replaced by the one full URI of the event that ends in it.
    fn bare(&self, s: &str) -> String {
        let dash = format!("-{s}");
        let slash = format!("/{s}");
        let mut hits = self
            .terms
            .iter()
            .filter(|t| t.ends_with(&dash) || t.ends_with(&slash));
        match (hits.next(), hits.next()) {
            (Some(one), None) => one.clone(),
            _ => s.to_string(),
        }
    }

    fn scalar(&self, v: &Value) -> String {
        match v {
            Value::String(s) => self.expand(&self.bare(s), false),
            // As the reference implementation's language prints them.
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Null => "None".into(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }
    }

    fn node(&self, v: &Value) -> Node {
        let mut node = Node::default();
        match v {
            Value::Array(items) => {
                node.children = items.iter().map(|i| self.node(i)).collect();
            }
            Value::Object(map) => {
                if let Some(t) = map.get("type") {
                    node.name = self.scalar(t);
                }
                if let Some(t) = map.get("#text") {
                    node.text = self.scalar(t);
                }
                for (k, val) in map {
                    if matches!(k.as_str(), "#text" | "rdfs:comment" | "comment")
                        || k.starts_with('@')
                    {
                        continue;
                    }
                    let child = self.node(val);
                    let key = self.expand(k, true);
                    if val.is_array() {
                        for e in child.children {
                            node.children.push(Node {
                                name: key.clone(),
                                ..e
                            });
                        }
                    } else {
                        node.children.push(Node { name: key, ..child });
                    }
                }
            }
            other => node.text = self.scalar(other),
        }
        node
    }
}

/// Reshapes a JSON-built node to the XML data model.
fn reshape(mut node: Node) -> Node {
    let mut lists: Vec<(String, Vec<Node>)> = Vec::new();
    let mut rest = Vec::new();
    let mut child_epcs = Vec::new();
    for c in std::mem::take(&mut node.children) {
        if let Some(item) = c.name.strip_suffix("List").map(str::to_string) {
            let list = c.name.clone();
            let el = Node { name: item, ..c };
            match lists.iter_mut().find(|(n, _)| *n == list) {
                Some((_, v)) => v.push(el),
                None => lists.push((list, vec![el])),
            }
        } else if c.name == "childEPCs" {
            child_epcs.push(Node::leaf("epc", c.text));
        } else {
            rest.push(c);
        }
    }
    for (name, items) in lists {
        if PAIRED_LISTS.contains(&name.as_str()) {
            let children = items.into_iter().map(pair).collect();
            rest.push(Node {
                name,
                children,
                ..Node::default()
            });
        } else {
            rest.push(Node {
                name,
                children: items,
                ..Node::default()
            });
        }
    }
    if !child_epcs.is_empty() {
        rest.push(Node {
            name: "childEPCs".into(),
            children: child_epcs,
            ..Node::default()
        });
    }
    node.children = rest
        .into_iter()
        .map(|c| {
            if PAIRED_LISTS.contains(&c.name.as_str()) {
                c
            } else {
                reshape(c)
            }
        })
        .collect();
    match node.name.as_str() {
        "inputEPC" | "outputEPC" => node.name = "epc".into(),
        "inputQuantity" | "outputQuantity" | "childQuantity" => {
            node.name = "quantityElement".into()
        }
        "quantity" if !node.children.is_empty() => node.name = "quantityElement".into(),
        _ => {}
    }
    node
}

/// A source, destination or business transaction as its (type, value) pair.
fn pair(item: Node) -> Node {
    let mut kids = item.children;
    kids.sort_by_key(|k| k.name != "type");
    Node {
        children: kids,
        pair: true,
        ..Node::default()
    }
}

/// The tree of one JSON event, given its document's namespaces.
pub(crate) fn from_json(event: &Value, ns: &BTreeMap<String, String>) -> Node {
    let mut terms = Vec::new();
    expanded_terms(event, "", "", &mut terms);
    terms.sort();
    terms.dedup();
    let reader = JsonReader {
        ns: ns.clone(),
        terms: &terms,
    };
    let mut event_node = reader.node(event);
    if let Value::Object(m) = event {
        // `{"@xmlns:ex": "..."}` style declarations inside an event.
        let mut more = ns.clone();
        for (k, v) in m {
            if let (Some(p), Value::String(uri)) = (k.strip_prefix("@xmlns:"), v) {
                more.insert(p.to_string(), uri.clone());
            }
        }
        if more.len() != ns.len() {
            event_node = JsonReader {
                ns: more,
                terms: &terms,
            }
            .node(event);
        }
    }
    reshape(event_node)
}

/// The tree of one XML event element.
pub(crate) fn from_xml(el: roxmltree::Node<'_, '_>) -> Node {
    let mut children: Vec<Node> = el
        .attributes()
        .map(|a| Node::leaf(xml_name(a.namespace(), a.name()), expand_xml(a.value())))
        .collect();
    for c in el.children().filter(roxmltree::Node::is_element) {
        let local = c.tag_name().name();
        if c.tag_name().namespace().is_none() && matches!(local, "extension" | "baseExtension") {
            // EPCIS 1.x wrappers: their content belongs to the enclosing element.
            children.extend(
                c.children()
                    .filter(roxmltree::Node::is_element)
                    .map(from_xml),
            );
        } else {
            children.push(from_xml(c));
        }
    }
    children.sort();
    let name = xml_name(el.tag_name().namespace(), el.tag_name().name());
    if children.iter().any(|c| PAIRED.contains(&c.name.as_str())) {
        children = children
            .into_iter()
            .filter(|c| PAIRED.contains(&c.name.as_str()))
            .map(|c| {
                let mut kids: Vec<Node> = c
                    .children
                    .into_iter()
                    .filter(|k| k.name == "type")
                    .collect();
                kids.truncate(1);
                kids.push(Node::leaf(c.name, c.text));
                Node {
                    children: kids,
                    pair: true,
                    ..Node::default()
                }
            })
            .collect();
    }
    let text = el
        .children()
        .next()
        .filter(roxmltree::Node::is_text)
        .and_then(|t| t.text())
        .unwrap_or_default()
        .trim();
    Node {
        text: expand_xml(text),
        name,
        children,
        pair: false,
    }
}

fn xml_name(ns: Option<&str>, local: &str) -> String {
    match ns {
        Some(ns) => format!("{{{ns}}}{local}"),
        None => local.to_string(),
    }
}

/// XML values written as `gs1:…` or `cbv:…` CURIEs, expanded.
fn expand_xml(v: &str) -> String {
    for (p, uri) in &CONTEXT_PREFIXES[..2] {
        if let Some(rest) = v.strip_prefix(p) {
            return format!("{uri}{rest}");
        }
    }
    v.to_string()
}
