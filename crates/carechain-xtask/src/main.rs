//! `cargo xtask`: developer tasks. `gen-fhir [DEFINITIONS_DIR]` regenerates
//! the tables of `crates/carechain-fhir/src/` (structure, invariants, search parameters,
//! Patient compartment) from the official FHIR R4 definitions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen-fhir") => {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
            let defs = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared/data/fhir/definitions-r4"));
            let read = |f: &str| -> Result<serde_json::Value> {
                let p = defs.join(f);
                Ok(serde_json::from_slice(
                    &std::fs::read(&p).with_context(|| p.display().to_string())?,
                )?)
            };
            let table = carechain_fhir::table_gen::generate(
                &read("profiles-types.json")?,
                &read("profiles-resources.json")?,
            )
            .map_err(anyhow::Error::msg)?;
            let out = root.join("crates/carechain-fhir/src/r4.table");
            std::fs::write(&out, table)?;
            eprintln!("wrote {}", out.display());
            let invariants = carechain_fhir::table_gen::generate_invariants(
                &read("profiles-types.json")?,
                &read("profiles-resources.json")?,
            )
            .map_err(anyhow::Error::msg)?;
            let out = root.join("crates/carechain-fhir/src/invariants.table");
            std::fs::write(&out, invariants)?;
            eprintln!("wrote {}", out.display());
            let search =
                carechain_fhir::table_gen::generate_search(&read("search-parameters.json")?)
                    .map_err(anyhow::Error::msg)?;
            let out = root.join("crates/carechain-fhir/src/search.table");
            std::fs::write(&out, search)?;
            eprintln!("wrote {}", out.display());
            let compartment = carechain_fhir::table_gen::generate_compartment(&read(
                "compartmentdefinition-patient.json",
            )?)
            .map_err(anyhow::Error::msg)?;
            let out = root.join("crates/carechain-fhir/src/compartment.table");
            std::fs::write(&out, compartment)?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        _ => bail!("usage: cargo xtask gen-fhir [DEFINITIONS_DIR]"),
    }
}
