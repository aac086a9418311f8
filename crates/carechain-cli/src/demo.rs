//! Demo data: identities on the ledger and Alice's chart, for `up --demo` (one node serving
//! every demo organization) and `cluster up --demo` (one validator node per organization:
//! a hospital, a clinic, an insurer, a pharmacy). Keys are written under `demo-keys/`.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use carechain_crypto::{PublicKey, SecretKey, sha256};
use carechain_node::Node;
use carechain_types::{Payload, Role, TxBody, encode};
use serde_json::{Value, json};

use crate::{client::Client, keyfile, out_line};

/// How many of [`Who::ALL`] the single-node demo has (all of them).
pub const SINGLE_NODE: usize = 14;

/// Care tokens at genesis (minor units, 2 decimals): the insurer funds its claims contract,
/// the patients pay premiums into the mutual pool.
pub fn genesis_balances(keys: &DemoKeys) -> Vec<String> {
    [(Insurer, 100_000_000u64), (Alice, 500_000), (Bob, 500_000)]
        .into_iter()
        .filter(|(w, _)| keys.has(*w))
        .map(|(w, n)| format!("{}={n}", keys.did(w)))
        .collect()
}

/// The chain id of the demo chains (one-click sign-in is offered only on it).
pub const DEMO_CHAIN: &str = "carechain-demo";

/// A demo identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    /// City Hospital, Alice's custodian.
    Hospital,
    /// Dr. Carol Reyes, City Hospital.
    Clinician,
    /// A wearable City Hospital registered.
    Wearable,
    /// Alice Demo, a patient.
    Alice,
    /// Bob Demo, a patient.
    Bob,
    /// Riverside Clinic: sees nothing of Alice without her consent.
    Clinic,
    /// Dr. Dan Okafor, Riverside Clinic.
    ClinicClinician,
    /// Acme Health Insurance (cluster demo).
    Insurer,
    /// Eve Park, claims reviewer at Acme (cluster demo).
    ClaimsReviewer,
    /// Corner Pharmacy (cluster demo).
    Pharmacy,
    /// Frank Li, pharmacist at Corner Pharmacy (cluster demo).
    Pharmacist,
    /// Northwind Pharma, a manufacturer (the supply-chain demo).
    Manufacturer,
    /// Meridian Wholesale, a distributor (the supply-chain demo).
    Wholesaler,
    /// Harbor Pharmacy, a second pharmacy (the supply-chain demo).
    Harbor,
}

use Who::*;

/// The organizations of the cluster demo, in validator order (validator i serves the i-th).
pub const CLUSTER_ORGS: [Who; 4] = [Hospital, Clinic, Insurer, Pharmacy];

impl Who {
    /// Every demo identity; the single-node demo uses the first [`SINGLE_NODE`].
    pub const ALL: [Who; 14] = [
        Hospital,
        Clinician,
        Wearable,
        Alice,
        Bob,
        Clinic,
        ClinicClinician,
        Insurer,
        ClaimsReviewer,
        Pharmacy,
        Manufacturer,
        Wholesaler,
        Harbor,
        Pharmacist,
    ];

    /// Its key file in `demo-keys/`.
    pub fn file(self) -> &'static str {
        match self {
            Hospital => "hospital.key",
            Clinician => "clinician.key",
            Wearable => "wearable.key",
            Alice => "patient-alice.key",
            Bob => "patient-bob.key",
            Clinic => "clinic.key",
            ClinicClinician => "clinic-clinician.key",
            Insurer => "insurer.key",
            ClaimsReviewer => "claims-reviewer.key",
            Pharmacy => "pharmacy.key",
            Pharmacist => "pharmacist.key",
            Manufacturer => "manufacturer.key",
            Wholesaler => "wholesaler.key",
            Harbor => "harbor-pharmacy.key",
        }
    }

    /// Its role on the ledger.
    pub fn role(self) -> Role {
        match self {
            Hospital | Clinic | Insurer | Pharmacy | Manufacturer | Wholesaler | Harbor => {
                Role::Organization
            }
            Alice | Bob => Role::Patient,
            Wearable => Role::Device,
            Clinician | ClinicClinician | ClaimsReviewer | Pharmacist => Role::Practitioner,
        }
    }

    /// The organization it belongs to.
    pub fn organization(self) -> Option<Who> {
        match self {
            Clinician | Wearable => Some(Hospital),
            ClinicClinician => Some(Clinic),
            ClaimsReviewer => Some(Insurer),
            Pharmacist => Some(Pharmacy),
            _ => None,
        }
    }

    /// The one-click sign-in button's label (people only).
    pub fn label(self) -> Option<&'static str> {
        Some(match self {
            Alice => "Alice Demo — patient",
            Bob => "Bob Demo — patient",
            Clinician => "Dr. Carol Reyes, City Hospital — clinician",
            ClinicClinician => "Dr. Dan Okafor, Riverside Clinic — clinician",
            ClaimsReviewer => "Eve Park, Acme Health Insurance — claims reviewer",
            Pharmacist => "Frank Li, Corner Pharmacy — pharmacist",
            _ => return None,
        })
    }

    /// The name of an organization.
    pub fn name(self) -> &'static str {
        match self {
            Hospital => "City Hospital",
            Clinic => "Riverside Clinic",
            Insurer => "Acme Health Insurance",
            Pharmacy => "Corner Pharmacy",
            Manufacturer => "Northwind Pharma",
            Wholesaler => "Meridian Wholesale",
            Harbor => "Harbor Pharmacy",
            _ => "",
        }
    }
}

/// The demo keys.
pub struct DemoKeys {
    keys: BTreeMap<Who, SecretKey>,
}

impl DemoKeys {
    /// Fresh keys for `who`, written under `dir`.
    pub fn create(dir: &Path, who: &[Who]) -> Result<DemoKeys> {
        fs::create_dir_all(dir)?;
        let mut keys = BTreeMap::new();
        for w in who {
            let k = SecretKey::generate()?;
            keyfile::write(&dir.join(w.file()), &k)?;
            keys.insert(*w, k);
        }
        Ok(DemoKeys { keys })
    }

    /// The keys found under `dir`.
    pub fn read(dir: &Path) -> Result<DemoKeys> {
        let mut keys = BTreeMap::new();
        for w in Who::ALL {
            let p = dir.join(w.file());
            if p.exists() {
                keys.insert(w, keyfile::read(&p)?);
            }
        }
        Ok(DemoKeys { keys })
    }

    /// A key (every demo identity used is present).
    pub fn key(&self, w: Who) -> &SecretKey {
        &self.keys[&w]
    }

    /// Its did as text.
    pub fn did(&self, w: Who) -> String {
        self.key(w).public().did().to_string()
    }

    fn has(&self, w: Who) -> bool {
        self.keys.contains_key(&w)
    }
}

/// The demo's ledger transactions in waves, each to be committed before the next: the
/// organizations (by the operator) and the self-registered patients; staff and devices (by
/// their organizations), each organization's node (when `nodes` names one: key and
/// endpoint), and a few demo anchors.
pub fn ledger_waves(
    keys: &DemoKeys,
    operator: &SecretKey,
    chain_id: &str,
    nodes: &[(Who, PublicKey, String)],
    custodian: &PublicKey,
) -> Vec<Vec<Vec<u8>>> {
    let mut nonces: BTreeMap<PublicKey, u64> = BTreeMap::new();
    let mut tx = |signer: &SecretKey, payload: Payload| {
        let n = nonces.entry(signer.public()).or_insert(0);
        let raw = encode(
            &TxBody {
                chain_id: chain_id.to_string(),
                signer: signer.public(),
                nonce: *n,
                payload,
            }
            .sign(signer),
        );
        *n += 1;
        raw
    };
    let reg = |w: Who| Payload::Register {
        subject: keys.key(w).public(),
        role: w.role(),
        parent: w.organization().map(|o| keys.key(o).public()),
    };
    let mut first = Vec::new();
    let mut second = Vec::new();
    for w in Who::ALL.into_iter().filter(|w| keys.has(*w)) {
        match (w.role(), w.organization()) {
            (Role::Organization, _) => first.push(tx(operator, reg(w))),
            (Role::Patient, _) => first.push(tx(keys.key(w), reg(w))),
            (_, Some(org)) => second.push(tx(keys.key(org), reg(w))),
            _ => {}
        }
    }
    // Each patient lets the node holding her records sign the consents she writes there as
    // FHIR (the portal without her key file, an EHR recording her paper consent).
    for w in Who::ALL.into_iter().filter(|w| keys.has(*w)) {
        if w.role() == Role::Patient {
            second.push(tx(
                keys.key(w),
                Payload::DelegateConsents {
                    delegate: *custodian,
                    allowed: true,
                },
            ));
        }
    }
    for (org, node, endpoint) in nodes {
        second.push(tx(
            keys.key(*org),
            Payload::RegisterNode {
                node: *node,
                endpoint: endpoint.clone(),
            },
        ));
    }
    for i in 0..5u64 {
        second.push(tx(
            keys.key(Hospital),
            Payload::Anchor {
                kind: "demo/record-version".into(),
                commitment: sha256(format!("demo commitment {i}").as_bytes()),
            },
        ));
    }
    vec![first, second]
}

/// Loads the single-node demo's ledger data through `node` (keys under `dir/demo-keys`).
pub fn load_ledger(node: &Node, root: &Path, operator: &SecretKey) -> Result<()> {
    let keys_dir = root.join("demo-keys");
    let keys = DemoKeys::read(&keys_dir)?;
    let chain_id = node.store().genesis().chain_id.clone();
    let me = node.ledger().node_key();
    for wave in ledger_waves(&keys, operator, &chain_id, &[], &me) {
        let mut rx = node.subscribe();
        let target = node.store().head() + 1;
        for r in node.submit_batch(wave) {
            r.map_err(|e| anyhow::anyhow!("demo transaction refused: {e}"))?;
        }
        // Wait for the block holding this wave before the next one (nonces and parents).
        while *rx.borrow_and_update() < target {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), rx.changed()).await
            })
            .context("demo block was not committed in time")??;
        }
    }
    out_line(&format!(
        "demo data loaded; demo keys in {}",
        keys_dir.display()
    ));
    Ok(())
}

/// Submits the waves through a running node's API, each transaction waiting for its receipt.
pub fn submit_waves(client: &Client, waves: Vec<Vec<Vec<u8>>>) -> Result<()> {
    for wave in waves {
        for raw in wave {
            let r = client.submit(&raw)?;
            if r["receipt"]["outcome"] != "applied" {
                anyhow::bail!("demo transaction not applied: {r}");
            }
        }
    }
    Ok(())
}

/// The demo's sign-ins for the web UI: each demo person whose key is under `keys_dir`, and
/// the operator if `operator` is given.
pub fn logins(
    keys_dir: &Path,
    operator: Option<&PathBuf>,
) -> Result<Vec<carechain_server::DemoLogin>> {
    let keys = DemoKeys::read(keys_dir)?;
    let mut order: Vec<Who> = vec![
        Alice,
        Bob,
        Clinician,
        ClinicClinician,
        ClaimsReviewer,
        Pharmacist,
    ];
    order.retain(|w| keys.has(*w));
    let mut out: Vec<carechain_server::DemoLogin> = order
        .into_iter()
        .filter_map(|w| {
            Some(carechain_server::DemoLogin {
                label: w.label()?.into(),
                key: keys.key(w).clone(),
            })
        })
        .collect();
    if let Some(op) = operator.filter(|p| p.exists()) {
        out.push(carechain_server::DemoLogin {
            label: "Operator".into(),
            key: keyfile::read(op)?,
        });
    }
    Ok(out)
}

/// Writes one demo resource as `who`; returns its id.
pub type Writer<'a> = dyn FnMut(Who, Value) -> Result<String> + 'a;

/// The demo records, written through `write`: each organization's directory entry and its
/// people's, Alice's and Bob's Patient resources (self-registered), Alice's consent letting
/// City Hospital treat her, and her chart written by City Hospital (encounters, conditions,
/// vitals and labs over months, a medication, an immunization). Returns Alice's Patient id.
pub fn fhir_records(keys: &DemoKeys, write: &mut Writer<'_>) -> Result<String> {
    let did_id = |w: Who| json!([{"system": "urn:ietf:rfc:3986", "value": keys.did(w)}]);
    for org in [
        Hospital,
        Clinic,
        Insurer,
        Pharmacy,
        Manufacturer,
        Wholesaler,
        Harbor,
    ] {
        if keys.has(org) {
            write(
                org,
                json!({"resourceType": "Organization", "identifier": did_id(org), "name": org.name(), "active": true}),
            )?;
        }
    }
    for (w, prefix, given, family) in [
        (Clinician, Some("Dr."), "Carol", "Reyes"),
        (ClinicClinician, Some("Dr."), "Dan", "Okafor"),
        (ClaimsReviewer, None, "Eve", "Park"),
        (Pharmacist, None, "Frank", "Li"),
    ] {
        if keys.has(w) {
            let mut name = json!({"given": [given], "family": family});
            if let Some(p) = prefix {
                name["prefix"] = json!([p]);
            }
            write(
                w.organization().unwrap_or(w),
                json!({"resourceType": "Practitioner", "identifier": did_id(w), "active": true, "name": [name]}),
            )?;
        }
    }
    let pid = write(
        Alice,
        json!({"resourceType": "Patient", "identifier": did_id(Alice),
            "name": [{"family": "Demo", "given": ["Alice"]}], "gender": "female", "birthDate": "1985-06-15"}),
    )?;
    write(
        Bob,
        json!({"resourceType": "Patient", "identifier": did_id(Bob),
            "name": [{"family": "Demo", "given": ["Bob"]}], "gender": "male", "birthDate": "1979-02-03"}),
    )?;
    // Alice lets City Hospital treat her (it sees its own records anyway; this adds her
    // demographics and anything others wrote).
    write(
        Who::Alice,
        json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{pid}")},
            "dateTime": "2026-01-05T09:00:00Z",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {"type": "permit",
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                    "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": keys.did(Who::Hospital).to_string()}, "display": "City Hospital"}}],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}}),
    )?;
    let subject = json!({"reference": format!("Patient/{pid}")});
    let loinc = |code: &str, display: &str| json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display});
    let vital = |cat: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": cat}]}]);
    let qty = |v: f64, unit: &str, code: &str| json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": code});
    let dates = [
        "2026-03-10",
        "2026-05-12",
        "2026-07-14",
        "2026-09-08",
        "2026-10-20",
        "2026-11-02",
    ];
    for (i, d) in dates.iter().enumerate() {
        let at = format!("{d}T09:00:00Z");
        write(
            Who::Clinician,
            json!({"resourceType": "Observation", "status": "final", "category": vital("vital-signs"),
            "code": loinc("8867-4", "Heart rate"), "subject": subject, "effectiveDateTime": at,
            "valueQuantity": qty([74.0, 71.0, 69.0, 72.0, 68.0, 66.0][i], "beats/minute", "/min")}),
        )?;
        write(
            Who::Clinician,
            json!({"resourceType": "Observation", "status": "final", "category": vital("vital-signs"),
            "code": loinc("85354-9", "Blood pressure"), "subject": subject, "effectiveDateTime": at,
            "component": [
                {"code": loinc("8480-6", "Systolic blood pressure"), "valueQuantity": qty([148.0, 142.0, 138.0, 134.0, 131.0, 128.0][i], "mmHg", "mm[Hg]")},
                {"code": loinc("8462-4", "Diastolic blood pressure"), "valueQuantity": qty([94.0, 91.0, 88.0, 86.0, 84.0, 82.0][i], "mmHg", "mm[Hg]")}]}),
        )?;
        write(
            Who::Clinician,
            json!({"resourceType": "Observation", "status": "final", "category": vital("vital-signs"),
            "code": loinc("29463-7", "Body weight"), "subject": subject, "effectiveDateTime": at,
            "valueQuantity": qty([82.0, 81.2, 80.1, 79.5, 78.8, 78.1][i], "kg", "kg")}),
        )?;
        if i % 2 == 0 {
            write(
                Who::Clinician,
                json!({"resourceType": "Observation", "status": "final", "category": vital("laboratory"),
                "code": loinc("4548-4", "Hemoglobin A1c"), "subject": subject, "effectiveDateTime": at,
                "valueQuantity": qty([6.1, 5.9, 5.7][i / 2], "%", "%")}),
            )?;
            write(
                Who::Clinician,
                json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}], "text": "Check-up"}],
                "subject": subject, "period": {"start": at, "end": format!("{d}T09:30:00Z")}}),
            )?;
        }
    }
    let clinical = |code: &str| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]});
    write(
        Who::Clinician,
        json!({"resourceType": "Condition", "clinicalStatus": clinical("active"),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}], "text": "Hypertension"},
        "subject": subject, "onsetDateTime": "2026-03-10T09:00:00Z"}),
    )?;
    write(
        Who::Clinician,
        json!({"resourceType": "Condition", "clinicalStatus": clinical("resolved"),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "714628002", "display": "Prediabetes"}], "text": "Prediabetes"},
        "subject": subject, "onsetDateTime": "2026-03-10T09:00:00Z"}),
    )?;
    write(
        Who::Clinician,
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}], "text": "Lisinopril 10 mg tablet"},
        "subject": subject, "authoredOn": "2026-03-10T09:20:00Z"}),
    )?;
    write(
        Who::Clinician,
        json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza, seasonal, injectable, preservative free"}], "text": "Influenza vaccine"},
        "patient": subject, "occurrenceDateTime": "2026-10-20T09:15:00Z"}),
    )?;
    Ok(pid)
}

/// Loads the demo records into one node's service, each written by its demo author.
/// A session of demo identity `w` made by this node (the demo data is written as its
/// authors, through the access layer).
pub fn local_session(keys: &DemoKeys, w: Who) -> Result<carechain_service::Session> {
    let k = keys.key(w);
    let organization = match w.role() {
        Role::Organization => Some(k.public().did()),
        _ => w.organization().map(|o| keys.key(o).public().did()),
    };
    Ok(carechain_service::Session {
        did: k.public().did(),
        role: w.role(),
        organization,
        scopes: vec![
            carechain_service::Scope::parse("user/*.cruds").map_err(|e| anyhow::anyhow!("{e}"))?,
        ],
        expires_ms: u64::MAX,
        key: k.public(),
        origin: Default::default(),
    })
}

pub fn load_fhir_local(service: &carechain_service::Service, root: &Path) -> Result<String> {
    use carechain_service::Purpose;
    let keys = DemoKeys::read(&root.join("demo-keys"))?;
    let purpose = Purpose::treatment();
    let mut write = |w: Who, v: Value| -> Result<String> {
        let s = local_session(&keys, w)?;
        let rt = v["resourceType"].as_str().unwrap_or_default().to_string();
        let r = service
            .write(&s, &purpose, &rt, None, None, v)
            .map_err(|e| anyhow::anyhow!("demo {rt} refused: {}", e.message))?;
        Ok(r.id().to_string())
    };
    let pid = fhir_records(&keys, &mut write)?;
    out_line(&format!(
        "demo records loaded: Patient/{pid} (Alice Demo) with her chart from City Hospital; Bob Demo; sign in at / with the demo buttons"
    ));
    Ok(pid)
}

/// Loads the demo records into a running cluster over its FHIR API: each organization's
/// entries at its own node (`bases[i]` serves `CLUSTER_ORGS[i]`), the patients and their
/// charts at City Hospital's. Each author signs in with its key (`private_key_jwt`).
pub fn load_fhir_remote(keys: &DemoKeys, bases: &[String]) -> Result<String> {
    let mut tokens: BTreeMap<Who, String> = BTreeMap::new();
    let node_of = |w: Who| {
        let org = if w.role() == Role::Organization {
            Some(w)
        } else {
            w.organization()
        };
        org.and_then(|o| CLUSTER_ORGS.iter().position(|x| *x == o))
            .unwrap_or(0)
    };
    let mut write = |w: Who, v: Value| -> Result<String> {
        let base = &bases[node_of(w)];
        let client = Client::new(base);
        if let std::collections::btree_map::Entry::Vacant(slot) = tokens.entry(w) {
            let scope = match w.role() {
                Role::Patient => "patient/*.cruds",
                Role::Organization => "system/*.cruds",
                _ => "user/*.cruds",
            };
            let now = carechain_node::now_ms() / 1000;
            let assertion =
                carechain_service::make_assertion(keys.key(w), &format!("{base}/auth/token"), now);
            let t = client.token(&assertion, scope)?;
            let token = t["access_token"]
                .as_str()
                .context("no access_token")?
                .to_string();
            slot.insert(token);
        }
        let rt = v["resourceType"].as_str().unwrap_or_default().to_string();
        let (status, body) = client.post_fhir(
            &format!("/fhir/{rt}"),
            &tokens[&w],
            &serde_json::to_vec(&v)?,
        )?;
        if status != 201 && status != 200 {
            anyhow::bail!("demo {rt} refused at {base}: HTTP {status}: {body}");
        }
        Ok(body["id"].as_str().unwrap_or_default().to_string())
    };
    fhir_records(keys, &mut write)
}
