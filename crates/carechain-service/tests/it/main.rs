//! The records service against a real node and store: a single update or DELETE is
//! anchored before it becomes visible, and one whose anchor cannot be made durable leaves
//! the previous version current (nothing half-written); an erasure whose tombstone cannot be
//! anchored destroys nothing.

#![allow(clippy::unwrap_used)]

mod access;

use carechain_crypto::SecretKey;
use carechain_node::{Node, NodeConfig};
use carechain_service::{Purpose, Scope, Service, Session};
use carechain_storage::Store;
use carechain_types::{Genesis, GenesisIdentity, Role};
use serde_json::json;
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    svc: Arc<Service>,
    doc: Session,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let node_key = SecretKey::from_seed(&[1; 32]);
    let hospital = SecretKey::from_seed(&[2; 32]);
    let doc = SecretKey::from_seed(&[3; 32]);
    let identity = |k: &SecretKey, role, parent: Option<&SecretKey>| GenesisIdentity {
        key: k.public(),
        role,
        parent: parent.map(SecretKey::public),
    };
    let genesis = Genesis {
        token: Default::default(),
        contracts: Default::default(),
        chain_id: "service-test".into(),
        timestamp_ms: carechain_node::now_ms(),
        identities: vec![
            identity(&node_key, Role::Validator, None),
            identity(&hospital, Role::Organization, None),
            identity(&doc, Role::Practitioner, Some(&hospital)),
        ],
    };
    let store = Arc::new(Store::create(&dir.path().join("ledger.redb"), &genesis).unwrap());
    let node = Node::start(store, node_key.clone(), NodeConfig::default()).unwrap();
    let svc = Service::open(
        node.clone(),
        node_key,
        &dir.path().join("records"),
        &[9; 32],
        "http://test/auth/token",
        None,
    )
    .map_err(|e| e.message)
    .unwrap();
    let doc = Session {
        did: doc.public().did(),
        role: Role::Practitioner,
        organization: Some(hospital.public().did()),
        scopes: vec![Scope::parse("user/*.cruds").unwrap()],
        expires_ms: u64::MAX,
        key: doc.public(),
        origin: Default::default(),
    };
    Fixture {
        _dir: dir,
        node,
        svc,
        doc,
    }
}

fn treat() -> Purpose {
    Purpose {
        code: "TREAT".into(),
        break_glass_reason: None,
    }
}

fn observation(id: Option<&str>, bpm: u32) -> serde_json::Value {
    let mut o = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": bpm, "unit": "/min"}});
    if let Some(i) = id {
        o["id"] = json!(i);
    }
    o
}

/// Creates an observation as the practitioner; returns its id.
fn create(f: &Fixture, bpm: u32) -> String {
    let created = f
        .svc
        .write(
            &f.doc,
            &treat(),
            "Observation",
            None,
            None,
            observation(None, bpm),
        )
        .map_err(|e| e.message)
        .unwrap();
    created.resource.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Whether `tx` is in a durable block of the node's ledger.
fn durable(node: &Node, tx: &carechain_crypto::Hash) -> bool {
    node.snapshot().unwrap().tx_location(tx).unwrap().is_some()
}

#[test]
fn updates_and_deletes_are_anchored_before_they_are_visible() {
    let f = fixture();
    let (svc, p) = (&f.svc, treat());
    let id = create(&f, 60);
    let updated = svc
        .write(
            &f.doc,
            &p,
            "Observation",
            Some(&id),
            Some(1),
            observation(Some(&id), 61),
        )
        .map_err(|e| e.message)
        .unwrap();
    assert_eq!(updated.version, 2);
    let meta = svc.records().meta("Observation", &id, None).unwrap();
    assert_eq!(meta.version, 2);
    let anchor = meta
        .anchor
        .expect("the update's anchor is recorded with it");
    assert_eq!(Some(anchor.tx), updated.tx);
    assert!(durable(&f.node, &anchor.tx));

    let deleted = svc
        .delete(&f.doc, &p, "Observation", &id)
        .map_err(|e| e.message)
        .unwrap();
    assert_eq!(deleted.version, 3);
    let meta = svc.records().meta("Observation", &id, Some(3)).unwrap();
    assert!(meta.deleted);
    let anchor = meta
        .anchor
        .expect("the deletion's anchor is recorded with it");
    assert!(durable(&f.node, &anchor.tx));
    svc.close();
}

#[test]
fn an_update_or_delete_that_cannot_be_anchored_leaves_the_previous_version() {
    let f = fixture();
    let (svc, p) = (&f.svc, treat());
    let id = create(&f, 70);
    // The ledger stops: no anchor can become durable any more.
    f.node.shutdown();
    let e = svc
        .write(
            &f.doc,
            &p,
            "Observation",
            Some(&id),
            Some(1),
            observation(Some(&id), 99),
        )
        .unwrap_err();
    assert!(e.kind.http_status() >= 500, "{:?}: {}", e.kind, e.message);
    assert!(svc.delete(&f.doc, &p, "Observation", &id).is_err());
    // Nothing of either was written: version 1 is current, with its content and anchor.
    let meta = svc.records().meta("Observation", &id, None).unwrap();
    assert_eq!((meta.version, meta.deleted), (1, false));
    assert!(meta.anchor.is_some());
    let current = svc.records().read("Observation", &id).unwrap();
    assert_eq!(current["valueQuantity"]["value"], 70);
    assert!(svc.records().meta("Observation", &id, Some(2)).is_err());
}

#[test]
fn an_erasure_whose_tombstone_cannot_be_anchored_destroys_nothing() {
    let f = fixture();
    let id = create(&f, 80);
    let operator = Session {
        did: SecretKey::from_seed(&[1; 32]).public().did(),
        role: Role::Operator,
        organization: None,
        scopes: vec![Scope::parse("system/*.cruds").unwrap()],
        expires_ms: u64::MAX,
        key: SecretKey::from_seed(&[1; 32]).public(),
        origin: Default::default(),
    };
    let sealed = f
        .svc
        .records()
        .meta("Observation", &id, None)
        .unwrap()
        .sealed
        .unwrap();
    f.node.shutdown();
    let e = f
        .svc
        .erase(&operator, &treat(), "Observation", &id)
        .unwrap_err();
    assert!(e.kind.http_status() >= 500, "{:?}: {}", e.kind, e.message);
    // The record is intact: content, data keys and ciphertext.
    let meta = f.svc.records().meta("Observation", &id, None).unwrap();
    assert!(!meta.erased);
    assert_eq!(meta.sealed.as_ref(), Some(&sealed));
    assert!(
        f.svc
            .records()
            .vault()
            .blobs()
            .get(&sealed.blob)
            .unwrap()
            .is_some()
    );
    let current = f.svc.records().read("Observation", &id).unwrap();
    assert_eq!(current["valueQuantity"]["value"], 80);
}
