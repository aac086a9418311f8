//! The EPCIS repository's edges, black-box over HTTP: bad captures refused with their
//! reasons and changing nothing (schema errors with rollback and proceed, another
//! organization's GTIN or location, a replay, oversized, XML, not JSON, too many events, no
//! token, malformed identifiers and parameters, another organization's capture job), and
//! named queries whose subscriptions deliver new events to a webhook, signed twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::epcis::{capture, network, req};
use crate::epcis_fixtures::*;

#[test]
fn bad_captures_are_refused_with_their_reasons_and_change_nothing() {
    let n = network();
    let url = n.url.clone();
    // Schema errors, rollback: nothing captured, the error names the event and its path.
    let mut broken = commissioning(&["X1"]);
    broken["action"] = json!("SOMETIMES");
    let doc = document(vec![commissioning(&["X2"]), broken]);
    let job = capture(&url, &n.maker, &doc, "rollback");
    assert_eq!(
        (job["success"].clone(), job["captured"].clone()),
        (json!(false), json!(0)),
        "{job}"
    );
    assert!(
        job["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["eventIndex"] == 1),
        "{job}"
    );
    // The same with proceed: the valid event is captured.
    let job = capture(&url, &n.maker, &doc, "proceed");
    assert_eq!(
        (job["success"].clone(), job["captured"].clone()),
        (json!(false), json!(1)),
        "{job}"
    );
    // A replay changes nothing.
    let job = capture(
        &url,
        &n.maker,
        &document(vec![commissioning(&["X2"])]),
        "rollback",
    );
    assert_eq!(
        (job["captured"].clone(), job["duplicates"].clone()),
        (json!(0), json!(1)),
        "{job}"
    );
    // Another organization's GTIN, and another's location.
    let job = capture(
        &url,
        &n.pharmacy_a,
        &document(vec![commissioning(&["X3"])]),
        "rollback",
    );
    assert_eq!(job["success"], false);
    assert!(
        job["errors"].to_string().contains("not_location_owner")
            || job["errors"].to_string().contains("not_gtin_owner"),
        "{job}"
    );
    let mut theirs = commissioning(&["X4"]);
    theirs["readPoint"] = json!({"id": sgln(PHARMACY_A_PREFIX)});
    theirs["bizLocation"] = json!({"id": sgln(PHARMACY_A_PREFIX)});
    let job = capture(&url, &n.pharmacy_a, &document(vec![theirs]), "rollback");
    assert!(
        job["errors"].to_string().contains("not_gtin_owner"),
        "{job}"
    );
    // Refused before any work: too large, XML, not JSON, too many events, no token.
    let big = vec![b' '; carechain_supply::MAX_CAPTURE_BYTES + 1];
    let (s, _, v) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        &n.maker,
        &[("content-type", "application/json")],
        Some(&big),
    );
    assert_eq!(s, 413, "{v}");
    let (s, _, v) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        &n.maker,
        &[("content-type", "application/xml")],
        Some(b"<epcis/>"),
    );
    assert_eq!(
        (s, v["type"].as_str()),
        (400, Some("epcisException:ValidationException")),
        "{v}"
    );
    let (s, _, _) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        &n.maker,
        &[("content-type", "text/plain")],
        Some(b"hello"),
    );
    assert_eq!(s, 415);
    let (s, _, _) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        &n.maker,
        &[("content-type", "application/json")],
        Some(b"{not json"),
    );
    assert_eq!(s, 400);
    let many = document(
        (0..=carechain_supply::CAPTURE_LIMIT)
            .map(|i| commissioning(&[&format!("M{i}")]))
            .collect(),
    );
    let (s, _, _) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        &n.maker,
        &[("content-type", "application/json")],
        Some(many.to_string().as_bytes()),
    );
    assert_eq!(s, 413);
    let (s, _, _) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        "nope",
        &[("content-type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(s, 401);
    // Malformed identifiers and parameters: clear 400s.
    let (s, _, v) = req(
        "GET",
        &format!("{url}/verify?uri=https://id.gs1.org/01/09506000134353/21/1"),
        &n.maker,
        &[],
        None,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("check digit"), "{v}");
    let (s, _, _) = req(
        "GET",
        &format!("{url}/epcis/events?MATCH_epc=urn:epc:id:sgtin:12.3.4"),
        &n.maker,
        &[],
        None,
    );
    assert_eq!(s, 400);
    let (s, _, v) = req(
        "GET",
        &format!("{url}/epcis/events?EQ_colour=red"),
        &n.maker,
        &[],
        None,
    );
    assert_eq!(
        (s, v["type"].as_str()),
        (400, Some("epcisException:QueryParameterException"))
    );
    // Who may act: an organization's member acts for it; a patient or an operator is no
    // organization of the supply chain.
    let (pharmacist, patient) = (key(75), key(76));
    crate::fhir::register(
        &url,
        &n.keys[2],
        1,
        &pharmacist,
        carechain_types::Role::Practitioner,
        Some(&n.keys[2]),
    );
    crate::fhir::register(
        &url,
        &patient,
        0,
        &patient,
        carechain_types::Role::Patient,
        None,
    );
    let t_pharmacist = crate::fhir::token(&url, &pharmacist, "user/*.rs");
    let (s, _, v) = req(
        "GET",
        &format!("{url}/verify?uri=https://id.gs1.org/01/09506000134352/21/X2"),
        &t_pharmacist,
        &[],
        None,
    );
    assert_eq!(
        (s, v["carechain"]["status"].as_str()),
        (200, Some("not_in_custody")),
        "{v}"
    );
    for (who, t) in [
        (
            "patient",
            crate::fhir::token(&url, &patient, "patient/*.rs"),
        ),
        (
            "operator",
            crate::fhir::token(&url, &n.keys[0], "user/*.rs"),
        ),
    ] {
        for u in [
            "/epcis/events",
            "/verify?uri=https://id.gs1.org/01/09506000134352/21/X2",
            "/epcis/alerts",
        ] {
            let (s, _, v) = req("GET", &format!("{url}{u}"), &t, &[], None);
            assert_eq!(
                (s, v["type"].as_str()),
                (403, Some("epcisException:ClientUnauthorizedException")),
                "{who} {u}: {v}"
            );
        }
    }
    // A capture job is its organization's only.
    let job = capture(
        &url,
        &n.maker,
        &document(vec![commissioning(&["X9"])]),
        "rollback",
    );
    let (s, _, _) = req(
        "GET",
        &format!("{url}/epcis/capture/{}", job["captureID"].as_str().unwrap()),
        &n.pharmacy_b,
        &[],
        None,
    );
    assert_eq!(s, 404);
}

/// One HTTP request received on `listener`: its headers (lower-cased names) and body; answers
/// 200.
fn receive_one(listener: &std::net::TcpListener) -> (Vec<(String, String)>, Vec<u8>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let (mut stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .unwrap();
    (headers, body)
}

#[test]
fn a_subscription_delivers_new_events_to_its_webhook_signed_twice() {
    use hmac::{KeyInit, Mac};
    let n = network();
    let url = n.url.clone();
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = format!("http://{}/hook", hook.local_addr().unwrap());
    let q = json!({"name": "commissioned", "query": {"EQ_bizStep": ["commissioning"]}});
    let (s, loc, v) = req(
        "POST",
        &format!("{url}/epcis/queries"),
        &n.maker,
        &[("content-type", "application/json")],
        Some(q.to_string().as_bytes()),
    );
    assert_eq!(
        (s, loc.as_deref()),
        (201, Some("/epcis/queries/commissioned")),
        "{v}"
    );
    // Names are unique; other organizations see nothing of it.
    let (s, _, _) = req(
        "POST",
        &format!("{url}/epcis/queries"),
        &n.pharmacy_a,
        &[("content-type", "application/json")],
        Some(q.to_string().as_bytes()),
    );
    assert_eq!(s, 409);
    let (s, _, _) = req(
        "GET",
        &format!("{url}/epcis/queries/commissioned"),
        &n.pharmacy_a,
        &[],
        None,
    );
    assert_eq!(s, 404);
    let sub = json!({"dest": dest, "signatureToken": "s3cret", "stream": true});
    let (s, _, v) = req(
        "POST",
        &format!("{url}/epcis/queries/commissioned/subscriptions"),
        &n.maker,
        &[("content-type", "application/json")],
        Some(sub.to_string().as_bytes()),
    );
    assert_eq!(s, 201, "{v}");
    assert!(
        v.get("signatureToken").is_none(),
        "the secret is not echoed: {v}"
    );
    // Scheduled subscriptions are refused with a reason.
    let (s, _, _) = req(
        "POST",
        &format!("{url}/epcis/queries/commissioned/subscriptions"),
        &n.maker,
        &[("content-type", "application/json")],
        Some(
            json!({"dest": dest, "schedule": {"hour": "1"}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(s, 400);

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(receive_one(&hook)));
    let job = capture(
        &url,
        &n.maker,
        &document(vec![commissioning(&["W1"]), packing(&["W1"])]),
        "rollback",
    );
    assert_eq!(job["success"], true, "{job}");
    let (headers, body) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook delivery");
    let header = |k: &str| {
        headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let events = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        .as_array()
        .unwrap();
    assert_eq!(events.len(), 1, "only the commissioning matches: {doc}");
    assert_eq!(events[0]["eventID"], job["eventIDs"][0]);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&body);
    assert_eq!(
        header("gs1-signature"),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let (did, sig) = header("carechain-signature")
        .split_once(';')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    let (_, status) = get(&format!("{url}/v1/status"));
    assert_eq!(did, status["node_key"].as_str().unwrap());
    let did: carechain_crypto::Did = did.parse().unwrap();
    let mut s64 = [0u8; 64];
    hex::decode_to_slice(&sig, &mut s64).unwrap();
    did.public_key()
        .verify(
            carechain_crypto::Namespace::EpcisDelivery,
            &body,
            &carechain_crypto::Signature(s64),
        )
        .unwrap();
}

#[test]
fn an_xml_capture_keeps_its_xml_event_hashes() {
    let n = network();
    let url = n.url.clone();
    let xml = commissioning_xml(&["XML1", "XML2"]);
    let (s, loc, v) = req(
        "POST",
        &format!("{url}/epcis/capture"),
        &n.maker,
        &[("content-type", "application/xml")],
        Some(xml.as_bytes()),
    );
    assert_eq!(s, 202, "{v}");
    let job_url = format!("{url}{}", loc.unwrap());
    let job = crate::epcis::until("the XML capture", || {
        let (_, _, job) = req("GET", &job_url, &n.maker, &[], None);
        (job["running"] == false).then_some(job)
    });
    assert_eq!(job["success"], true, "{job}");
    // The event's identity is the hash of its XML, by our hasher and by GS1's.
    let ours = carechain_epcis::hash::xml_document_prehashes(&xml).unwrap();
    let f = n.dir.path().join("capture.xml");
    std::fs::write(&f, &xml).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "epcis_event_hash_generator"])
        .arg(&f)
        .output()
        .unwrap();
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ni:///"))
        .map(str::to_string)
        .collect();
    let want = vec![carechain_epcis::hash::hash_of_prehash(&ours[0])];
    assert_eq!(theirs, want);
    assert_eq!(job["eventIDs"], json!(want));
    // Its custody is on the ledger like any other: the pack verifies for its owner.
    let (s, _, v) = req(
        "GET",
        &format!("{url}/verify?uri={}", link("XML2")),
        &n.maker,
        &[],
        None,
    );
    assert_eq!(
        (s, v["carechain"]["status"].as_str()),
        (200, Some("ok")),
        "{v}"
    );
}

/// SIGKILL while captures are in flight: after the restart, every event the ledger anchored
/// is held by the repository (written as pending before its batch was submitted, stored by
/// the chain follower from the block when the capture itself could not).
#[test]
fn a_node_killed_during_captures_keeps_every_anchored_event() {
    let mut n = network();
    let url = n.url.clone();
    let mut jobs = Vec::new();
    for d in 0..6 {
        let doc = document(
            (0..200)
                .map(|i| commissioning(&[&format!("K{d}x{i}")]))
                .collect(),
        );
        let (s, loc, v) = req(
            "POST",
            &format!("{url}/epcis/capture"),
            &n.maker,
            &[("content-type", "application/json")],
            Some(doc.to_string().as_bytes()),
        );
        assert_eq!(s, 202, "{v}");
        jobs.push(format!("{url}{}", loc.unwrap()));
    }
    // Killed once one capture has finished, the others in flight.
    crate::epcis::until("a first capture", || {
        jobs.iter()
            .any(|j| req("GET", j, &n.maker, &[], None).2["running"] == false)
            .then_some(())
    });
    n.node.kill9();
    let node = NodeProc::start(&n.dir.path().join("chain"), &["--block-interval-ms", "2"]);
    let url = node.url.clone();
    let t = crate::fhir::token(&url, &n.keys[1], "user/*.cruds");
    let mut anchored = Vec::new();
    let mut h = 1;
    while let (200, b) = get(&format!("{url}/v1/blocks/{h}")) {
        for (tx, r) in b["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["receipts"].as_array().unwrap())
        {
            if tx["payload"]["type"] == "supply" && r["outcome"] == "applied" {
                for e in tx["payload"]["events"].as_array().unwrap() {
                    anchored.push(e["event_hash"].as_str().unwrap().to_string());
                }
            }
        }
        h += 1;
    }
    assert!(anchored.len() >= 200, "{} events anchored", anchored.len());
    for e in &anchored {
        let id: String = form_urlencoded::byte_serialize(e.as_bytes()).collect();
        crate::epcis::until("every anchored event stored", || {
            let (s, _, doc) = req("GET", &format!("{url}/epcis/events/{id}"), &t, &[], None);
            (s == 200).then_some(doc)
        });
    }
    // Interrupted jobs say so.
    for j in &jobs {
        let path = j.split_once("/epcis/").map(|(_, p)| p).unwrap();
        let (s, _, job) = req("GET", &format!("{url}/epcis/{path}"), &t, &[], None);
        assert_eq!((s, job["running"].clone()), (200, json!(false)), "{job}");
    }
}
