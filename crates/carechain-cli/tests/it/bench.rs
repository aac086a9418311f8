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

#[test]
fn bench_cluster_reports_every_phase_and_keeps_each_validators_data_where_asked() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = format!("{}/disk{{i}}", parent.path().display());
    let args = [
        "bench",
        "cluster",
        "--txs",
        "400",
        "--signers",
        "40",
        "--dir",
        &dir,
    ];
    // `{i}` names each validator's own directory: with the third one missing, nothing runs.
    for i in [0, 1, 3] {
        std::fs::create_dir(parent.path().join(format!("disk{i}"))).expect("mkdir");
    }
    let missing = carechain(&args);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("disk2"), "{err}");
    std::fs::create_dir(parent.path().join("disk2")).expect("mkdir");
    let out = carechain_ok(&args);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_phases_measured(
        &r,
        &[
            "peak",
            "half_load",
            "light_load",
            "one_down_first_seconds",
            "one_down",
        ],
    );
    assert_eq!(r["transactions_per_phase"], 400, "{r}");
    assert_eq!(r["data_dir"], dir.as_str(), "{r}");
    // Each validator's data went to its own directory, and was removed at the end.
    for i in 0..4 {
        let d = parent.path().join(format!("disk{i}"));
        assert_eq!(
            std::fs::read_dir(&d).expect("readdir").count(),
            0,
            "{}",
            d.display()
        );
    }
}

#[test]
fn bench_cluster_of_one_validator_measures_all_but_one_down() {
    let out = carechain_ok(&[
        "bench",
        "cluster",
        "--validators",
        "1",
        // One validator is fast: enough for each phase to last some clock ticks (the CPU
        // figure is counted in 10 ms ticks).
        "--txs",
        "4000",
        "--signers",
        "40",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["validators"], 1, "{r}");
    assert_phases_measured(&r, &["peak", "half_load", "light_load"]);
    // With one down, fewer than 4 have no quorum: said, not measured.
    for phase in ["one_down_first_seconds", "one_down"] {
        assert!(
            r[phase].as_str().is_some_and(|s| s.starts_with("not run")),
            "{r}"
        );
    }
    let bad = carechain(&["bench", "cluster", "--validators", "0"]);
    assert!(!bad.status.success());
}

/// Every phase named committed transactions, at some latency, in blocks.
fn assert_phases_measured(r: &Value, phases: &[&str]) {
    for phase in phases {
        let p = &r[phase];
        for key in ["committed_tx_per_s", "finality_p50_ms", "blocks_per_s"] {
            assert!(p[key].as_f64().unwrap_or(0.0) > 0.0, "{phase}.{key}: {r}");
        }
        assert!(
            p["finality_p99_ms"].as_f64() >= p["finality_p50_ms"].as_f64(),
            "{phase}: {r}"
        );
        // Every transaction of the phase is in some block.
        assert!(
            p["mean_block_txs"].as_f64().unwrap_or(0.0) >= 1.0,
            "{phase}: {r}"
        );
        // CPU is counted in 10 ms clock ticks: a short quiet phase may see none.
        assert!(
            p["cpu_cores_busy"].as_f64().unwrap_or(-1.0) >= 0.0,
            "{phase}: {r}"
        );
    }
    // The saturation phase keeps the cores busy.
    assert!(
        r["peak"]["cpu_cores_busy"].as_f64().unwrap_or(0.0) > 0.0,
        "{r}"
    );
}

#[test]
fn bench_supply_reports_capture_verification_and_the_history_query() {
    let out = carechain_ok(&[
        "bench",
        "supply",
        "--events",
        "400",
        "--batch",
        "200",
        "--threads",
        "2",
        "--verifies",
        "200",
        "--stored",
        "2000",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    for (section, key) in [
        ("capture", "events_per_s"),
        ("verify", "per_s"),
        ("verify", "ms_p99"),
        ("verify_http", "per_s"),
        ("verify_http", "ms_p99"),
        ("history_query", "ms_p99"),
        ("raw", "event_hash_per_s_one_core"),
        ("raw", "schema_validation_events_per_s_one_core"),
    ] {
        assert!(
            r[section][key].as_f64().is_some_and(|v| v > 0.0),
            "{section}.{key}: {r}"
        );
    }
    assert_eq!(r["capture"]["events"], 400);
    assert_eq!(r["history_query"]["events_stored"], 2400);
}
