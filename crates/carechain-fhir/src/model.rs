//! The structure table, parsed once at first use.

use std::{collections::HashMap, sync::OnceLock};

use regex::Regex;

const TABLE: &str = include_str!("r4.table");

/// The kinds of type in the table.
#[derive(Debug)]
pub enum Kind {
    /// A primitive with its (anchored) value regex, if the specification gives one.
    Primitive(Option<Regex>),
    /// A complex data type.
    Complex,
    /// A resource.
    Resource,
}

/// What an element may hold.
#[derive(Debug)]
pub enum Types {
    /// One of these type codes.
    List(Vec<String>),
    /// The same structure as another element of this definition (relative path).
    Ref(String),
}

/// One element of a structure.
#[derive(Debug)]
pub struct Child {
    /// Last path segment (`name`, or `value[x]` for a choice).
    pub name: String,
    /// Minimum cardinality.
    pub min: u32,
    /// Maximum cardinality (`None` = `*`).
    pub max: Option<u32>,
    /// Allowed types.
    pub types: Types,
    /// Part of the summary view (`isSummary`).
    pub summary: bool,
}

impl Child {
    /// Whether the JSON form is an array.
    pub fn repeats(&self) -> bool {
        self.max != Some(1) && self.max != Some(0)
    }
}

/// One resource or data type.
#[derive(Debug)]
pub struct TypeDef {
    /// Kind.
    pub kind: Kind,
    /// Children by parent relative path (`""` = the type's root).
    pub children: HashMap<String, Vec<Child>>,
}

/// All FHIR R4 types.
#[derive(Debug)]
pub struct Model {
    /// Types by name.
    pub types: HashMap<String, TypeDef>,
}

impl Model {
    fn parse(text: &str) -> Model {
        let mut types: HashMap<String, TypeDef> = HashMap::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (tag, rest) = line.split_at(1);
            let rest = rest.trim_start();
            match tag {
                "P" => {
                    let (name, re) = rest.split_once(' ').unwrap_or((rest, ""));
                    let re = (!re.is_empty())
                        .then(|| Regex::new(&format!("^(?:{re})$")).ok())
                        .flatten();
                    types.insert(
                        name.to_string(),
                        TypeDef {
                            kind: Kind::Primitive(re),
                            children: HashMap::new(),
                        },
                    );
                    current = None;
                }
                "T" | "R" => {
                    let kind = if tag == "T" {
                        Kind::Complex
                    } else {
                        Kind::Resource
                    };
                    types.insert(
                        rest.to_string(),
                        TypeDef {
                            kind,
                            children: HashMap::new(),
                        },
                    );
                    current = Some(rest.to_string());
                }
                "E" => {
                    let Some(cur) = &current else { continue };
                    let mut parts = rest.split(' ');
                    let (Some(path), Some(min), Some(max), Some(ty)) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
                    let types_ = match ty.strip_prefix('#') {
                        Some(r) => Types::Ref(r.to_string()),
                        None => Types::List(ty.split(',').map(str::to_string).collect()),
                    };
                    let child = Child {
                        name: name.to_string(),
                        min: min.parse().unwrap_or(0),
                        max: if max == "*" { None } else { max.parse().ok() },
                        types: types_,
                        summary: parts.next() == Some("S"),
                    };
                    if let Some(t) = types.get_mut(cur) {
                        t.children
                            .entry(parent.to_string())
                            .or_default()
                            .push(child);
                    }
                }
                _ => {}
            }
        }
        Model { types }
    }

    /// Whether the top-level element named `key` in JSON (e.g. `valueQuantity` for
    /// `value[x]`) of resource type `rt` is kept by `_summary=true` (in the summary view) or,
    /// with `mandatory_only`, by `_summary=text` (required: `min ≥ 1`).
    pub fn keeps_top_level(&self, rt: &str, key: &str, mandatory_only: bool) -> bool {
        let Some(children) = self.types.get(rt).and_then(|t| t.children.get("")) else {
            return false;
        };
        children.iter().any(|c| {
            let named = match c.name.strip_suffix("[x]") {
                Some(stem) => key
                    .strip_prefix(stem)
                    .is_some_and(|rest| rest.starts_with(|ch: char| ch.is_ascii_uppercase())),
                None => c.name == key,
            };
            named
                && if mandatory_only {
                    c.min >= 1
                } else {
                    c.summary
                }
        })
    }

    /// Whether `name` is a resource type.
    pub fn is_resource(&self, name: &str) -> bool {
        matches!(self.types.get(name).map(|t| &t.kind), Some(Kind::Resource))
    }
}

/// The FHIR R4 model (parsed on first use).
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::parse(TABLE))
}
