//! A real third-party FHIR client, unmodified, against the node: `e2e/fhir-client.mjs` drives
//! npm `fhir-kit-client` (installed by `npm ci --prefix e2e`, which `.ci/run` and
//! `scripts/test-all.sh` do) through capabilities, CRUD, a transaction, paged search,
//! compartment search, batch, history, delete and errors.

use crate::common::*;
use crate::fhir::{register_practitioner, token};

#[test]
fn fhir_kit_client_works_unmodified() {
    let dir = tempfile::tempdir().unwrap();
    let hospital = key(60);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "2"]);
    let doc = key(61);
    register_practitioner(&node.url, &hospital, &doc);
    let t = token(&node.url, &doc, "user/*.cruds");
    run_e2e(
        "fhir-client.mjs",
        "fhir-kit-client",
        &[
            ("CARECHAIN_URL", node.url.as_ref()),
            ("CARECHAIN_TOKEN", t.as_ref()),
        ],
        "fhir-kit-client: all passed",
    );
    node.stop();
}
