//! What code is accepted at deploy: a valid WebAssembly module using only deterministic
//! features, importing only the host API, exporting the entry points, within the limits.

use carechain_crypto::{Hash, sha256};
use carechain_types::{CodeError, ContractConfig};
use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef, Validator, WasmFeatures};

use crate::host::HOST_FUNCTIONS;

/// The features contracts may use: integer WebAssembly 2.0 without floats, SIMD, threads,
/// several memories, 64-bit memories, exceptions or GC.
pub(crate) fn allowed_features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
}

/// The exports every contract has: its memory, its allocator and the two entry points that
/// change state (`query` is optional).
pub const REQUIRED_EXPORTS: [&str; 4] = ["memory", "alloc", "instantiate", "execute"];

/// What a deploy learns of accepted code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// SHA-256 of the code as deployed (its id).
    pub hash: Hash,
    /// Whether it exports `query`.
    pub has_query: bool,
}

fn validates(code: &[u8], features: WasmFeatures) -> Result<(), String> {
    Validator::new_with_features(features)
        .validate_all(code)
        .map(|_| ())
        .map_err(|e| {
            let mut m = e.message().to_string();
            m.truncate(160);
            m
        })
}

/// Checks code for deploy under the genesis limits.
pub fn check_code(code: &[u8], cfg: &ContractConfig) -> Result<CodeInfo, CodeError> {
    if code.len() > cfg.max_code_bytes as usize {
        return Err(CodeError::TooLarge);
    }
    if let Err(strict) = validates(code, allowed_features()) {
        // Name the forbidden feature when enabling it alone makes the module valid.
        let with = |f: WasmFeatures| validates(code, allowed_features() | f).is_ok();
        return Err(if validates(code, WasmFeatures::all()).is_err() {
            CodeError::Invalid(strict)
        } else if with(WasmFeatures::FLOATS | WasmFeatures::SATURATING_FLOAT_TO_INT) {
            CodeError::Floats
        } else if with(WasmFeatures::SIMD | WasmFeatures::RELAXED_SIMD | WasmFeatures::FLOATS) {
            CodeError::Simd
        } else if with(WasmFeatures::THREADS | WasmFeatures::SHARED_EVERYTHING_THREADS) {
            CodeError::Threads
        } else {
            CodeError::Unsupported(strict)
        });
    }
    let mut exports: Vec<(String, ExternalKind)> = Vec::new();
    let mut types: Vec<Option<FuncType>> = Vec::new();
    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| CodeError::Invalid(e.message().to_string()))?;
        match payload {
            Payload::TypeSection(section) => {
                for group in section.into_iter_err_on_gc_types() {
                    types.push(group.ok());
                }
            }
            Payload::ImportSection(imports) => {
                for import in imports {
                    let import = import.map_err(|e| CodeError::Invalid(e.message().to_string()))?;
                    let name = format!("{}.{}", import.module, import.name);
                    let known = import.module == "carechain"
                        && match import.ty {
                            TypeRef::Func(t) => HOST_FUNCTIONS.iter().any(|h| {
                                h.name == import.name
                                    && types.get(t as usize).and_then(Option::as_ref).is_some_and(
                                        |ft| ft.params() == h.params && ft.results() == h.results,
                                    )
                            }),
                            _ => false,
                        };
                    if !known {
                        let mut name = name;
                        name.truncate(96);
                        return Err(CodeError::UnknownImport(name));
                    }
                }
            }
            // A start function would run before the fuel counter is set.
            Payload::StartSection { .. } => {
                return Err(CodeError::Unsupported("a start function".into()));
            }
            Payload::MemorySection(memories) => {
                for m in memories {
                    let m = m.map_err(|e| CodeError::Invalid(e.message().to_string()))?;
                    if m.initial > u64::from(cfg.memory_pages) {
                        return Err(CodeError::MemoryTooLarge);
                    }
                }
            }
            Payload::ExportSection(section) => {
                for e in section {
                    let e = e.map_err(|e| CodeError::Invalid(e.message().to_string()))?;
                    if e.name.starts_with("__carechain") {
                        return Err(CodeError::Unsupported("reserved export name".into()));
                    }
                    exports.push((e.name.to_string(), e.kind));
                }
            }
            _ => {}
        }
    }
    for name in REQUIRED_EXPORTS {
        let kind = if name == "memory" {
            ExternalKind::Memory
        } else {
            ExternalKind::Func
        };
        if !exports.iter().any(|(n, k)| n == name && *k == kind) {
            return Err(CodeError::MissingExport(name.into()));
        }
    }
    Ok(CodeInfo {
        hash: sha256(code),
        has_query: exports
            .iter()
            .any(|(n, k)| n == "query" && *k == ExternalKind::Func),
    })
}
