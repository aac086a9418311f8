//! The drug supply chain black-box over HTTP and the CLI: a manufacturer commissions, packs
//! and ships; a pharmacy receives, unpacks and dispenses (and records the dispense in the
//! patient's record); a second pharmacy scanning the dispensed serial gets a suspected clone
//! and all three organizations are told; the manufacturer recalls the lot and the patient
//! finds a recall flag in her record, her access log naming who looked her dispense up.
//! Every captured event's hash agrees with GS1's reference hasher (PyPI
//! `epcis-event-hash-generator`); returned events verify offline with `carechain
//! verify-event` and fail once changed. Bad input: schema errors (rollback and proceed),
//! another organization's GTIN or location, a replay, oversized and XML bodies, malformed
//! Digital Links, no token (`epcis_repo.rs`).

use std::time::{Duration, Instant};

use carechain_crypto::SecretKey;
use carechain_types::{Payload, Role, TxBody};
use serde_json::{Value, json};

use crate::common::*;
use crate::epcis_fixtures::*;
use crate::fhir::{call, grant_treatment, register, token};

pub(crate) fn submit(url: &str, signer: &SecretKey, nonce: u64, payload: Payload) {
    let tx = TxBody {
        chain_id: "test-chain".into(),
        signer: signer.public(),
        nonce,
        payload,
    }
    .sign(signer);
    let (s, v) = post_raw(
        &format!("{url}/v1/txs?wait=true&timeout_ms=20000"),
        &raw(&tx),
    );
    assert_eq!(
        (s, v["receipt"]["outcome"].as_str()),
        (200, Some("applied")),
        "{v}"
    );
}

/// `(status, Location, body)` of an authenticated request.
pub(crate) fn req(
    method: &str,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, Option<String>, Value) {
    let a = agent();
    let mut r = match method {
        "POST" => a
            .post(url)
            .header("authorization", format!("Bearer {token}")),
        _ => a
            .get(url)
            .header("authorization", format!("Bearer {token}"))
            .force_send_body(),
    };
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let mut resp = match body {
        Some(b) => r.send(b).unwrap(),
        None => r.send_empty().unwrap(),
    };
    let status = resp.status().as_u16();
    let loc = resp
        .headers()
        .get("location")
        .or_else(|| resp.headers().get("link"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.body_mut().read_to_vec().unwrap();
    (
        status,
        loc,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls `f` until it gives `Some` (the node's background work: capture jobs, the chain
/// follower), failing after 30 s.
pub(crate) fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Captures `doc` as `token`'s organization; the finished capture job.
pub(crate) fn capture(url: &str, token: &str, doc: &Value, behaviour: &str) -> Value {
    let body = doc.to_string();
    let (s, loc, v) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        token,
        &[
            ("content-type", "application/ld+json"),
            ("GS1-Capture-Error-Behaviour", behaviour),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(s, 202, "{v}");
    let job_url = format!("{url}{}", loc.unwrap());
    until("the capture job", || {
        let (s, _, job) = req("GET", &job_url, token, &[], None);
        assert_eq!(s, 200, "{job}");
        (job["running"] == false).then_some(job)
    })
}

/// GS1's reference implementation's hashes of `doc`, in event order.
pub(crate) fn reference_hashes(dir: &std::path::Path, name: &str, doc: &Value) -> Vec<String> {
    let f = dir.join(format!("{name}.jsonld"));
    std::fs::write(&f, doc.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "epcis_event_hash_generator"])
        .arg(&f)
        .output()
        .expect("python3 with epcis-event-hash-generator (pip install epcis-event-hash-generator)");
    assert!(
        out.status.success(),
        "the reference hasher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ni:///"))
        .map(str::to_string)
        .collect()
}

pub(crate) struct Net {
    pub(crate) url: String,
    pub(crate) node: NodeProc,
    pub(crate) maker: String,
    pub(crate) pharmacy_a: String,
    pub(crate) pharmacy_b: String,
    pub(crate) keys: [SecretKey; 4],
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn network() -> Net {
    let dir = tempfile::tempdir().unwrap();
    let (op, maker, a, b) = (key(70), key(71), key(72), key(73));
    let data = dir.path().join("chain");
    let d = data.to_str().unwrap();
    let id = |role: &str, k: &SecretKey| format!("{role}={}", k.public().did());
    carechain_ok(&[
        "init",
        "--data",
        d,
        "--chain-id",
        "test-chain",
        "--identity",
        &id("operator", &op),
        "--identity",
        &id("organization", &maker),
        "--identity",
        &id("organization", &a),
        "--identity",
        &id("organization", &b),
    ]);
    let node = NodeProc::start(&data, &["--block-interval-ms", "2"]);
    let url = node.url.clone();
    let (_, status) = get(&format!("{url}/v1/status"));
    let node_did: carechain_crypto::Did = status["node_key"].as_str().unwrap().parse().unwrap();
    for (org, prefix) in [
        (&maker, MAKER_PREFIX),
        (&a, PHARMACY_A_PREFIX),
        (&b, PHARMACY_B_PREFIX),
    ] {
        submit(
            &url,
            org,
            0,
            Payload::RegisterNode {
                node: node_did.public_key(),
                endpoint: url.clone(),
            },
        );
        let nonce = match prefix {
            MAKER_PREFIX => 0,
            PHARMACY_A_PREFIX => 1,
            _ => 2,
        };
        submit(
            &url,
            &op,
            nonce,
            Payload::AssignCompanyPrefix {
                prefix: prefix.into(),
                organization: Some(org.public()),
            },
        );
    }
    let t = |k: &SecretKey| token(&url, k, "user/*.cruds");
    Net {
        maker: t(&maker),
        pharmacy_a: t(&a),
        pharmacy_b: t(&b),
        url,
        node,
        keys: [op, maker, a, b],
        dir,
    }
}

#[test]
fn a_pack_from_commissioning_to_a_flagged_clone_and_a_recall_that_reaches_the_patient() {
    let n = network();
    let url = n.url.clone();
    let [_, maker_key, a_key, b_key] = &n.keys;

    // The manufacturer: three packs commissioned, two packed into a case, the case shipped.
    let maker_doc = document(vec![
        commissioning(&["S1", "S2", "S3"]),
        packing(&["S1", "S2"]),
        shipping_to(PHARMACY_A_PREFIX),
    ]);
    let job = capture(&url, &n.maker, &maker_doc, "rollback");
    assert_eq!(
        (job["success"].clone(), job["captured"].clone()),
        (json!(true), json!(3)),
        "{job}"
    );
    // Every event hash is the one GS1's reference implementation computes.
    let ours: Vec<String> = job["eventIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ours, reference_hashes(n.dir.path(), "maker", &maker_doc));

    // Pharmacy A: receives, unpacks and dispenses S1 to Alice, recording the dispense.
    let pharmacy_doc = document(vec![
        receiving(PHARMACY_A_PREFIX),
        unpacking(&["S1", "S2"], PHARMACY_A_PREFIX),
        dispensing("S1", PHARMACY_A_PREFIX),
    ]);
    let job = capture(&url, &n.pharmacy_a, &pharmacy_doc, "rollback");
    assert_eq!(job["success"], true, "{job}");
    let ours: Vec<String> = job["eventIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ours,
        reference_hashes(n.dir.path(), "pharmacy", &pharmacy_doc)
    );

    let alice = key(74);
    register(&url, &alice, 0, &alice, Role::Patient, None);
    let t_alice = token(&url, &alice, "patient/*.cruds");
    let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:ietf:rfc:3986", "value": alice.public().did().to_string()}], "name": [{"family": "Demo", "given": ["Alice"]}]});
    let (s, pv, _) = call(
        "POST",
        &format!("{url}/fhir/Patient"),
        &t_alice,
        None,
        Some(&p),
    );
    assert_eq!(s, 201, "{pv}");
    let pid = pv["id"].as_str().unwrap().to_string();
    grant_treatment(&url, &t_alice, &pid, a_key);
    let md = json!({
        "resourceType": "MedicationDispense", "status": "completed",
        "identifier": [{"system": "https://id.gs1.org", "value": link("S1")}],
        "medicationCodeableConcept": {"text": "Amoxicillin 500 mg, 21 capsules"},
        "subject": {"reference": format!("Patient/{pid}")},
        "whenHandedOver": "2026-12-03T15:00:00+01:00",
    });
    let (s, v, _) = call(
        "POST",
        &format!("{url}/fhir/MedicationDispense"),
        &n.pharmacy_a,
        None,
        Some(&md),
    );
    assert_eq!(s, 201, "{v}");

    // At the counter: S2 is Pharmacy A's to dispense; S1 was dispensed, so a scan of it at
    // Pharmacy B is a clone; S2 scanned at B is not B's (diverted); a wrong lot is refused.
    let verify = |t: &str, uri: &str| {
        let q: String = form_urlencoded::byte_serialize(uri.as_bytes()).collect();
        let (s, _, v) = req("GET", &format!("{url}/verify?uri={q}"), t, &[], None);
        assert_eq!(s, 200, "{v}");
        v
    };
    let ok = verify(&n.pharmacy_a, &format!("{}?17=301231&10={LOT}", link("S2")));
    assert_eq!(
        (
            ok["data"]["verified"].clone(),
            ok["carechain"]["status"].clone()
        ),
        (json!(true), json!("ok")),
        "{ok}"
    );
    let clone = verify(&n.pharmacy_b, &link("S1"));
    assert_eq!(clone["data"]["verified"], false, "{clone}");
    assert_eq!(
        clone["data"]["verificationFailureReason"],
        "Not_for_re-distribution"
    );
    assert_eq!(clone["data"]["additionalInfo"], "Suspect");
    assert_eq!(clone["carechain"]["status"], "already_dispensed");
    let diverted = verify(&n.pharmacy_b, &link("S2"));
    assert_eq!(
        diverted["carechain"]["status"], "not_in_custody",
        "{diverted}"
    );
    let wrong_lot = verify(&n.pharmacy_a, &format!("{}?10=OTHER", link("S2")));
    assert_eq!(
        wrong_lot["data"]["verificationFailureReason"], "No_match_GTIN_Serial_Lot",
        "{wrong_lot}"
    );
    let unknown = verify(&n.pharmacy_a, &link("S999"));
    assert_eq!(
        (
            unknown["data"]["verificationFailureReason"].clone(),
            unknown["carechain"]["status"].clone()
        ),
        (json!("No_match_GTIN_Serial"), json!("not_commissioned"))
    );
    // The clone is reported on the ledger: manufacturer, custodian and scanner are told.
    for t in [&n.maker, &n.pharmacy_a, &n.pharmacy_b] {
        until("the clone alert", || {
            let (_, _, v) = req("GET", &format!("{url}/epcis/alerts"), t, &[], None);
            v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| {
                    a["kind"] == "suspect" && a["reason"] == "clone" && a["pack"] == link("S1")
                })
                .then_some(())
        });
    }

    // The pack's history, page by page, as the manufacturer sees it (it commissioned it).
    let mut next = Some(format!(
        "{url}/epcis/events?MATCH_epc={}&perPage=2",
        link("S1")
    ));
    let mut seen = Vec::new();
    while let Some(u) = next.take() {
        let (s, link_header, doc) = req("GET", &u, &n.maker, &[], None);
        assert_eq!(s, 200, "{doc}");
        seen.extend(
            doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                .as_array()
                .unwrap()
                .clone(),
        );
        next = link_header.and_then(|l| {
            l.strip_prefix('<')
                .and_then(|r| r.split_once('>'))
                .map(|(p, _)| format!("{url}{p}"))
        });
    }
    let steps: Vec<&str> = seen
        .iter()
        .map(|e| e["bizStep"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["commissioning", "packing", "unpacking", "dispensing"]
    );
    // Filters: the shipping of the case, by business step and location.
    let (_, _, doc) = req(
        "GET",
        &format!("{url}/epcis/events?EQ_bizStep=shipping&MATCH_epc={CASE}"),
        &n.maker,
        &[],
        None,
    );
    assert_eq!(
        doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The resource views: the same filters as paths.
    for (view, n_events) in [
        ("bizSteps/shipping", 1),
        ("dispositions/in_transit", 1),
        (
            &*format!(
                "epcs/{}",
                form_urlencoded::byte_serialize(link("S2").as_bytes()).collect::<String>()
            ),
            3,
        ),
        ("eventTypes/AggregationEvent", 2),
    ] {
        let (s, _, doc) = req(
            "GET",
            &format!("{url}/epcis/{view}/events"),
            &n.maker,
            &[],
            None,
        );
        assert_eq!(s, 200, "{view}: {doc}");
        let got = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(got, n_events, "{view}");
    }
    // Pharmacy B never held S1: it sees none of its events.
    let (_, _, doc) = req(
        "GET",
        &format!("{url}/epcis/events?MATCH_epc={}", link("S1")),
        &n.pharmacy_b,
        &[],
        None,
    );
    assert_eq!(
        doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"],
        json!([])
    );

    // Offline: every returned event verifies; a changed one does not.
    let (_, status) = get(&format!("{url}/v1/status"));
    let ck = status["checkpoint_key"].as_str().unwrap().to_string();
    let history = until("checkpoints covering the anchors", || {
        let (_, _, doc) = req(
            "GET",
            &format!("{url}/epcis/events?MATCH_anyEPC={}", link("S1")),
            &n.maker,
            &[],
            None,
        );
        let list = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
            .as_array()
            .unwrap()
            .clone();
        list.iter()
            .all(|e| !e["carechain:anchor"]["inclusion"].is_null())
            .then_some(doc)
    });
    let f = n.dir.path().join("history.json");
    std::fs::write(&f, history.to_string()).unwrap();
    let out = carechain_ok(&["verify-event", f.to_str().unwrap(), "--checkpoint-key", &ck]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"].as_array().unwrap().len(), 4);
    let mut changed = history.clone();
    changed["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]["bizLocation"]["id"] =
        json!(sgln(PHARMACY_B_PREFIX));
    std::fs::write(&f, changed.to_string()).unwrap();
    let bad = carechain(&["verify-event", f.to_str().unwrap(), "--checkpoint-key", &ck]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("changed after capture"));

    // The recall: Pharmacy A (holding S2) is told, and Alice finds a flag in her record.
    let job = capture(&url, &n.maker, &document(vec![recall()]), "rollback");
    assert_eq!(job["success"], true, "{job}");
    until("the holder's recall alert", || {
        let (_, _, v) = req(
            "GET",
            &format!("{url}/epcis/alerts"),
            &n.pharmacy_a,
            &[],
            None,
        );
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "recall" && a["packs_held"] == 1)
            .then_some(())
    });
    let verdict = verify(&n.pharmacy_a, &link("S2"));
    assert_eq!(
        (
            verdict["data"]["additionalInfo"].clone(),
            verdict["carechain"]["dispensable"].clone()
        ),
        (json!("Recalled"), json!(false))
    );
    let flag = until("Alice's recall flag", || {
        let (s, b, _) = call(
            "GET",
            &format!("{url}/fhir/Flag?subject=Patient/{pid}"),
            &t_alice,
            None,
            None,
        );
        assert_eq!(s, 200, "{b}");
        b["entry"].as_array().and_then(|e| e.first().cloned())
    });
    assert!(
        flag["resource"]["code"]["text"]
            .as_str()
            .unwrap()
            .contains(LOT),
        "{flag}"
    );
    let (_, log, _) = call(
        "GET",
        &format!("{url}/patients/{pid}/access-log"),
        &t_alice,
        None,
        None,
    );
    let a_did = a_key.public().did().to_string();
    assert!(
        log["entries"].as_array().unwrap().iter().any(|e| {
            e["event"]["agent"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|ag| ag["who"]["identifier"]["value"] == a_did.as_str())
                && e["event"].to_string().contains("MedicationDispense")
        }),
        "{log}"
    );
    // Nothing links Alice to a pack on the ledger: no block names her record, and no supply
    // batch names her at all (her identity's own registration is the only trace of her).
    let mut h = 1;
    let mut batches = 0;
    while let (200, b) = get(&format!("{url}/v1/blocks/{h}")) {
        assert!(!b.to_string().contains(&pid), "block {h}");
        for t in b["transactions"].as_array().into_iter().flatten() {
            if t.to_string().contains("\"supply\"") {
                batches += 1;
                assert!(
                    !t.to_string().contains(&alice.public().did().to_string()),
                    "block {h}"
                );
            }
        }
        h += 1;
    }
    assert!(batches >= 3, "{batches} supply batches seen");
    let _ = (maker_key, b_key);
}
