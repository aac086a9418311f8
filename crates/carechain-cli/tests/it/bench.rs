//! The benchmark programs run and report every figure BENCHMARKS.md quotes (tiny sizes: this
//! checks the programs, not the machine — no figure is compared with a target here), and the
//! search benchmark's queries really find the imported Synthea records.

use serde_json::Value;

use crate::common::*;

#[test]
fn bench_fhir_reports_creates_reads_import_and_searches_that_find_records() {
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/fhir/synthea-r4-bench"
    );
    let out = carechain_ok(&[
        "bench",
        "fhir",
        "--creates",
        "64",
        "--reads",
        "64",
        "--threads",
        "8",
        "--bundles",
        "4",
        "--searches",
        "8",
        "--data",
        data,
    ]);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    for (section, key) in [
        ("create", "per_s"),
        ("create", "p99_ms"),
        ("read_by_id", "per_s"),
        ("read_by_id", "per_s_until_audit_written"),
        ("read_by_id_durable_audit", "per_s"),
        ("transaction_import", "resources_per_s"),
        ("raw_single_thread", "fdatasync_1k_per_s"),
    ] {
        assert!(
            r[section][key].as_f64().unwrap_or(0.0) > 0.0,
            "{section}.{key}: {r}"
        );
    }
    assert_eq!(r["create"]["count"], 64);
    assert!(
        r["transaction_import"]["resources"].as_u64().unwrap() > 100,
        "{r}"
    );
    let searches = r["search"].as_object().expect("search figures");
    assert_eq!(searches.len(), 5, "{r}");
    for (kind, s) in searches {
        assert!(
            s["p95_ms"].as_f64().unwrap() >= s["p50_ms"].as_f64().unwrap(),
            "{kind}"
        );
        // Every kind finds the imported patients' records (an empty search is no benchmark).
        assert!(s["mean_entries"].as_f64().unwrap() >= 1.0, "{kind}: {s}");
    }
}
