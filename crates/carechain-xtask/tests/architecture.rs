//! ARCHITECTURE.md's crate map names exactly the workspace's crates, and layers point one
//! way: every carechain crate a manifest depends on is listed above it in the map.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn the_crate_map_matches_the_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let rows: Vec<(String, String)> = map
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `carechain-")?;
            let (name, rest) = rest.split_once('`')?;
            let deps = rest
                .trim_end()
                .trim_end_matches('|')
                .rsplit('|')
                .next()?
                .to_string();
            Some((format!("carechain-{name}"), deps))
        })
        .collect();
    let in_map: BTreeSet<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    let crates: BTreeSet<String> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("carechain-"))
        .collect();
    assert_eq!(
        in_map, crates,
        "ARCHITECTURE.md's crate table and crates/ disagree"
    );
    for (i, (name, _)) in rows.iter().enumerate() {
        let above: BTreeSet<&str> = rows[..i].iter().map(|(n, _)| n.as_str()).collect();
        let manifest =
            std::fs::read_to_string(root.join("crates").join(name).join("Cargo.toml")).unwrap();
        let normal = manifest
            .split("[dev-dependencies]")
            .next()
            .unwrap()
            .split("[dependencies]")
            .nth(1)
            .unwrap_or("");
        for line in normal.lines() {
            let Some(dep) = line
                .split(['.', ' ', '='])
                .next()
                .filter(|d| d.starts_with("carechain-"))
            else {
                continue;
            };
            assert!(
                above.contains(dep),
                "{name} depends on {dep}, which ARCHITECTURE.md does not list above it"
            );
        }
    }
}
