//! A real third-party FHIR client, unmodified, against the node: `e2e/fhir-client.mjs` drives
//! npm `fhir-kit-client` (installed by `npm ci --prefix e2e`, which `.ci/run` and
//! `scripts/test-all.sh` do) through capabilities, CRUD, a transaction, paged search,
//! compartment search, batch, history, delete and errors.

use crate::common::*;
use crate::fhir::{register_practitioner, token};

#[test]
fn fhir_kit_client_works_unmodified() {
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    assert!(
        e2e.join("node_modules/fhir-kit-client").is_dir(),
        "fhir-kit-client is not installed: run `npm ci --prefix e2e` (scripts/test-all.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let hospital = key(60);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "2"]);
    let doc = key(61);
    register_practitioner(&node.url, &hospital, &doc);
    let t = token(&node.url, &doc, "user/*.cruds");
    let out = std::process::Command::new("node")
        .arg(e2e.join("fhir-client.mjs"))
        .current_dir(&e2e)
        .env("CARECHAIN_URL", &node.url)
        .env("CARECHAIN_TOKEN", &t)
        .output()
        .expect("node (Node.js) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fhir-kit-client run failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("fhir-kit-client: all passed"), "{stdout}");
    node.stop();
}
