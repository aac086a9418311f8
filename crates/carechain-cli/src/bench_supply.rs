//! `carechain bench supply`: the supply chain in-process (no HTTP): EPCIS capture (schema,
//! CBV 2.0 hash, custody, one anchoring batch per document, stored and indexed) in events per
//! second; pack verification at dispense (requests per second, latency); one product's full
//! history queried with many other events stored. Raw limits measured in the same run: the
//! event hash and the schema validation alone.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use carechain_crypto::SecretKey;
use carechain_supply::store::{NewEvent, StoredEvent, role};
use carechain_supply::{Actor, Behaviour, Query, Supply};
use carechain_types::{GenesisIdentity, Payload, Role};
use serde_json::{Value, json};

use crate::bench_claims::run_txs;
use crate::bench_fhir::{BenchService, pct, run_parallel};
use crate::out_line;

/// What to measure.
pub struct SupplyBench {
    /// Events to capture (in documents of `batch`).
    pub events: usize,
    /// Events per capture document.
    pub batch: usize,
    /// Concurrent capturing clients.
    pub threads: usize,
    /// Verification requests.
    pub verifies: usize,
    /// Other events stored before the history query.
    pub stored: usize,
}

fn commissioning(serials: std::ops::Range<usize>) -> Value {
    json!({
        "type": "ObjectEvent", "eventTime": "2026-12-01T09:00:00.000+01:00", "eventTimeZoneOffset": "+01:00",
        "action": "ADD", "bizStep": "commissioning", "disposition": "active",
        "epcList": serials.map(|s| format!("urn:epc:id:sgtin:9506000.013435.B{s}")).collect::<Vec<_>>(),
        "bizLocation": {"id": "urn:epc:id:sgln:9506000.00001.0"},
        "ilmd": {"cbvmda:lotNumber": "BENCH1", "cbvmda:itemExpirationDate": "2030-12-31"},
    })
}

fn document(events: Vec<Value>) -> Value {
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2026-12-01T08:00:00Z",
        "epcisBody": {"eventList": events},
    })
}

/// `GET /verify` over HTTP on loopback: (requests/s, sorted latencies).
fn http_verifies(
    bs: &BenchService,
    supply: &std::sync::Arc<Supply>,
    maker: &SecretKey,
    captured: usize,
    n: usize,
) -> Result<(f64, Vec<Duration>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let services = carechain_server::Services {
        node: bs.node.clone(),
        service: bs.svc.clone(),
        supply: Some(supply.clone()),
    };
    rt.spawn(carechain_server::serve(
        services,
        listener,
        carechain_server::UiOptions::default(),
        std::future::pending(),
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let assertion = carechain_service::make_assertion(maker, "http://bench/auth/token", now);
    let base = format!("http://{addr}");
    let token = crate::client::Client::new(&base).token(&assertion, "user/*.rs")?["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let out = run_parallel(4, n, |i| {
        let uri = format!("https://id.gs1.org/01/09506000134352/21/B{}", i % captured);
        let mut r = agent
            .get(&format!(
                "{base}/verify?uri={}",
                form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
            ))
            .header("authorization", format!("Bearer {token}"))
            .call()?;
        if r.status().as_u16() != 200 {
            bail!("HTTP {}", r.status());
        }
        let _ = r.body_mut().read_to_vec()?;
        Ok(())
    });
    rt.shutdown_background();
    out
}

pub fn run(b: SupplyBench) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (op, maker) = (SecretKey::generate()?, SecretKey::generate()?);
    let bs = BenchService::start(dir.path(), "carechain-bench-supply", |g, _| {
        for (k, role) in [(&op, Role::Operator), (&maker, Role::Organization)] {
            g.identities.push(GenesisIdentity {
                key: k.public(),
                role,
                parent: None,
            });
        }
    })?;
    let node_pk = bs.node_key.public();
    run_txs(
        &bs.svc,
        &maker,
        0,
        vec![Payload::RegisterNode {
            node: node_pk,
            endpoint: "http://bench".into(),
        }],
    )?;
    run_txs(
        &bs.svc,
        &op,
        0,
        vec![Payload::AssignCompanyPrefix {
            prefix: "9506000".into(),
            organization: Some(maker.public()),
        }],
    )?;
    let supply = Supply::open(bs.svc.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let actor = Actor {
        did: maker.public().did(),
        organization: maker.public(),
    };

    // Raw limits: hashing and schema validation alone, one core.
    let sample = document((0..b.batch).map(|i| commissioning(i..i + 1)).collect());
    let events = carechain_epcis::hash::json_events(&sample).map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = Instant::now();
    for e in &events {
        std::hint::black_box(carechain_epcis::hash::json_event_hash(
            e,
            sample.get("@context"),
        ));
    }
    let hash_per_s = events.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let errs = carechain_epcis::schema::validate(&sample, 10);
    let schema_per_s = events.len() as f64 / t.elapsed().as_secs_f64();
    if !errs.is_empty() {
        bail!("the bench document is not schema-valid: {errs:?}");
    }

    // Capture: documents of `batch` commissioning events, `threads` at once.
    let docs = b.events.div_ceil(b.batch);
    let t = Instant::now();
    let (_, cap_lat) = run_parallel(b.threads, docs, |d| {
        let doc = document(
            (0..b.batch)
                .map(|i| commissioning(d * b.batch + i..d * b.batch + i + 1))
                .collect(),
        );
        let job = supply
            .run(
                &actor,
                &doc,
                Behaviour::Rollback,
                json!({"captureID": format!("bench-{d}"), "organization": actor.did.to_string()}),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if job["success"] != true {
            bail!("bench capture failed: {}", job["errors"]);
        }
        Ok(())
    })?;
    let captured = docs * b.batch;
    let capture_per_s = captured as f64 / t.elapsed().as_secs_f64();

    // Verification of commissioned packs by their custodian.
    let (verify_per_s, lat) = run_parallel(2, b.verifies, |i| {
        let uri = format!("https://id.gs1.org/01/09506000134352/21/B{}", i % captured);
        let v = supply
            .verify_pack(&actor, &uri)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if v["carechain"]["status"] != "ok" {
            bail!("bench pack not ok: {v}");
        }
        Ok(())
    })?;

    // The same over HTTP: the node's router on loopback, 4 client threads with one token.
    let (http_per_s, http_lat) = http_verifies(&bs, &supply, &maker, captured, b.verifies)?;

    // History query with `stored` other events in the repository (synthesized directly into
    // the store: one event each of other serials, as capture stores them).
    let t = Instant::now();
    let template = commissioning(0..1);
    for chunk in (0..b.stored).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .map(|i| {
                let epc = format!("https://id.gs1.org/01/09506000134352/21/X{i}");
                let mut ev = template.clone();
                ev["epcList"] = json!([epc]);
                let digest = carechain_crypto::sha256(epc.as_bytes()).0;
                NewEvent {
                    digest,
                    time_ms: 1_796_000_000_000 + *i as i64,
                    ids: vec![(carechain_supply::custody::item_id(&epc).0, role::EPC)],
                    own_id: None,
                    stored: StoredEvent {
                        event: ev,
                        hash: format!("ni:///sha-256;{}?ver=CBV2.0", hex::encode(digest)),
                        organization: actor.did.to_string(),
                        capture: "synthetic".into(),
                        tx: "00".repeat(32),
                        index: 0,
                        log_index: 0,
                        context: Value::Null,
                    },
                }
            })
            .collect();
        supply
            .store()
            .put_events(batch)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let fill_secs = t.elapsed().as_secs_f64();
    let total_stored = supply
        .store()
        .last_seq()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let q = Query {
        matches: vec![(
            "https://id.gs1.org/01/09506000134352/21/B7".into(),
            role::EPC,
        )],
        ..Query::default()
    };
    let mut qlat: Vec<Duration> = Vec::new();
    for _ in 0..500 {
        let t0 = Instant::now();
        let page = supply
            .query(&actor, &q, 100, None, "bench")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        qlat.push(t0.elapsed());
        if page.document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            .as_array()
            .map_or(0, Vec::len)
            != 1
        {
            bail!("the bench history query found the wrong events");
        }
    }
    qlat.sort();
    let mut cap_lat = cap_lat;
    cap_lat.sort();
    let out = json!({
        "bench": "supply",
        "capture": {
            "events": captured, "per_document": b.batch, "clients": b.threads,
            "events_per_s": capture_per_s.round(),
            "document_ms_p50": pct(&cap_lat, 0.5), "document_ms_p99": pct(&cap_lat, 0.99),
            "target_events_per_s": 10_000,
        },
        "verify": {
            "requests": b.verifies, "per_s": verify_per_s.round(),
            "ms_p50": pct(&lat, 0.5), "ms_p99": pct(&lat, 0.99),
            "target_per_s": 20_000, "target_ms_p99": 5,
        },
        "verify_http": {
            "requests": b.verifies, "per_s": http_per_s.round(), "clients": 4,
            "ms_p50": pct(&http_lat, 0.5), "ms_p99": pct(&http_lat, 0.99),
        },
        "history_query": {
            "events_stored": total_stored, "fill_s": (fill_secs * 10.0).round() / 10.0,
            "ms_p50": pct(&qlat, 0.5), "ms_p99": pct(&qlat, 0.99), "target_ms_p99": 10,
        },
        "raw": {
            "event_hash_per_s_one_core": hash_per_s.round(),
            "schema_validation_events_per_s_one_core": schema_per_s.round(),
            "capture_over_hash": (capture_per_s / hash_per_s * 1000.0).round() / 1000.0,
            "capture_over_schema": (capture_per_s / schema_per_s * 1000.0).round() / 1000.0,
        },
    });
    out_line(&serde_json::to_string_pretty(&out)?);
    drop(supply);
    bs.node.shutdown();
    Ok(())
}
