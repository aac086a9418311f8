//! FHIR search over HTTP beyond simple parameters: chained parameters, reverse chaining
//! (`_has`), `_sort`, paging links, `_include`/`_revinclude`, conditional create (header and
//! transaction `ifNoneExist`), transaction GET entries and type-level `_history` — each
//! filtered by consent.

use carechain_types::Role;
use serde_json::{Value, json};

use crate::common::*;
use crate::fhir::{call, envelope, register, register_practitioner, token};

/// Whether a search match carries the SUBSETTED tag.
fn subsetted(r: &Value) -> bool {
    r["meta"]["tag"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
}

#[test]
fn summary_modes_and_text_and_content_searches() {
    let dir = tempfile::tempdir().unwrap();
    let hospital = key(54);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "2"]);
    let url = node.url.clone();
    let doc = key(55);
    register_practitioner(&url, &hospital, &doc);
    let t = token(&url, &doc, "user/*.cruds");
    // Observation elements in the summary view (isSummary): status, code, subject,
    // effective[x], value[x]; not: text, category, interpretation, note.
    let full = json!({"resourceType": "Observation", "status": "final",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">HR 61</div>"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "2024-02-03",
        "valueQuantity": {"value": 61, "unit": "/min"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}],
        "note": [{"text": "resting"}]});
    let (s, created, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t,
        None,
        Some(&full),
    );
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let search = |mode: &str| {
        let (s, b, _) = call(
            "GET",
            &format!("{url}/fhir/Observation?_id={id}&_summary={mode}"),
            &t,
            None,
            None,
        );
        assert_eq!(s, 200, "{b}");
        b["entry"][0]["resource"].clone()
    };
    let r = search("true");
    for kept in [
        "id",
        "meta",
        "status",
        "code",
        "effectiveDateTime",
        "valueQuantity",
    ] {
        assert!(r.get(kept).is_some(), "_summary=true keeps {kept}: {r}");
    }
    for dropped in ["text", "category", "interpretation", "note"] {
        assert!(
            r.get(dropped).is_none(),
            "_summary=true drops {dropped}: {r}"
        );
    }
    assert!(subsetted(&r), "{r}");
    // text: the narrative and the required elements (status, code) only.
    let r = search("text");
    for kept in ["id", "meta", "text", "status", "code"] {
        assert!(r.get(kept).is_some(), "_summary=text keeps {kept}: {r}");
    }
    for dropped in ["category", "valueQuantity", "effectiveDateTime", "note"] {
        assert!(
            r.get(dropped).is_none(),
            "_summary=text drops {dropped}: {r}"
        );
    }
    assert!(subsetted(&r), "{r}");
    // false: the whole resource, untagged.
    let r = search("false");
    assert!(
        r["note"].is_array() && r["text"].is_object() && !subsetted(&r),
        "{r}"
    );

    // _text looks in the narrative only, _content in every string; each word of a value must
    // start a word there (`gluc` finds Glucose), commas are alternatives, case does not matter.
    let other = json!({"resourceType": "Observation", "status": "final",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Blood <b>glucose</b> &amp; fasting</div>"},
        "code": {"text": "Glucose"}, "note": [{"text": "after breakfast"}]});
    let (s, b, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t,
        None,
        Some(&other),
    );
    assert_eq!(s, 201, "{b}");
    let other_id = b["id"].as_str().unwrap().to_string();
    let found = |q: &str| -> Vec<String> {
        let (s, b, _) = call(
            "GET",
            &format!("{url}/fhir/Observation?{q}"),
            &t,
            None,
            None,
        );
        assert_eq!(s, 200, "{q}: {b}");
        let mut v: Vec<String> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![id.to_string(), other_id.clone()];
    both.sort();
    assert_eq!(found("_text=GLUCOSE%20fasting"), vec![other_id.clone()]);
    assert_eq!(
        found("_text=glucose%20breakfast"),
        Vec::<String>::new(),
        "note is not narrative"
    );
    assert_eq!(
        found("_content=glucose%20breakfast"),
        vec![other_id.clone()]
    );
    assert_eq!(found("_text=hr%2061,glucose"), both);
    assert_eq!(
        found("_text=xhtml"),
        Vec::<String>::new(),
        "markup is not text"
    );
    assert_eq!(
        found("_content=resting&_content=vital"),
        vec![id.to_string()]
    );
    let (s, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?_text:exact=x"),
        &t,
        None,
        None,
    );
    assert_eq!(s, 400, "{b}");
    node.stop();
}

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("not a searchset: {bundle}"))
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn conditional_create(url: &str, t: &str, rt: &str, query: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(&format!("{url}/fhir/{rt}"))
        .header("authorization", format!("Bearer {t}"))
        .header("if-none-exist", query)
        .header("content-type", "application/fhir+json")
        .send(body.to_string())
        .unwrap();
    let s = r.status().as_u16();
    (
        s,
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap(),
    )
}

fn obs(patient: &str, date: &str, value: f64) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": patient}, "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "/min"}})
}

#[test]
fn chained_sorted_included_conditional_and_type_history_searches() {
    let dir = tempfile::tempdir().unwrap();
    let (hospital, clinic) = (key(50), key(51));
    init_chain(dir.path(), &[hospital.clone(), clinic.clone()]);
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "2"]);
    let url = node.url.clone();
    let (doc, other) = (key(52), key(53));
    register_practitioner(&url, &hospital, &doc);
    register_practitioner(&url, &clinic, &other);
    let t = token(&url, &doc, "user/*.cruds");
    let t_other = token(&url, &other, "user/*.cruds");

    // Two patients, four observations and a provenance, in one transaction.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "A1"}], "name": [{"family": "Zeta", "given": ["Ann"]}]}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "B1"}], "name": [{"family": "Beta", "given": ["Bob"]}]}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:o1", "resource": obs("urn:uuid:a", "2020-05-01", 70.0), "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:o2", "resource": obs("urn:uuid:a", "2018-01-01", 90.0), "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:o3", "resource": obs("urn:uuid:a", "2022-12-31", 60.0), "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:o4", "resource": obs("urn:uuid:b", "2021-06-15", 80.0), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Provenance", "target": [{"reference": "urn:uuid:o1"}], "recorded": "2020-05-01T10:00:00Z", "agent": [{"who": {"display": "lab"}}]}, "request": {"method": "POST", "url": "Provenance"}}
    ]});
    let (s, resp, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bundle));
    assert_eq!(s, 200, "{resp}");
    let loc: Vec<String> = resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let l = e["response"]["location"].as_str().unwrap();
            l.split('/').take(2).collect::<Vec<_>>().join("/")
        })
        .collect();
    let (pa, pb, o1, o2, o3, o4, prov) = (
        &loc[0], &loc[1], &loc[2], &loc[3], &loc[4], &loc[5], &loc[6],
    );

    // Chained: by the subject's name (typed and via the single-target `patient`), and by the
    // patient's identifier.
    let (s, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?subject:Patient.name=zeta&_sort=date"),
        &t,
        None,
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b, "match"), vec![o2.clone(), o1.clone(), o3.clone()]);
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?patient.identifier=urn:mrn%7CB1"),
        &t,
        None,
        None,
    );
    assert_eq!(ids(&b, "match"), vec![o4.clone()]);
    // `subject` may point at many types: the server asks for one, with a 400.
    let (s, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?subject.name=zeta"),
        &t,
        None,
        None,
    );
    assert_eq!(
        (s, b["resourceType"].as_str()),
        (400, Some("OperationOutcome")),
        "{b}"
    );

    // _sort descending, by a number, and paging that follows the sort.
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?_sort=-date"),
        &t,
        None,
        None,
    );
    assert_eq!(
        ids(&b, "match"),
        vec![o3.clone(), o4.clone(), o1.clone(), o2.clone()]
    );
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?_sort=value-quantity&_count=2"),
        &t,
        None,
        None,
    );
    assert_eq!(ids(&b, "match"), vec![o3.clone(), o1.clone()]);
    assert_eq!(b["total"], 4);
    let next = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, b, _) = call("GET", &next, &t, None, None);
    assert_eq!(ids(&b, "match"), vec![o4.clone(), o2.clone()]);
    let (s, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?_sort=nonsense"),
        &t,
        None,
        None,
    );
    assert_eq!(s, 400, "{b}");

    // _summary=count: the total only; _elements: the listed elements of each match, marked
    // SUBSETTED (included resources stay whole); an unknown _summary mode is refused, not ignored.
    let get_search = |q: &str| {
        call(
            "GET",
            &format!("{url}/fhir/Observation?{q}"),
            &t,
            None,
            None,
        )
    };
    let (s, b, _) = get_search("_summary=count");
    assert_eq!((s, b["total"].as_u64()), (200, Some(4)), "{b}");
    assert!(b["entry"].as_array().unwrap().is_empty());
    let (s, b, _) = get_search("_elements=valueQuantity&_include=Observation:subject");
    assert_eq!(s, 200, "{b}");
    assert!(!ids(&b, "include").is_empty(), "{b}");
    for e in b["entry"].as_array().unwrap() {
        let r = &e["resource"];
        if e["search"]["mode"] == "match" {
            assert!(r["valueQuantity"].is_object() && r["id"].is_string(), "{r}");
            assert!(r.get("code").is_none() && r.get("subject").is_none(), "{r}");
            assert!(
                r["meta"]["tag"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["code"] == "SUBSETTED")
            );
        } else {
            assert_eq!(r["resourceType"], "Patient");
            assert!(r.get("name").is_some(), "included resources are whole: {r}");
        }
    }
    let (s, b, _) = get_search("_summary=nonsense");
    assert_eq!(
        (s, b["resourceType"].as_str()),
        (400, Some("OperationOutcome")),
        "{b}"
    );

    // _include brings the subject once; _revinclude brings what points at the matches.
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?subject={pa}&_include=Observation:subject"),
        &t,
        None,
        None,
    );
    assert_eq!(ids(&b, "match").len(), 3);
    assert_eq!(ids(&b, "include"), vec![pa.clone()]);
    let oid1 = o1.split('/').nth(1).unwrap();
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?_id={oid1}&_revinclude=Provenance:target"),
        &t,
        None,
        None,
    );
    assert_eq!(ids(&b, "include"), vec![prov.clone()]);
    let pid_b = pb.split('/').nth(1).unwrap();
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Patient?_id={pid_b}&_revinclude=Observation:subject"),
        &t,
        None,
        None,
    );
    assert_eq!(ids(&b, "match"), vec![pb.clone()]);
    assert_eq!(ids(&b, "include"), vec![o4.clone()]);

    // :iterate — includes applied to what was included: the provenance's target, then that
    // observation's subject; A's observations, then the provenance of one of them (without
    // :iterate, only A's observations).
    let sorted_ids = |b: &Value, mode: &str| {
        let mut v = ids(b, mode);
        v.sort();
        v
    };
    let (s, b, _) = call(
        "GET",
        &format!(
            "{url}/fhir/Provenance?_include=Provenance:target&_include:iterate=Observation:subject"
        ),
        &t,
        None,
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b, "match"), vec![prov.clone()]);
    let mut want = vec![o1.clone(), pa.clone()];
    want.sort();
    assert_eq!(sorted_ids(&b, "include"), want);
    // Without :iterate an include must start from the searched type.
    let (s, b, _) = call(
        "GET",
        &format!("{url}/fhir/Provenance?_include=Provenance:target&_include=Observation:subject"),
        &t,
        None,
        None,
    );
    assert_eq!(
        (s, b["resourceType"].as_str()),
        (400, Some("OperationOutcome"))
    );
    let a_id = pa.split('/').nth(1).unwrap();
    let (s, b, _) = call(
        "GET",
        &format!(
            "{url}/fhir/Patient?_id={a_id}&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target"
        ),
        &t,
        None,
        None,
    );
    assert_eq!(s, 200, "{b}");
    let mut want = vec![o1.clone(), o2.clone(), o3.clone(), prov.clone()];
    want.sort();
    assert_eq!(sorted_ids(&b, "include"), want);
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Patient?_id={a_id}&_revinclude=Observation:subject"),
        &t,
        None,
        None,
    );
    let mut want = vec![o1.clone(), o2.clone(), o3.clone()];
    want.sort();
    assert_eq!(sorted_ids(&b, "include"), want);
    let (s, b, _) = call(
        "GET",
        &format!("{url}/fhir/Patient?_include:often=Patient:organization"),
        &t,
        None,
        None,
    );
    assert_eq!(
        (s, b["resourceType"].as_str()),
        (400, Some("OperationOutcome"))
    );

    // Consent filters chains and includes: the clinic's practitioner (no consent) may not
    // write into patient A's record, finds nothing of A's by her name, and gets nothing
    // included.
    let (s, refused, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t_other,
        None,
        Some(&obs(pa, "2023-01-01", 75.0)),
    );
    assert_eq!(s, 403, "{refused}");
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?_include=Observation:subject"),
        &t_other,
        None,
        None,
    );
    assert!(
        ids(&b, "match").is_empty() && ids(&b, "include").is_empty(),
        "{b}"
    );
    let (_, b, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?subject:Patient.name=zeta"),
        &t_other,
        None,
        None,
    );
    assert!(ids(&b, "match").is_empty(), "{b}");
    // The clinic registers a patient of its own and writes her an observation: its own.
    let (s, pc, _) = call(
        "POST",
        &format!("{url}/fhir/Patient"),
        &t_other,
        None,
        Some(&json!({"resourceType": "Patient", "name": [{"family": "Clinicpatient"}]})),
    );
    assert_eq!(s, 201, "{pc}");
    let pc = format!("Patient/{}", pc["id"].as_str().unwrap());
    let (s, mine, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t_other,
        None,
        Some(&obs(&pc, "2023-01-01", 75.0)),
    );
    assert_eq!(s, 201, "{mine}");
    let mine = format!("Observation/{}", mine["id"].as_str().unwrap());

    // Reverse chaining: patients with an observation over 85/min (only A's 90), with one
    // from 2021 on (both), and — nested — with an observation that has a provenance (A's o1);
    // observations that have a provenance. Malformed `_has` is a 400 OperationOutcome.
    let get_sorted = |rt: &str, q: &str, tok: &str| {
        let (s, b, _) = call("GET", &format!("{url}/fhir/{rt}?{q}"), tok, None, None);
        assert_eq!(s, 200, "{q}: {b}");
        let mut v = ids(&b, "match");
        v.sort();
        v
    };
    assert_eq!(
        get_sorted(
            "Patient",
            "_has:Observation:subject:value-quantity=gt85",
            &t
        ),
        vec![pa.clone()]
    );
    let mut both = vec![pa.clone(), pb.clone()];
    both.sort();
    assert_eq!(
        get_sorted("Patient", "_has:Observation:patient:date=ge2021-01-01", &t),
        both
    );
    assert_eq!(
        get_sorted(
            "Observation",
            "_has:Provenance:target:recorded=ge2020-01-01",
            &t
        ),
        vec![o1.clone()]
    );
    assert_eq!(
        get_sorted(
            "Patient",
            "_has:Observation:subject:_has:Provenance:target:recorded=ge2020-01-01",
            &t
        ),
        vec![pa.clone()]
    );
    assert!(
        get_sorted(
            "Patient",
            "_has:Observation:subject:value-quantity=gt1000",
            &t
        )
        .is_empty()
    );
    // The clinic's practitioner finds only its own patient: A's observations over 70/min
    // are not its to see, so A does not match.
    assert_eq!(
        get_sorted(
            "Patient",
            "_has:Observation:subject:value-quantity=gt70",
            &t_other
        ),
        vec![pc.clone()]
    );
    for bad in [
        "_has:Observation:code=x",
        "_has:Nope:subject:code=x",
        "_has:Observation:code:code=x",
        "_has:Observation:subject:nonsense=x",
    ] {
        let (s, b, _) = call("GET", &format!("{url}/fhir/Patient?{bad}"), &t, None, None);
        assert_eq!(
            (s, b["resourceType"].as_str()),
            (400, Some("OperationOutcome")),
            "{bad}: {b}"
        );
    }

    // Conditional create: an existing match is returned (200, nothing written); no match
    // creates (201); a second identical request finds the first.
    let again = json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "A1"}], "name": [{"family": "Zeta"}]});
    let (s, v) = conditional_create(&url, &t, "Patient", "identifier=urn:mrn|A1", &again);
    assert_eq!(
        (s, format!("Patient/{}", v["id"].as_str().unwrap())),
        (200, pa.clone()),
        "{v}"
    );
    let new =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "C1"}]});
    let (s, v) = conditional_create(&url, &t, "Patient", "identifier=urn:mrn|C1", &new);
    assert_eq!(s, 201, "{v}");
    let pc = v["id"].as_str().unwrap().to_string();
    let (s, v) = conditional_create(&url, &t, "Patient", "identifier=urn:mrn|C1", &new);
    assert_eq!((s, v["id"].as_str()), (200, Some(pc.as_str())));
    let (s, v) = conditional_create(&url, &t, "Patient", "identifier=urn:mrn|", &new);
    assert_eq!(
        (s, v["resourceType"].as_str()),
        (412, Some("OperationOutcome")),
        "{v}"
    );
    let (s, _) = conditional_create(&url, &t, "Patient", "bogus-param=1", &new);
    assert_eq!(s, 400);

    // Conditional update: one match is updated in place (200, same id, next version); no
    // match creates (201); several matches are a 412; a body id naming another resource, 400.
    let put = |q: &str, body: &Value| {
        call(
            "PUT",
            &format!("{url}/fhir/Patient?{q}"),
            &t,
            None,
            Some(body),
        )
    };
    let renamed = json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "C1"}], "name": [{"family": "Renamed"}]});
    let (s, v, _) = put("identifier=urn:mrn|C1", &renamed);
    assert_eq!((s, v["id"].as_str()), (200, Some(pc.as_str())), "{v}");
    assert_eq!(v["meta"]["versionId"], "2");
    assert_eq!(v["name"][0]["family"], "Renamed");
    let fresh =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "D1"}]});
    let (s, v, _) = put("identifier=urn:mrn|D1", &fresh);
    assert_eq!(s, 201, "{v}");
    let pd = v["id"].as_str().unwrap().to_string();
    assert_ne!(v["id"].as_str(), Some(pc.as_str()));
    let (s, v, _) = put("identifier=urn:mrn|", &fresh);
    assert_eq!(
        (s, v["resourceType"].as_str()),
        (412, Some("OperationOutcome")),
        "{v}"
    );
    let mut other = renamed.clone();
    other["id"] = json!("someone-else");
    let (s, v, _) = put("identifier=urn:mrn|C1", &other);
    assert_eq!(
        (s, v["resourceType"].as_str()),
        (400, Some("OperationOutcome")),
        "{v}"
    );

    // In a transaction: ifNoneExist resolves to the existing patient, references to its
    // fullUrl follow, and GET entries read after the writes.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": o4}},
        {"fullUrl": "urn:uuid:again", "resource": again, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|A1"}},
        {"resource": obs("urn:uuid:again", "2024-02-02", 66.0), "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (s, resp, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bundle));
    assert_eq!(s, 200, "{resp}");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["resource"]["valueQuantity"]["value"], 80.0);
    assert_eq!(
        (
            e[1]["response"]["status"].as_str(),
            e[1]["response"]["location"].as_str()
        ),
        (Some("200 OK"), Some(pa.as_str()))
    );
    assert_eq!(e[2]["response"]["status"], "201 Created");
    let loc = e[2]["response"]["location"].as_str().unwrap();
    let (_, o5, _) = call(
        "GET",
        &format!("{url}/fhir/{}", loc.split("/_history").next().unwrap()),
        &t,
        None,
        None,
    );
    assert_eq!(o5["subject"]["reference"].as_str(), Some(pa.as_str()));

    // Type-level history: newest first, every version, _since and _count; filtered by consent.
    let (s, mut p, _) = call("GET", &format!("{url}/fhir/{pa}"), &t, None, None);
    assert_eq!(s, 200);
    p["gender"] = json!("female");
    let (s, _, _) = call("PUT", &format!("{url}/fhir/{pa}"), &t, None, Some(&p));
    assert_eq!(s, 200);
    let (s, h, _) = call(
        "GET",
        &format!("{url}/fhir/Patient/_history"),
        &t,
        None,
        None,
    );
    assert_eq!((s, h["type"].as_str()), (200, Some("history")), "{h}");
    let entries = h["entry"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        6,
        "A twice, B, C twice (conditional update), D"
    );
    assert_eq!(entries[0]["resource"]["gender"], "female");
    assert_eq!(entries[0]["request"]["method"], "PUT");
    let stamps: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["lastModified"].as_str().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");
    let (_, h, _) = call(
        "GET",
        &format!("{url}/fhir/Patient/_history?_count=1"),
        &t,
        None,
        None,
    );
    assert_eq!(h["entry"].as_array().unwrap().len(), 1);
    let (_, h, _) = call(
        "GET",
        &format!("{url}/fhir/Patient/_history?_since=2999-01-01"),
        &t,
        None,
        None,
    );
    assert_eq!(h["entry"].as_array().unwrap().len(), 0);
    let (s, h, _) = call(
        "GET",
        &format!("{url}/fhir/Patient/_history?_since=yesterday"),
        &t,
        None,
        None,
    );
    assert_eq!(
        (s, h["resourceType"].as_str()),
        (400, Some("OperationOutcome"))
    );
    let (_, h, _) = call(
        "GET",
        &format!("{url}/fhir/Observation/_history"),
        &t_other,
        None,
        None,
    );
    let seen: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        seen,
        vec![mine.split('/').nth(1).unwrap()],
        "only the clinic's own observation"
    );

    // DELETE entries run first, atomically with the rest: a delete the caller may not make (the
    // clinic's observation) or of a missing resource fails the whole transaction.
    let del = |what: &str| json!({"request": {"method": "DELETE", "url": what}});
    let new_obs = json!({"resource": obs(pa, "2025-01-01", 55.0), "request": {"method": "POST", "url": "Observation"}});
    for bad in [mine.as_str(), "Observation/no-such-id"] {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [del(o2), del(bad), new_obs]});
        let (s, oo, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bundle));
        assert!(s == 403 || s == 404, "{s} {oo}");
        assert_eq!(
            call("GET", &format!("{url}/fhir/{o2}"), &t, None, None).0,
            200
        );
    }
    let bundle =
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [new_obs, del(o2)]});
    let (s, resp, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bundle));
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["entry"][1]["response"]["status"], "204 No Content");
    assert_eq!(resp["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(
        call("GET", &format!("{url}/fhir/{o2}"), &t, None, None).0,
        410
    );

    // A patient registered by the hospital in the same transaction as her records (naming her
    // did, which links nothing) claims her record with the hospital's activation code and her
    // signature; records written from then on are wrapped to her too, so their envelope has
    // two recipients.
    let pat = key(54);
    register(&url, &pat, 0, &pat, Role::Patient, None);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:me", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:ietf:rfc:3986", "value": pat.public().did().to_string()}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": obs("urn:uuid:me", "2024-03-03", 77.0), "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (s, resp, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bundle));
    assert_eq!(s, 200, "{resp}");
    let me = resp["entry"][0]["response"]["location"].as_str().unwrap();
    let me = me.split("/_history").next().unwrap().to_string();
    let t_pat = token(&url, &pat, "patient/*.rs");
    assert_eq!(
        call("GET", &format!("{url}/fhir/{me}"), &t_pat, None, None).0,
        403,
        "naming her did in the record does not make it hers"
    );
    let (s, code, _) = call(
        "POST",
        &format!("{url}/fhir/{me}/$activation-code"),
        &t,
        None,
        None,
    );
    assert_eq!(s, 200, "{code}");
    let code = code["code"].as_str().unwrap();
    let msg = carechain_service::claim_message(
        &format!("{url}/auth/token"),
        &me,
        code,
        &pat.public().did().to_string(),
    );
    let sig = pat
        .sign(carechain_crypto::Namespace::PatientClaim, msg.as_bytes())
        .to_hex();
    let (s, claimed, _) = call(
        "POST",
        &format!("{url}/fhir/{me}/$claim"),
        &t_pat,
        None,
        Some(&json!({"code": code, "signature": sig})),
    );
    assert_eq!(s, 200, "{claimed}");
    let (s, later, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t,
        None,
        Some(&obs(&me, "2024-03-04", 78.0)),
    );
    assert_eq!(s, 201, "{later}");
    let obs_path = format!("Observation/{}", later["id"].as_str().unwrap());
    envelope(&url, &obs_path, &t_pat, &dir.path().join("envelope.json"));

    // Conditional delete: the one match is deleted (204, then 410 on read); no match is a
    // 204 that deletes nothing; several matches are a 412.
    let del = |q: &str| call("DELETE", &format!("{url}/fhir/Patient?{q}"), &t, None, None);
    assert_eq!(del("identifier=urn:mrn|D1").0, 204);
    let (s, _, _) = call("GET", &format!("{url}/fhir/Patient/{pd}"), &t, None, None);
    assert_eq!(s, 410);
    assert_eq!(del("identifier=urn:mrn|D1").0, 204);
    let (s, v, _) = del("identifier=urn:mrn|");
    assert_eq!(
        (s, v["resourceType"].as_str()),
        (412, Some("OperationOutcome")),
        "{v}"
    );

    // The CapabilityStatement tells the truth about it.
    let (_, cs) = get(&format!("{url}/fhir/metadata"));
    let obs_cap = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap()
        .clone();
    assert_eq!(obs_cap["conditionalCreate"], true);
    assert_eq!(obs_cap["conditionalUpdate"], true);
    assert_eq!(obs_cap["conditionalDelete"], "single");
    assert!(
        obs_cap["interaction"]
            .as_array()
            .unwrap()
            .contains(&json!({"code": "history-type"}))
    );
    node.stop();
}
