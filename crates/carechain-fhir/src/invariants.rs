//! The FHIRPath invariants of the R4 core StructureDefinitions (`invariants.table`, generated
//! by `cargo xtask gen-fhir`): every `error`-severity constraint of every data type and
//! resource, evaluated with the `tlq-fhirpath` engine on each element it is defined on.
//!
//! The structure walk ([`crate::validate_resource`]) collects the elements that carry
//! invariants; they are evaluated only once the structure is valid. An invariant the engine
//! cannot evaluate counts as met: a gap in the evaluator must not turn valid records away.

use std::{collections::HashMap, sync::Arc, sync::OnceLock};

use serde_json::{Value, json};
use tlq_fhirpath::{Context, Engine, vm::Plan};

use crate::model::{Kind, model};

const TABLE: &str = include_str!("invariants.table");

/// One invariant, compiled.
pub(crate) struct Invariant {
    /// Its key (`per-1`).
    pub key: &'static str,
    /// What it requires, in words.
    pub human: &'static str,
    plan: Arc<Plan>,
    /// When the invariant can depend on its element only through these child elements and
    /// holds on an element that has none of them: it holds on every such element, so it is
    /// not evaluated there (see [`focus_names`]).
    holds_without: Option<Vec<&'static str>>,
}

impl Invariant {
    /// Whether evaluating it on `node` can be skipped: `node` has none of the elements the
    /// invariant navigates to, and it holds without them.
    pub(crate) fn trivially_holds(&self, node: &Value) -> bool {
        let (Some(names), Some(obj)) = (&self.holds_without, node.as_object()) else {
            return false;
        };
        !obj.keys().any(|k| {
            let k = k.strip_prefix('_').unwrap_or(k);
            names.iter().any(|n| {
                k == *n
                    || k.strip_prefix(n)
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            })
        })
    }
}

/// FHIRPath functions and keywords that are not element names.
const NOT_NAMES: &[&str] = &[
    "and", "or", "xor", "implies", "not", "true", "false", "in", "contains", "is", "as", "div",
    "mod",
];

/// The element names an expression navigates to from its focus, if it reaches the focus only
/// by name: `None` when it uses anything that sees the focus otherwise (`$this`, `%resource`
/// and the other variables, `children()`, `descendants()`, `hasValue()`, type tests). Names
/// inside `where(...)` and the like are included too (more names only make skipping rarer).
fn focus_names(expr: &'static str) -> Option<Vec<&'static str>> {
    const OPAQUE: &[&str] = &[
        "$this",
        "%",
        "children()",
        "descendants()",
        "hasValue()",
        "repeat(",
        "ofType(",
        "is(",
        "as(",
        "resolve()",
        "conformsTo(",
        "memberOf(",
        " is ",
        " as ",
        "$index",
        "$total",
    ];
    if OPAQUE.iter().any(|o| expr.contains(o)) {
        return None;
    }
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' {
            quoted = !quoted;
            i += 1;
            continue;
        }
        if quoted || !(c.is_ascii_alphabetic() || c == b'_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &expr[start..i];
        let after_dot = start > 0 && bytes[start - 1] == b'.';
        let is_call = bytes.get(i) == Some(&b'(');
        let is_literal_unit = start > 0 && bytes[start - 1] == b'@';
        if !after_dot && !is_call && !is_literal_unit && !NOT_NAMES.contains(&word) {
            names.push(word);
        }
    }
    (!names.is_empty()).then_some(names)
}

/// The compiled invariants by type (or resource) and the element path inside it (`""` for the
/// type itself): `Bundle` / `entry.request`.
pub(crate) struct Invariants {
    engine: Engine,
    by_context: HashMap<String, HashMap<String, Vec<Invariant>>>,
    /// Invariants the engine did not compile (with the reason): reported by the table test.
    pub not_compiled: Vec<(&'static str, String)>,
}

impl Invariants {
    fn load() -> Invariants {
        let engine = Engine::new(Arc::new(type_context()), None);
        let mut by_context: HashMap<String, HashMap<String, Vec<Invariant>>> = HashMap::new();
        let mut not_compiled = Vec::new();
        for line in TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut f = line.splitn(4, '\t');
            let (Some(path), Some(key), Some(human), Some(expr)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            match engine.compile(expr, None) {
                Ok(plan) => {
                    let (ty, rel) = path.split_once('.').unwrap_or((path, ""));
                    // Skippable where its elements are absent only if it holds on an element
                    // without any (evaluated once, here).
                    let holds_without = focus_names(expr).filter(|_| {
                        let empty = tlq_fhirpath::Value::from_json(json!({}));
                        let ctx = Context::new_with_root_resource(empty.clone(), empty.clone())
                            .push_this(empty);
                        engine.evaluate(&plan, &ctx).is_ok_and(|r| !is_false(&r))
                    });
                    by_context
                        .entry(ty.to_string())
                        .or_default()
                        .entry(rel.to_string())
                        .or_default()
                        .push(Invariant {
                            key,
                            human,
                            plan,
                            holds_without,
                        });
                }
                Err(e) => not_compiled.push((key, e.to_string())),
            }
        }
        Invariants {
            engine,
            by_context,
            not_compiled,
        }
    }

    /// The invariants on element `rel` (`""`: the type itself) of type `ty`.
    pub(crate) fn on(&self, ty: &str, rel: &str) -> Option<&[Invariant]> {
        self.by_context
            .get(ty)?
            .get(rel)
            .map(Vec::as_slice)
            .filter(|l| !l.is_empty())
    }

    /// Whether `inv` holds in `ctx` (see [`focus_context`]). True unless it evaluates to
    /// exactly `false`.
    pub(crate) fn holds(&self, inv: &Invariant, ctx: &Context) -> bool {
        match self.engine.evaluate(&inv.plan, ctx) {
            Ok(result) => !is_false(&result),
            Err(_) => true,
        }
    }

    /// How many invariants are checked.
    fn len(&self) -> usize {
        self.by_context
            .values()
            .flat_map(HashMap::values)
            .map(Vec::len)
            .sum()
    }
}

/// The evaluation context of an element: `$this` the element, `%resource` the resource it is
/// in, `%rootResource` that resource's container (itself unless it is contained). The
/// resources come converted once per validation (`convert`).
pub(crate) fn focus_context(
    node: &Value,
    resource: (&Value, &tlq_fhirpath::Value),
    root: &tlq_fhirpath::Value,
) -> Context {
    let ctx = Context::new_with_root_resource(resource.1.clone(), root.clone());
    if std::ptr::eq(node, resource.0) {
        ctx.push_this(resource.1.clone())
    } else {
        ctx.push_this(tlq_fhirpath::Value::from_json(node.clone()))
    }
}

/// A resource for the engine (one copy of its JSON, shared by every context that names it).
pub(crate) fn convert(resource: &Value) -> tlq_fhirpath::Value {
    tlq_fhirpath::Value::from_json(resource.clone())
}

/// A result that is the single boolean `false` (FHIRPath: an empty result is not a failure).
fn is_false(c: &tlq_fhirpath::Collection) -> bool {
    let mut it = c.iter();
    matches!(
        (it.next().map(|v| v.data()), it.next()),
        (Some(tlq_fhirpath::value::ValueData::Boolean(false)), None)
    )
}

/// The compiled invariants (compiled on first use).
pub(crate) fn invariants() -> &'static Invariants {
    static INVARIANTS: OnceLock<Invariants> = OnceLock::new();
    INVARIANTS.get_or_init(Invariants::load)
}

/// Which invariants are checked and which did not compile: `(checked, [(key, why)])`.
pub fn invariant_coverage() -> (usize, Vec<(&'static str, String)>) {
    let inv = invariants();
    (inv.len(), inv.not_compiled.clone())
}

/// The engine's type context: a StructureDefinition stub per R4 type of the structure table
/// (what `is`, `as` and `ofType` need to know the type names; the elements come from the
/// JSON).
fn type_context() -> tlq_fhir_context::DefaultFhirContext {
    let stubs = model()
        .types
        .iter()
        .map(|(name, t)| {
            let kind = match t.kind {
                Kind::Primitive(_) => "primitive-type",
                Kind::Complex => "complex-type",
                Kind::Resource => "resource",
            };
            json!({
                "resourceType": "StructureDefinition",
                "id": name,
                "url": format!("http://hl7.org/fhir/StructureDefinition/{name}"),
                "name": name,
                "type": name,
                "kind": kind,
                "abstract": false,
                "status": "active",
                "derivation": "specialization",
                "snapshot": {"element": [{"path": name}]}
            })
        })
        .collect();
    let manifest = serde_json::from_value(json!({
        "name": "carechain.r4.types", "version": "4.0.1", "author": "carechain"
    }))
    .unwrap_or_else(|e| unreachable!("a fixed manifest: {e}"));
    tlq_fhir_context::DefaultFhirContext::new(tlq_fhir_package::FhirPackage::new(
        manifest,
        stubs,
        Vec::new(),
    ))
}
