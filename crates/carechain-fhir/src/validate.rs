//! Validation of a JSON resource against the model.

use serde_json::Value;

use std::collections::HashMap;

use crate::invariants::{Invariant, convert, focus_context, invariants};
use crate::model::{Child, Kind, Model, Types, model};
use crate::native::{contained_referenced, native_invariants, questionnaire_link_ids};

/// One problem found, with a FHIRPath-like location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Where (`Patient.name[0].given`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

const MAX_ISSUES: usize = 100;
const MAX_DEPTH: usize = 64;

pub(crate) struct Ctx<'m, 'v> {
    model: &'m Model,
    issues: Vec<Issue>,
    /// The resources being walked, outermost first, each with its `%rootResource` (itself,
    /// or for a contained resource the resource containing it).
    resources: Vec<(&'v Value, &'v Value)>,
    /// Elements carrying FHIRPath invariants, evaluated once the structure is valid.
    focus: Vec<Focus<'v>>,
    /// Evaluate the invariants of nested resources too (not for a Bundle whose entries are
    /// validated again, invariants included, when each is written).
    nested_invariants: bool,
}

/// An element to check invariants on.
struct Focus<'v> {
    invariants: &'static [Invariant],
    node: &'v Value,
    resource: &'v Value,
    root: &'v Value,
    path: String,
}

/// Where a value sits (`Patient.name[0].given`), built as the walk descends and rendered
/// only when an issue is recorded: valid resources cost no path strings.
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    /// The start (a resource type, or empty before it is known).
    Root(&'a str),
    /// `parent.key`
    Key(&'a At<'a>, &'a str),
    /// `parent[i]`
    Index(&'a At<'a>, usize),
    /// `parent(ResourceType)`: a contained or nested resource.
    Resource(&'a At<'a>, &'a str),
}

impl At<'_> {
    fn render(&self, out: &mut String) {
        match self {
            At::Root(s) => out.push_str(s),
            At::Key(p, k) => {
                p.render(out);
                out.push('.');
                out.push_str(k);
            }
            At::Index(p, i) => {
                p.render(out);
                out.push_str(&format!("[{i}]"));
            }
            At::Resource(p, rt) => {
                p.render(out);
                out.push('(');
                out.push_str(rt);
                out.push(')');
            }
        }
    }
}

impl<'v> Ctx<'_, 'v> {
    pub(crate) fn issue(&mut self, at: &At<'_>, message: impl Into<String>) {
        if self.issues.len() < MAX_ISSUES {
            let mut path = String::new();
            at.render(&mut path);
            self.issues.push(Issue {
                path,
                message: message.into(),
            });
        }
    }

    /// Notes the invariants of element `rel` of `ty` (if any) for evaluation on `node`.
    fn note_invariants(&mut self, ty: &str, rel: &str, node: &'v Value, at: &At<'_>) {
        let Some(list) = invariants().on(ty, rel) else {
            return;
        };
        let Some(&(resource, root)) = self.resources.last() else {
            return;
        };
        if !self.nested_invariants && self.resources.len() > 1 {
            return;
        }
        let mut path = String::new();
        at.render(&mut path);
        self.focus.push(Focus {
            invariants: list,
            node,
            resource,
            root,
            path,
        });
    }

    /// Evaluates the invariants noted during the walk.
    fn check_invariants(&mut self) {
        let inv = invariants();
        // Each resource converted for the engine once, however many elements it has.
        let mut converted: HashMap<*const Value, tlq_fhirpath::Value> = HashMap::new();
        let mut engine_value = |v: &Value| {
            converted
                .entry(std::ptr::from_ref(v))
                .or_insert_with(|| convert(v))
                .clone()
        };
        for f in std::mem::take(&mut self.focus) {
            let (skip, todo): (Vec<&Invariant>, Vec<&Invariant>) =
                f.invariants.iter().partition(|i| i.trivially_holds(f.node));
            if todo.is_empty() && !cfg!(debug_assertions) {
                continue;
            }
            let resource = engine_value(f.resource);
            let root = engine_value(f.root);
            let ctx = focus_context(f.node, (f.resource, &resource), &root);
            // Debug builds (every test) check that each skipped invariant does hold.
            if cfg!(debug_assertions) {
                for i in &skip {
                    debug_assert!(inv.holds(i, &ctx), "{} skipped but does not hold", i.key);
                }
            }
            for i in todo {
                if !inv.holds(i, &ctx) && self.issues.len() < MAX_ISSUES {
                    self.issues.push(Issue {
                        path: f.path.clone(),
                        message: format!("{}: {}", i.key, i.human),
                    });
                }
            }
        }
    }
}

/// R4 resources that are not DomainResources (whose invariants, dom-*, do not apply to them).
const NOT_DOMAIN_RESOURCES: [&str; 3] = ["Bundle", "Binary", "Parameters"];

/// Validates a FHIR R4 resource in JSON form. Returns every issue found (up to 100).
pub fn validate_resource(resource: &Value) -> Result<(), Vec<Issue>> {
    validate(resource, true)
}

/// Validates a Bundle to be processed entry by entry (a batch or transaction): its whole
/// structure and its own invariants, but not the invariants of the resources it carries, which
/// are checked when each entry is written ([`validate_resource`] on the resource as stored).
pub fn validate_bundle(bundle: &Value) -> Result<(), Vec<Issue>> {
    validate(bundle, false)
}

fn validate(resource: &Value, nested_invariants: bool) -> Result<(), Vec<Issue>> {
    let mut cx = Ctx {
        model: model(),
        issues: Vec::new(),
        resources: Vec::new(),
        focus: Vec::new(),
        nested_invariants,
    };
    resource_at(&mut cx, resource, &At::Root(""), 0);
    if cx.issues.is_empty() {
        cx.check_invariants();
    }
    if cx.issues.is_empty() {
        Ok(())
    } else {
        Err(cx.issues)
    }
}

fn resource_at<'v>(cx: &mut Ctx<'_, 'v>, v: &'v Value, at: &At<'_>, depth: usize) {
    let Some(obj) = v.as_object() else {
        cx.issue(at, "a resource must be a JSON object");
        return;
    };
    let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
        cx.issue(at, "missing resourceType");
        return;
    };
    if !cx.model.is_resource(rt) {
        cx.issue(at, format!("unknown resource type {rt:?}"));
        return;
    }
    let display = match at {
        At::Root("") => At::Root(rt),
        _ => At::Resource(at, rt),
    };
    // `Resource.id` is typed `string` in the definitions, but the spec requires id syntax.
    if let Some(id) = obj.get("id")
        && !id.as_str().is_some_and(is_valid_id)
    {
        cx.issue(
            &At::Key(&display, "id"),
            "not a valid id ([A-Za-z0-9-.]{1,64})",
        );
    }
    let contained = matches!(at, At::Index(At::Key(_, "contained"), _));
    let root = match cx.resources.last() {
        Some(&(_, outer_root)) if contained => outer_root,
        _ => v,
    };
    cx.resources.push((v, root));
    if !NOT_DOMAIN_RESOURCES.contains(&rt) {
        cx.note_invariants("DomainResource", "", v, &display);
    }
    if rt == "Questionnaire" {
        questionnaire_link_ids(cx, v, &display);
    }
    if let Some(contained) = obj.get("contained").and_then(Value::as_array) {
        contained_referenced(cx, v, contained, &display);
    }
    object(cx, rt, "", v, &display, true, depth + 1);
    cx.resources.pop();
}

/// Whether `s` is a FHIR resource id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `key` is the type name `t` with its first letter capitalized (`valueQuantity`'s
/// `Quantity` for `Quantity`, `String` for `string`).
fn is_capitalized(t: &str, key: &str) -> bool {
    let (mut a, mut b) = (t.chars(), key.chars());
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => x.to_ascii_uppercase() == y && a.as_str() == b.as_str(),
        (None, None) => true,
        _ => false,
    }
}

/// The element a JSON key names, and the type it selects (for choices).
fn find<'c>(children: &'c [Child], key: &str) -> Option<(&'c Child, Option<&'c str>)> {
    for c in children {
        if c.name == key {
            let t = match &c.types {
                Types::List(l) if l.len() == 1 => Some(l[0].as_str()),
                _ => None,
            };
            return Some((c, t));
        }
        if let Some(prefix) = c.name.strip_suffix("[x]")
            && let Some(rest) = key.strip_prefix(prefix)
            && let Types::List(l) = &c.types
            && let Some(t) = l.iter().find(|t| is_capitalized(t, rest))
        {
            return Some((c, Some(t.as_str())));
        }
    }
    None
}

fn is_primitive(m: &Model, t: &str) -> bool {
    matches!(m.types.get(t).map(|d| &d.kind), Some(Kind::Primitive(_)))
}

#[allow(clippy::too_many_arguments)]
fn object<'v>(
    cx: &mut Ctx<'_, 'v>,
    def: &str,
    rel: &str,
    node: &'v Value,
    at: &At<'_>,
    root: bool,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        cx.issue(at, "nesting too deep");
        return;
    }
    let Some(obj) = node.as_object() else {
        cx.issue(at, "must be an object");
        return;
    };
    native_invariants(cx, def, rel, obj, at);
    cx.note_invariants(def, rel, node, at);
    let m = cx.model;
    let Some(td) = m.types.get(def) else {
        cx.issue(at, format!("no definition for type {def}"));
        return;
    };
    let empty = Vec::new();
    let children = td.children.get(rel).unwrap_or(&empty);
    if obj.is_empty() {
        cx.issue(at, "empty object (FHIR JSON has no empty objects)");
    }
    for (k, v) in obj {
        if root && k == "resourceType" {
            continue;
        }
        let here = At::Key(at, k);
        if let Some(base) = k.strip_prefix('_') {
            // Primitive extension: `_birthDate: { id, extension }` (or an array of them).
            match find(children, base) {
                Some((c, t))
                    if t.is_some_and(|t| is_primitive(m, t))
                        || matches!(&c.types, Types::List(l) if l.iter().all(|t| is_primitive(m, t))) =>
                {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) if c.repeats() => a.iter().collect(),
                        Value::Array(_) => {
                            cx.issue(&here, "must not be an array");
                            continue;
                        }
                        other => vec![other],
                    };
                    for (i, it) in items.iter().enumerate() {
                        match it {
                            Value::Null => {}
                            Value::Object(_) => object(
                                cx,
                                "Element",
                                "",
                                it,
                                &At::Index(&here, i),
                                false,
                                depth + 1,
                            ),
                            _ => cx.issue(&here, "a primitive's extension must be an object"),
                        }
                    }
                }
                _ => cx.issue(
                    &here,
                    format!("unknown element {base:?} (for its primitive extension)"),
                ),
            }
            continue;
        }
        let Some((child, chosen)) = find(children, k) else {
            cx.issue(&here, format!("unknown element {k:?}"));
            continue;
        };
        if child.max == Some(0) {
            cx.issue(&here, "element is not allowed (max cardinality 0)");
            continue;
        }
        if child.repeats() {
            let Value::Array(items) = v else {
                cx.issue(&here, "must be an array (cardinality allows repeats)");
                continue;
            };
            if items.is_empty() {
                cx.issue(&here, "empty array");
            }
            if let Some(max) = child.max
                && items.len() > max as usize
            {
                cx.issue(&here, format!("at most {max} allowed"));
            }
            for (i, it) in items.iter().enumerate() {
                if it.is_null() {
                    if !obj.contains_key(&format!("_{k}")) {
                        cx.issue(
                            &At::Index(&here, i),
                            "null is only allowed beside a primitive extension",
                        );
                    }
                    continue;
                }
                value(cx, def, rel, child, chosen, it, &At::Index(&here, i), depth);
            }
        } else {
            if v.is_array() {
                cx.issue(&here, "must not be an array (max cardinality 1)");
                continue;
            }
            value(cx, def, rel, child, chosen, v, &here, depth);
        }
    }
    // Required elements.
    for c in children.iter().filter(|c| c.min > 0) {
        let present = obj.keys().any(|k| {
            let k = k.strip_prefix('_').unwrap_or(k);
            k == c.name
                || c.name
                    .strip_suffix("[x]")
                    .is_some_and(|p| k.starts_with(p) && find(std::slice::from_ref(c), k).is_some())
        });
        if !present {
            cx.issue(&At::Key(at, &c.name), "required element is missing");
        }
    }
}

/// Checks the value of element `child` (of the element at `rel` in type `def`).
#[allow(clippy::too_many_arguments)]
fn value<'v>(
    cx: &mut Ctx<'_, 'v>,
    def: &str,
    rel: &str,
    child: &Child,
    chosen: Option<&str>,
    v: &'v Value,
    at: &At<'_>,
    depth: usize,
) {
    let m = cx.model;
    if let Types::Ref(path) = &child.types {
        object(cx, def, path, v, at, false, depth + 1);
        return;
    }
    let Some(t) = chosen else {
        cx.issue(at, "ambiguous type");
        return;
    };
    if t == "BackboneElement" || t == "Element" {
        let child_rel = if rel.is_empty() {
            child.name.clone()
        } else {
            format!("{rel}.{}", child.name)
        };
        if m.types
            .get(def)
            .is_some_and(|d| d.children.contains_key(&child_rel))
        {
            object(cx, def, &child_rel, v, at, false, depth + 1);
            return;
        }
    }
    if t == "Resource" {
        resource_at(cx, v, at, depth + 1);
        return;
    }
    match m.types.get(t).map(|d| &d.kind) {
        Some(Kind::Primitive(re)) => primitive(cx, t, re.as_ref(), v, at),
        Some(_) if v.is_object() => object(cx, t, "", v, at, false, depth + 1),
        Some(_) => cx.issue(at, format!("must be a {t} object")),
        None => cx.issue(at, format!("unknown type {t}")),
    }
}

fn primitive(cx: &mut Ctx<'_, '_>, t: &str, re: Option<&regex::Regex>, v: &Value, at: &At<'_>) {
    match t {
        "boolean" => {
            if !v.is_boolean() {
                cx.issue(at, "must be a JSON boolean");
            }
        }
        "integer" | "positiveInt" | "unsignedInt" => {
            let Some(n) = v.as_i64() else {
                cx.issue(at, format!("must be a JSON integer ({t})"));
                return;
            };
            let ok = match t {
                "positiveInt" => (1..=i64::from(i32::MAX)).contains(&n),
                "unsignedInt" => (0..=i64::from(i32::MAX)).contains(&n),
                _ => (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&n),
            };
            if !ok {
                cx.issue(at, format!("out of range for {t}"));
            }
        }
        "decimal" => {
            if !v.is_number() {
                cx.issue(at, "must be a JSON number (decimal)");
            }
        }
        _ => {
            let Some(s) = v.as_str() else {
                cx.issue(at, format!("must be a JSON string ({t})"));
                return;
            };
            if s.len() > 1024 * 1024 {
                cx.issue(at, "string longer than 1 MiB");
            } else if t == "xhtml" {
                if !s.trim_start().starts_with("<div") {
                    cx.issue(at, "narrative must be an XHTML <div>");
                }
            } else if let Some(re) = re
                && !re.is_match(s)
            {
                cx.issue(at, format!("not a valid {t}"));
            } else if s.is_empty() {
                cx.issue(at, "empty string");
            }
        }
    }
}
