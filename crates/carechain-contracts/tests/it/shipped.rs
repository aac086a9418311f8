//! The shipped contracts: accepted at deploy under the default genesis, pinned by hash, and
//! reproducible (rebuilding them from `contracts/` gives the same bytes).

use std::path::Path;
use std::process::Command;

use carechain_contracts::check_code;
use carechain_contracts::shipped::ALL;
use carechain_crypto::sha256;
use carechain_types::ContractConfig;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
}

#[test]
fn shipped_contracts_pass_the_deploy_checks() {
    for s in ALL {
        let info = check_code(s.code, &ContractConfig::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", s.name));
        assert!(info.has_query, "{} answers queries", s.name);
    }
}

#[test]
fn shipped_contracts_match_their_pinned_hashes() {
    let sums = std::fs::read_to_string(root().join("contracts/wasm/SHA256SUMS")).unwrap();
    for s in ALL {
        let file = format!("{}.wasm", s.name);
        let line = sums
            .lines()
            .find(|l| l.ends_with(&format!("  {file}")))
            .unwrap_or_else(|| panic!("{file} is not in SHA256SUMS"));
        assert_eq!(&line[..64], sha256(s.code).to_hex(), "{file}");
    }
}

/// Rebuilds every shipped contract from source into a fresh directory (the build's own
/// target dir is kept, so only the first run compiles) and compares the bytes.
#[test]
fn shipped_contracts_rebuild_to_the_same_bytes() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root().join("scripts/build-contracts.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/build-contracts.sh failed");
    for s in ALL {
        let rebuilt = std::fs::read(out.path().join(format!("{}.wasm", s.name))).unwrap();
        assert!(
            rebuilt == s.code,
            "{}: the committed contracts/wasm/{}.wasm is not what its source builds to; run scripts/build-contracts.sh",
            s.name,
            s.name
        );
    }
}
