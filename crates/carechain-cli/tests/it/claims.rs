//! A claim from submission to payment, black-box over HTTP and the CLI: an insurer with
//! genesis tokens deploys the shipped claims contract, publishes its plan, accepts the node
//! as a submitter, funds it and enrolls a member by pseudonym; a practitioner posts a claim
//! bundle to `Claim/$submit` and gets a ClaimResponse, paid in the same block; the patient
//! sees her ExplanationOfBenefit; `carechain verify-claim` checks the decision offline and
//! fails on any change; a duplicate, a malformed bundle and an unknown contract each get a
//! ClaimResponse error, never a 500.

use carechain_types::Role;
use serde_json::{Value, json};

use crate::claims_fixtures::{benefit, bundle, item, plan};
use crate::common::*;
use crate::fhir::{
    call, grant_treatment, key_file, permit_only, register, register_practitioner, token,
};

/// Runs the CLI with `args`; its stdout as JSON.
fn cli_json(args: &[&str]) -> Value {
    let out = carechain_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_claim_from_submission_to_payment_verified_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (hospital, insurer) = (key(40), key(41));
    let data = dir.path().join("chain");
    let d = data.to_str().unwrap();
    let (h_did, i_did) = (
        hospital.public().did().to_string(),
        insurer.public().did().to_string(),
    );
    carechain_ok(&[
        "init",
        "--data",
        d,
        "--chain-id",
        "test-chain",
        "--identity",
        &format!("organization={h_did}"),
        "--identity",
        &format!("organization={i_did}"),
        "--balance",
        &format!("{i_did}=1000000"),
        "--balance",
        &format!("{}=50000", key(43).public().did()),
    ]);
    let node = NodeProc::start(&data, &["--block-interval-ms", "2"]);
    let url = node.url.clone();
    let status = get(&format!("{url}/v1/status")).1;
    let node_did = status["node_key"].as_str().unwrap().to_string();
    let checkpoint_key = status["checkpoint_key"].as_str().unwrap().to_string();

    let (doc, patient) = (key(42), key(43));
    register_practitioner(&url, &hospital, &doc);
    register(&url, &patient, 0, &patient, Role::Patient, None);
    let t_pat = token(&url, &patient, "patient/*.cruds");
    let t_doc = token(&url, &doc, "user/*.cruds");
    let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:ietf:rfc:3986", "value": patient.public().did().to_string()}], "name": [{"family": "Demo", "given": ["Alice"]}]});
    let (s, pv, _) = call(
        "POST",
        &format!("{url}/fhir/Patient"),
        &t_pat,
        None,
        Some(&p),
    );
    assert_eq!(s, 201, "{pv}");
    let pid = pv["id"].as_str().unwrap().to_string();
    grant_treatment(&url, &t_pat, &pid, &hospital);

    // The insurer publishes its rules as a claims contract, funds it and enrolls Alice.
    let ins_key = key_file(dir.path(), "insurer.key", &insurer);
    let ik = ins_key.to_str().unwrap();
    let r = cli_json(&[
        "contract",
        "deploy",
        "--key",
        ik,
        "--shipped",
        "claims",
        "--url",
        &url,
    ]);
    assert_eq!(r["receipt"]["outcome"], "applied", "{r}");
    let r = cli_json(&[
        "contract",
        "instantiate",
        "--key",
        ik,
        "--code",
        "claims",
        "--funds",
        "500000",
        "--label",
        "acme-silver",
        "--msg",
        &plan(&hospital, &node_did).to_string(),
        "--url",
        &url,
    ]);
    let contract = r["receipt"]["data"]["contract"]
        .as_str()
        .unwrap()
        .to_string();
    let member = cli_json(&[
        "claims",
        "member",
        "--contract",
        &contract,
        "--subscriber-id",
        "ACME-0042",
    ]);
    let enroll = json!({"enroll": {"member": member["member"], "from_ms": 1_700_000_000_000u64, "until_ms": 1_900_000_000_000u64}});
    let r = cli_json(&[
        "contract",
        "call",
        "--key",
        ik,
        "--contract",
        &contract,
        "--msg",
        &enroll.to_string(),
        "--url",
        &url,
    ]);
    assert_eq!(r["receipt"]["outcome"], "applied", "{r}");

    // The practitioner submits: one covered visit over the fee schedule, one lab test, one
    // code the plan does not cover.
    let b = bundle(
        &pid,
        &contract,
        "CLM-1",
        json!([
            item(1, "99213", 1, 150.0),
            item(2, "85025", 1, 25.0),
            item(3, "97110", 1, 60.0)
        ]),
    );
    let submit = format!("{url}/fhir/Claim/$submit");
    let (s, cr, _) = call("POST", &submit, &t_doc, None, Some(&b));
    assert_eq!(s, 200, "{cr}");
    assert_eq!(cr["resourceType"], "ClaimResponse");
    assert_eq!(cr["outcome"], "complete", "{cr}");
    let items = cr["item"].as_array().unwrap();
    assert_eq!(
        (benefit(&items[0]), benefit(&items[1]), benefit(&items[2])),
        (80.0, 25.0, 0.0)
    );
    let denied =
        &items[2]["adjudication"].as_array().unwrap().last().unwrap()["reason"]["coding"][0];
    assert_eq!(
        (denied["system"].as_str(), denied["code"].as_str()),
        (Some(carechain_claims::CARC_SYSTEM), Some("96"))
    );
    assert_eq!(cr["payment"]["amount"]["value"], 105.0);
    // Paid in the deciding transaction: the provider holds it now.
    let bal = cli_json(&[
        "token",
        "balance",
        &doc.public().did().to_string(),
        "--url",
        &url,
    ]);
    assert_eq!(bal["balance"], 10_500, "{bal}");
    assert!(bal["state_proof"]["value_hash"].is_string());
    let c = get(&format!("{url}/v1/contracts/{contract}")).1;
    assert_eq!(c["balance"], 500_000 - 10_500);

    // Offline verification of the decision, and its failure on any change.
    let (bf, rf) = (
        dir.path().join("bundle.json"),
        dir.path().join("response.json"),
    );
    std::fs::write(&bf, b.to_string()).unwrap();
    std::fs::write(&rf, cr.to_string()).unwrap();
    let verify = |bundle: &std::path::Path, response: &std::path::Path| {
        carechain(&[
            "verify-claim",
            "--bundle",
            bundle.to_str().unwrap(),
            "--response",
            response.to_str().unwrap(),
            "--checkpoint-key",
            &checkpoint_key,
        ])
    };
    let out = verify(&bf, &rf);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    assert_eq!(
        (v["ok"].clone(), v["paid"].clone()),
        (json!(true), json!(10_500))
    );
    let mut altered = b.clone();
    altered["entry"][0]["resource"]["item"][0]["unitPrice"]["value"] = json!(1500.0);
    let af = dir.path().join("altered.json");
    std::fs::write(&af, altered.to_string()).unwrap();
    let out = verify(&af, &rf);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not this bundle's"));
    let mut lie = cr.clone();
    lie["payment"]["amount"]["value"] = json!(1050.0);
    let lf = dir.path().join("lie.json");
    std::fs::write(&lf, lie.to_string()).unwrap();
    assert!(!verify(&bf, &lf).status.success());

    // The patient sees it as an ExplanationOfBenefit.
    let (s, eobs, _) = call(
        "GET",
        &format!("{url}/fhir/ExplanationOfBenefit?patient=Patient/{pid}"),
        &t_pat,
        None,
        None,
    );
    assert_eq!(s, 200, "{eobs}");
    let eob = &eobs["entry"][0]["resource"];
    assert_eq!(
        (
            eob["outcome"].as_str(),
            eob["payment"]["amount"]["value"].as_f64()
        ),
        (Some("complete"), Some(105.0))
    );

    // The same claim again is a duplicate; a bundle without items, or for a contract that
    // does not exist, gets a ClaimResponse error; none is a 500.
    let (s, dup, _) = call("POST", &submit, &t_doc, None, Some(&b));
    assert_eq!((s, dup["outcome"].as_str()), (200, Some("error")), "{dup}");
    assert_eq!(dup["error"][0]["code"]["coding"][0]["code"], "18");
    let mut empty = bundle(&pid, &contract, "CLM-2", json!([]));
    let (s, bad, _) = call("POST", &submit, &t_doc, None, Some(&empty));
    assert_eq!((s, bad["outcome"].as_str()), (400, Some("error")), "{bad}");
    assert!(bad["disposition"].as_str().unwrap().contains("Claim.item"));
    empty["entry"][2]["resource"]["identifier"][0]["value"] =
        json!(format!("contract:{}", "00".repeat(32)));
    empty["entry"][0]["resource"]["item"] = json!([item(1, "99213", 1, 10.0)]);
    let (s, unknown, _) = call("POST", &submit, &t_doc, None, Some(&empty));
    assert_eq!(
        (s, unknown["outcome"].as_str()),
        (422, Some("error")),
        "{unknown}"
    );
    let (s, _, _) = call("POST", &submit, &t_pat, None, Some(&b));
    assert_eq!(s, 403, "a patient does not submit claims");
    // An insurer that does not accept this node as a submitter: refused before anything is
    // stored.
    let mut closed = plan(&hospital, &node_did);
    closed["submitters"] = json!([]);
    let r = cli_json(&[
        "contract",
        "instantiate",
        "--key",
        ik,
        "--code",
        "claims",
        "--label",
        "closed",
        "--msg",
        &closed.to_string(),
        "--url",
        &url,
    ]);
    let other = r["receipt"]["data"]["contract"]
        .as_str()
        .unwrap()
        .to_string();
    let b2 = bundle(
        &pid,
        &other,
        "CLM-CLOSED",
        json!([item(1, "99213", 1, 10.0)]),
    );
    let (s, refused, _) = call("POST", &submit, &t_doc, None, Some(&b2));
    assert_eq!(
        (s, refused["outcome"].as_str()),
        (422, Some("error")),
        "{refused}"
    );
    assert!(
        refused["disposition"]
            .as_str()
            .unwrap()
            .contains("does not accept claims from this node")
    );
    let (_, found, _) = call(
        "GET",
        &format!("{url}/fhir/Claim?identifier=https://cityhospital.example/claims|CLM-CLOSED"),
        &t_doc,
        None,
        None,
    );
    assert_eq!(found["total"], 0, "nothing stored: {found}");
    // A CT scan is pended for review: queued; the insurer approves it; the provider's
    // $inquire brings the stored ClaimResponse up to the decision, which verifies offline.
    let ct = bundle(
        &pid,
        &contract,
        "CLM-CT",
        json!([item(1, "70450", 1, 900.0)]),
    );
    let (s, q, _) = call("POST", &submit, &t_doc, None, Some(&ct));
    assert_eq!((s, q["outcome"].as_str()), (200, Some("queued")), "{q}");
    let inquire = format!("{url}/fhir/Claim/$inquire");
    let (s, same, _) = call("POST", &inquire, &t_doc, None, Some(&ct));
    assert_eq!(
        (s, same["outcome"].as_str()),
        (200, Some("queued")),
        "{same}"
    );
    let cid = carechain_claims::claim_id(
        &doc.public().did(),
        "https://cityhospital.example/claims|CLM-CT",
    );
    let approve = json!({"decide": {"claim_id": cid, "approve": true}});
    let r = cli_json(&[
        "contract",
        "call",
        "--key",
        ik,
        "--contract",
        &contract,
        "--msg",
        &approve.to_string(),
        "--url",
        &url,
    ]);
    assert_eq!(r["receipt"]["outcome"], "applied", "{r}");
    let (s, now, _) = call("POST", &inquire, &t_doc, None, Some(&ct));
    assert_eq!(
        (s, now["outcome"].as_str()),
        (200, Some("complete")),
        "{now}"
    );
    assert_eq!(now["payment"]["amount"]["value"], 900.0);
    assert_eq!(now["id"], q["id"], "the same ClaimResponse, a new version");
    let (cf, nf) = (
        dir.path().join("ct.json"),
        dir.path().join("ct-response.json"),
    );
    std::fs::write(&cf, ct.to_string()).unwrap();
    std::fs::write(&nf, now.to_string()).unwrap();
    let out = verify(&cf, &nf);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !verify(&bf, &nf).status.success(),
        "another claim's bundle does not verify it"
    );

    // Reading back what $submit stored (the static Claim route leaves the others intact).
    let claim_ref = cr["request"]["reference"].as_str().unwrap().to_string();
    let (s, stored, _) = call(
        "GET",
        &format!("{url}/fhir/{claim_ref}"),
        &t_doc,
        None,
        None,
    );
    assert_eq!(
        (s, stored["resourceType"].as_str()),
        (200, Some("Claim")),
        "{stored}"
    );
    let (s, _, _) = call(
        "GET",
        &format!("{url}/fhir/{claim_ref}/_history"),
        &t_doc,
        None,
        None,
    );
    assert_eq!(s, 200);

    // An invoice for Alice's share, paid by her with a token transfer and reconciled by the
    // hospital's practitioner: wrong amounts, a second use of the payment and a non-transfer
    // are refused.
    let invoice = json!({"resourceType": "Invoice", "status": "issued",
        "subject": {"reference": format!("Patient/{pid}")},
        "issuer": {"identifier": {"system": "urn:ietf:rfc:3986", "value": h_did}},
        "totalGross": {"value": 20.5}});
    let (s, inv, _) = call(
        "POST",
        &format!("{url}/fhir/Invoice"),
        &t_doc,
        None,
        Some(&invoice),
    );
    assert_eq!(s, 201, "{inv}");
    let iid = inv["id"].as_str().unwrap().to_string();
    let pat_key = key_file(dir.path(), "patient.key", &patient);
    let pay = |amount: &str| {
        let r = cli_json(&[
            "token",
            "transfer",
            "--key",
            pat_key.to_str().unwrap(),
            "--to",
            &h_did,
            "--amount",
            amount,
            "--url",
            &url,
        ]);
        r["receipt"]["tx_hash"].as_str().unwrap().to_string()
    };
    let reconcile = format!("{url}/fhir/Invoice/{iid}/$reconcile");
    let short = pay("2000");
    let (s, e, _) = call(
        "POST",
        &reconcile,
        &t_doc,
        None,
        Some(&json!({"transaction": short})),
    );
    assert_eq!(s, 422, "{e}");
    assert!(
        e["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("asks 2050"),
        "{e}"
    );
    let full = pay("2050");
    let (s, done, _) = call(
        "POST",
        &reconcile,
        &t_doc,
        None,
        Some(&json!({"transaction": full})),
    );
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["entry"][0]["resource"]["status"], "balanced");
    assert_eq!(
        done["entry"][1]["resource"]["resourceType"],
        "PaymentReconciliation"
    );
    assert_eq!(
        done["entry"][1]["resource"]["paymentIdentifier"]["value"],
        json!(full)
    );
    assert_eq!(
        done["entry"][2]["resource"]["resourceType"],
        "PaymentNotice"
    );
    assert_eq!(done["entry"][2]["resource"]["amount"]["value"], 20.5);
    let inv2 = call(
        "POST",
        &format!("{url}/fhir/Invoice"),
        &t_doc,
        None,
        Some(&invoice),
    )
    .1;
    let again = format!(
        "{url}/fhir/Invoice/{}/$reconcile",
        inv2["id"].as_str().unwrap()
    );
    let (s, e, _) = call(
        "POST",
        &again,
        &t_doc,
        None,
        Some(&json!({"transaction": full})),
    );
    assert_eq!(s, 409, "one payment reconciles one invoice: {e}");
    let not_transfer = cr["payment"]["identifier"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = call(
        "POST",
        &again,
        &t_doc,
        None,
        Some(&json!({"transaction": not_transfer})),
    );
    assert_eq!(s, 422, "a claims decision is not a payment of this invoice");
    assert_eq!(
        cli_json(&["token", "balance", &h_did, "--url", &url])["balance"],
        4050
    );

    // The insurer's claims reviewer reads the claim's contents only as Alice's consent
    // allows: nothing before it; with a payment consent for claims, the Claim and nothing else.
    let eve = key(44);
    register(&url, &insurer, 5, &eve, Role::Practitioner, Some(&insurer));
    let t_eve = token(&url, &eve, "user/*.rs");
    let payment = Some(("HPAYMT", None));
    let claim_url = format!("{url}/fhir/{claim_ref}");
    assert_eq!(call("GET", &claim_url, &t_eve, payment, None).0, 403);
    let consent = permit_only(&pid, &i_did, "HPAYMT", "Claim");
    let (s, cv, _) = call(
        "POST",
        &format!("{url}/fhir/Consent"),
        &t_pat,
        None,
        Some(&consent),
    );
    assert_eq!(s, 201, "{cv}");
    let (s, seen, _) = call("GET", &claim_url, &t_eve, payment, None);
    assert_eq!(
        (s, seen["resourceType"].as_str()),
        (200, Some("Claim")),
        "{seen}"
    );
    assert_eq!(
        call("GET", &claim_url, &t_eve, Some(("TREAT", None)), None).0,
        403,
        "for payment only"
    );
    assert_eq!(
        call(
            "GET",
            &format!("{url}/fhir/Patient/{pid}"),
            &t_eve,
            payment,
            None
        )
        .0,
        403,
        "claims only"
    );

    // The insurer's books, through a query.
    let q = cli_json(&[
        "contract",
        "query",
        "--contract",
        &contract,
        "--msg",
        &json!({"member": {"member": member["member"]}}).to_string(),
        "--url",
        &url,
    ]);
    assert_eq!(
        q["result"]["usage"],
        json!([["99213", 1], ["85025", 1], ["70450", 1]]),
        "{q}"
    );
}
