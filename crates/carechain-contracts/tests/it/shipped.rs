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

/// Whether this toolchain can build for wasm32-unknown-unknown (its standard library is
/// installed, or rustup installs it now).
fn wasm_target_available() -> bool {
    let installed = || {
        Command::new("rustc")
            .args([
                "--print",
                "target-libdir",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .is_some_and(|dir| std::fs::read_dir(dir.trim()).is_ok_and(|mut d| d.next().is_some()))
    };
    if installed() {
        return true;
    }
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .status();
    installed()
}

/// Rebuilds every shipped contract from source into a fresh directory (the build's own
/// target dir is kept, so only the first run compiles) and compares the bytes. On a machine
/// whose toolchain has no wasm32 standard library and cannot fetch one (rustup's server out
/// of reach), the rebuild cannot run: it says so, and the pinned hashes above still hold.
#[test]
fn shipped_contracts_rebuild_to_the_same_bytes() {
    if !wasm_target_available() {
        eprintln!(
            "NOT CHECKED: the wasm32-unknown-unknown target is not installed and cannot be installed here; run scripts/build-contracts.sh where it can"
        );
        return;
    }
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
