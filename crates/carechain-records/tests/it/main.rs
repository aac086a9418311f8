//! Record store tests: create/read/vread/update/delete/history with FHIR semantics, validation
//! before anything is stored, version conflicts, encryption at rest, erasure, restart.

#![allow(clippy::unwrap_used)]

use carechain_records::*;
use carechain_vault::{BlobStore, EncryptionKey};
use serde_json::json;

fn store(dir: &std::path::Path) -> RecordStore {
    RecordStore::open(dir, EncryptionKey::from_seed(&[4; 32])).unwrap()
}

fn observation(value: f64) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

const T0: u64 = 1_790_000_000_000;

#[test]
fn create_read_update_vread_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let w = s
        .create(observation(72.0), Some("Organization/h"), &[], T0)
        .unwrap();
    assert_eq!(w.meta.version, 1);
    assert_eq!(w.meta.patient.as_deref(), Some("Patient/p1"));
    assert_eq!(w.meta.categories, vec!["vital-signs".to_string()]);
    assert!(w.meta.commitment.is_some());
    let r = s.read("Observation", &w.id).unwrap();
    assert_eq!(r["valueQuantity"]["value"], 72.0);
    assert_eq!(r["meta"]["versionId"], "1");
    assert_eq!(r["meta"]["lastUpdated"], format_instant(T0));

    let mut next = r.clone();
    next["valueQuantity"]["value"] = json!(80.0);
    let w2 = s
        .update(
            next.clone(),
            &w.id,
            Some(1),
            Some("Organization/h"),
            &[],
            T0 + 1000,
        )
        .unwrap();
    assert_eq!(w2.meta.version, 2);
    assert_ne!(w2.meta.commitment, w.meta.commitment);
    assert_eq!(
        s.read("Observation", &w.id).unwrap()["valueQuantity"]["value"],
        80.0
    );
    assert_eq!(
        s.vread("Observation", &w.id, 1).unwrap()["valueQuantity"]["value"],
        72.0
    );
    // A stale If-Match is refused and nothing changes.
    assert!(matches!(
        s.update(next, &w.id, Some(1), None, &[], T0 + 2000),
        Err(RecordError::VersionConflict { current: 2 })
    ));
    let h = s.history("Observation", &w.id).unwrap();
    assert_eq!(
        h.iter().map(|e| e.meta.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn invalid_resources_are_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut bad = observation(1.0);
    bad["valueQuantity"]["value"] = json!("lots");
    match s.create(bad, None, &[], T0) {
        Err(RecordError::Invalid(issues)) => {
            assert!(issues[0].path.contains("valueQuantity.value"))
        }
        other => panic!("{other:?}"),
    }
    // No blob was written.
    assert_eq!(s.vault().blobs().len(), 0);
    assert_eq!(packed_bytes(dir.path()), 0);
    assert!(matches!(
        s.update(
            json!({"resourceType": "Patient", "id": "x"}),
            "y",
            None,
            None,
            &[],
            T0
        ),
        Err(RecordError::BadRequest(_))
    ));
    assert!(matches!(
        s.read("Patient", "nope"),
        Err(RecordError::NotFound(_))
    ));
}

/// Bytes in the blob store's pack files.
fn packed_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            on_disk(&p, needle)
        } else {
            std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        }
    })
}

#[test]
fn plaintext_never_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut p = json!({"resourceType": "Patient", "name": [{"family": "Zyxwvutsrq", "given": ["Quentin"]}], "birthDate": "1971-02-03"});
    p["address"] = json!([{"line": ["42 Secret Lane"], "city": "Hiddenville"}]);
    s.create(p, None, &[], T0).unwrap();
    drop(s);
    fn scan(dir: &std::path::Path, needles: &[&[u8]]) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                scan(&p, needles);
            } else {
                let b = std::fs::read(&p).unwrap();
                for n in needles {
                    assert!(
                        !b.windows(n.len()).any(|w| w == *n),
                        "{} contains {:?}",
                        p.display(),
                        String::from_utf8_lossy(n)
                    );
                }
            }
        }
    }
    scan(
        dir.path(),
        &[b"Zyxwvutsrq", b"1971-02-03", b"Secret Lane", b"Hiddenville"],
    );
}

#[test]
fn delete_keeps_history_and_erase_destroys_content() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let w = s.create(observation(60.0), None, &[], T0).unwrap();
    let mut r = s.read("Observation", &w.id).unwrap();
    r["valueQuantity"]["value"] = json!(61.0);
    s.update(r, &w.id, None, None, &[], T0 + 1).unwrap();
    let d = s.delete("Observation", &w.id, T0 + 2).unwrap();
    assert!(d.meta.deleted && d.meta.version == 3);
    assert!(matches!(
        s.read("Observation", &w.id),
        Err(RecordError::Deleted(_))
    ));
    assert_eq!(
        s.vread("Observation", &w.id, 2).unwrap()["valueQuantity"]["value"],
        61.0
    );
    assert_eq!(s.vault().blobs().len(), 2);
    let ciphertexts: Vec<Vec<u8>> = (1..=2)
        .map(|v| {
            let m = s.meta("Observation", &w.id, Some(v)).unwrap();
            let sealed = m.sealed.unwrap();
            s.vault().blobs().get(&sealed.blob).unwrap().unwrap()
        })
        .collect();
    for c in &ciphertexts {
        assert!(on_disk(dir.path(), &c[..64]));
    }

    // The tombstone comes first: when it cannot be written, nothing is destroyed.
    let before = s.vread("Observation", &w.id, 1).unwrap();
    let refused = s.erase("Observation", &w.id, |doomed| {
        assert_eq!(doomed.len(), 2, "the two versions with content");
        Err::<(), _>(RecordError::BadRequest("ledger unavailable".into()))
    });
    assert!(matches!(refused, Err(RecordError::BadRequest(_))));
    assert_eq!(s.vread("Observation", &w.id, 1).unwrap(), before);
    for c in &ciphertexts {
        assert!(on_disk(dir.path(), &c[..64]));
    }
    let mut told = Vec::new();
    let (destroyed, ()) = s
        .erase("Observation", &w.id, |doomed| {
            told = doomed.to_vec();
            Ok::<_, RecordError>(())
        })
        .unwrap();
    assert_eq!(destroyed.len(), 2);
    assert_eq!(
        destroyed, told,
        "the tombstone names exactly what is destroyed"
    );
    // Nothing is left to erase a second time.
    assert!(matches!(
        s.erase("Observation", &w.id, |_| Ok::<_, RecordError>(())),
        Err(RecordError::Erased(_))
    ));
    assert_eq!(s.vault().blobs().len(), 0, "ciphertext left behind");
    for c in &ciphertexts {
        assert!(
            !on_disk(dir.path(), &c[..64]),
            "ciphertext bytes left on disk"
        );
    }
    for v in 1..=3 {
        assert!(matches!(
            s.vread("Observation", &w.id, v),
            Err(RecordError::Erased(_))
        ));
        let m = s.meta("Observation", &w.id, Some(v)).unwrap();
        assert!(m.erased && m.sealed.is_none());
    }
    assert!(matches!(
        s.read("Observation", &w.id),
        Err(RecordError::Erased(_))
    ));
    assert!(
        s.history("Observation", &w.id)
            .unwrap()
            .iter()
            .all(|e| e.resource.is_none())
    );
    let id = w.id.clone();
    assert!(matches!(
        s.update(
            observation(1.0)
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("id".into(), json!(id));
                    serde_json::Value::Object(o)
                })
                .unwrap(),
            &w.id,
            None,
            None,
            &[],
            T0 + 3
        ),
        Err(RecordError::Erased(_))
    ));
}

#[test]
fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = store(dir.path());
        s.create(observation(99.0), None, &[], T0).unwrap().id
    };
    let s = store(dir.path());
    assert_eq!(
        s.read("Observation", &id).unwrap()["valueQuantity"]["value"],
        99.0
    );
    // Another node key cannot read it.
    drop(s);
    let other = RecordStore::open(dir.path(), EncryptionKey::from_seed(&[5; 32])).unwrap();
    assert!(matches!(
        other.read("Observation", &id),
        Err(RecordError::Vault(_))
    ));
}

#[test]
fn new_ids_are_fhir_ids_unique_and_ordered_by_time() {
    let ids: Vec<String> = (0..2_000).map(|_| new_id().unwrap()).collect();
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
    // The first 12 digits are the millisecond they were made: never decreasing.
    assert!(ids.windows(2).all(|w| w[0][..12] <= w[1][..12]));
    let ms = u64::from_str_radix(&ids[0][..12], 16).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(ms <= now && now - ms < 60_000, "{ms} vs {now}");
}

#[test]
fn instants_format_like_fhir() {
    assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_instant(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert!(carechain_fhir::fhir_time_range(&format_instant(T0)).is_some());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A create's metadata is committed while its anchor is still on its way: until the anchor is
/// durable nobody sees the resource, a failed anchor takes it back, and a crash in between is
/// settled at the next open (kept if the ledger has the anchor, removed if not).
#[test]
fn creates_are_invisible_until_anchored_and_a_crash_in_between_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("live"));
    let tx = carechain_crypto::sha256(b"anchor tx");
    let blob = std::cell::RefCell::new(None);
    let submit = |w: &Written| {
        *blob.borrow_mut() = w.meta.sealed.as_ref().map(|x| x.blob);
        Ok::<_, RecordError>(Anchor {
            tx,
            commitment: w.meta.commitment.unwrap(),
            salt: None,
            batch: None,
        })
    };
    // The state at the moment of a crash: metadata durable, anchor not yet confirmed.
    let crashed = dir.path().join("crashed");
    let mut hidden_id = String::new();
    let w = s
        .create_anchored(
            NewCreate {
                resource: observation(70.0),
                patient: None,
                author: None,
                also: &[],
                now_ms: T0,
            },
            |_: &Written| Ok(()),
            submit,
            |_a: &Anchor| {
                let id = s.ids("Observation").unwrap();
                assert!(id.is_empty(), "visible before its anchor is durable");
                assert!(
                    s.patient_ids("Patient/p1", "Observation")
                        .unwrap()
                        .is_empty()
                );
                copy_dir(&dir.path().join("live"), &crashed);
                Ok(())
            },
        )
        .unwrap();
    hidden_id.push_str(&w.id);
    let hidden_blob = blob.borrow().unwrap();
    assert_eq!(s.ids("Observation").unwrap(), vec![w.id.clone()]);
    assert_eq!(
        s.read("Observation", &w.id).unwrap()["valueQuantity"]["value"],
        70.0
    );

    // A failed anchor: the create is taken back, ciphertext included.
    let err = s.create_anchored(
        NewCreate {
            resource: observation(71.0),
            patient: None,
            author: None,
            also: &[],
            now_ms: T0,
        },
        |_: &Written| Ok(()),
        submit,
        |_a: &Anchor| {
            Err(RecordError::BadRequest(
                "ledger did not commit in time".into(),
            ))
        },
    );
    assert!(matches!(err, Err(RecordError::BadRequest(_))));
    assert_eq!(s.ids("Observation").unwrap(), vec![w.id.clone()]);
    let failed_blob = blob.borrow().unwrap();
    assert_ne!(failed_blob, hidden_blob);
    assert!(s.vault().blobs().get(&failed_blob).unwrap().is_none());
    assert!(s.vault().blobs().get(&hidden_blob).unwrap().is_some());
    drop(s);

    // Restart after the crash, the ledger never got the anchor: the create is removed.
    let lost = dir.path().join("lost");
    copy_dir(&crashed, &lost);
    let r = store(&lost);
    assert_eq!(r.settle_pending(|_| false).unwrap(), (0, 1));
    assert!(matches!(
        r.read("Observation", &hidden_id),
        Err(RecordError::NotFound(_))
    ));
    assert!(r.ids("Observation").unwrap().is_empty());
    assert!(
        r.patient_ids("Patient/p1", "Observation")
            .unwrap()
            .is_empty()
    );
    assert!(r.history("Observation", &hidden_id).is_err());
    assert!(r.vault().blobs().get(&hidden_blob).unwrap().is_none());
    drop(r);
    let r = store(&lost);
    assert_eq!(r.settle_pending(|_| true).unwrap(), (0, 0), "settled once");

    // Restart after the crash, the anchor made it: the create is kept, and settled for good.
    let r = store(&crashed);
    assert_eq!(r.settle_pending(|h| *h == tx).unwrap(), (1, 0));
    assert_eq!(
        r.read("Observation", &hidden_id).unwrap()["valueQuantity"]["value"],
        70.0
    );
    drop(r);
    let r = store(&crashed);
    assert_eq!(r.settle_pending(|_| false).unwrap(), (0, 0));
    assert_eq!(r.ids("Observation").unwrap(), vec![hidden_id]);
}

/// Writers of one resource take turns (no version is assigned twice, no update is lost) while
/// transactions over other resources go on beside them.
#[test]
fn concurrent_writers_of_one_resource_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let id = s.create(observation(9999.0), None, &[], T0).unwrap().id;
    let body = |v: f64| {
        let mut o = observation(v);
        o["id"] = json!(id);
        o
    };
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (s, body, id) = (&s, &body, &id);
            scope.spawn(move || {
                for i in 0..10 {
                    s.update(body(f64::from(t * 100 + i)), id, None, None, &[], T0)
                        .unwrap();
                }
            });
        }
        // Meanwhile, transactions of other resources, and of this one.
        let (s, body, id) = (&s, &body, &id);
        scope.spawn(move || {
            for i in 0..10 {
                let items = vec![
                    NewVersion {
                        resource: observation(f64::from(i)),
                        id: new_id().unwrap(),
                        if_match: None,
                        fresh: true,
                        patient: None,
                        also: vec![],
                        delete: false,
                        server_built: false,
                    },
                    NewVersion {
                        resource: body(f64::from(1000 + i)),
                        id: id.clone(),
                        if_match: None,
                        fresh: false,
                        patient: None,
                        also: vec![],
                        delete: false,
                        server_built: false,
                    },
                ];
                s.write_many(
                    items,
                    None,
                    T0,
                    |_| Ok(()),
                    |w| {
                        Ok::<_, RecordError>(
                            w.iter()
                                .map(|w| Anchor {
                                    tx: carechain_crypto::sha256(w.id.as_bytes()),
                                    commitment: w.meta.commitment.unwrap(),
                                    salt: None,
                                    batch: None,
                                })
                                .collect(),
                        )
                    },
                )
                .unwrap();
            }
        });
    });
    let history = s.history("Observation", &id).unwrap();
    assert_eq!(history.len(), 1 + 4 * 10 + 10);
    let versions: Vec<u64> = history.iter().map(|h| h.meta.version).collect();
    assert_eq!(versions, (1..=51).rev().collect::<Vec<_>>());
    let mut values: Vec<i64> = history
        .iter()
        .map(|h| {
            h.resource.as_ref().unwrap()["valueQuantity"]["value"]
                .as_f64()
                .unwrap() as i64
        })
        .collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 51, "an update was lost or written twice");
    assert_eq!(s.ids("Observation").unwrap().len(), 11);
}

/// A pack blob store whose deletions fail while `fail` is set (an unreachable object store).
struct FailingDeletes {
    inner: carechain_vault::PackBlobStore,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BlobStore for FailingDeletes {
    fn put(&self, bytes: &[u8]) -> Result<carechain_vault::ContentId, carechain_vault::VaultError> {
        self.inner.put(bytes)
    }
    fn stage(
        &self,
        bytes: &[u8],
    ) -> Result<carechain_vault::ContentId, carechain_vault::VaultError> {
        self.inner.stage(bytes)
    }
    fn sync(&self) -> Result<(), carechain_vault::VaultError> {
        self.inner.sync()
    }
    fn staged_mark(&self) -> u64 {
        self.inner.staged_mark()
    }
    fn sync_through(&self, mark: u64) -> Result<(), carechain_vault::VaultError> {
        self.inner.sync_through(mark)
    }
    fn get(
        &self,
        id: &carechain_vault::ContentId,
    ) -> Result<Option<Vec<u8>>, carechain_vault::VaultError> {
        self.inner.get(id)
    }
    fn delete(&self, id: &carechain_vault::ContentId) -> Result<bool, carechain_vault::VaultError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(carechain_vault::VaultError::Store("unreachable".into()));
        }
        self.inner.delete(id)
    }
}

#[test]
fn an_erasure_whose_ciphertext_cannot_be_deleted_yet_deletes_it_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = || {
        RecordStore::open_with(
            dir.path(),
            EncryptionKey::from_seed(&[4; 32]),
            FailingDeletes {
                inner: carechain_vault::PackBlobStore::open(&dir.path().join("blobs")).unwrap(),
                fail: fail.clone(),
            },
        )
        .unwrap()
    };
    let s = open();
    let w = s.create(observation(60.0), None, &[], T0).unwrap();
    let blob = s
        .meta("Observation", &w.id, Some(1))
        .unwrap()
        .sealed
        .unwrap()
        .blob;
    let ciphertext = s.vault().blobs().get(&blob).unwrap().unwrap();

    // The blob store fails the deletion: the erasure still holds (tombstone written, keys
    // gone, reads 410), and the ciphertext is recorded as pending.
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let (destroyed, ()) = s
        .erase("Observation", &w.id, |_| Ok::<_, RecordError>(()))
        .unwrap();
    assert_eq!(destroyed.len(), 1);
    assert!(matches!(
        s.read("Observation", &w.id),
        Err(RecordError::Erased(_))
    ));
    let m = s.meta("Observation", &w.id, Some(1)).unwrap();
    assert!(m.erased && m.sealed.is_none(), "the wrapped keys are gone");
    assert_eq!(s.pending_erasures().unwrap(), 1);
    assert!(s.vault().blobs().get(&blob).unwrap().is_some());
    // Erasing again retries the deletion (still failing: the error says so).
    assert!(matches!(
        s.erase("Observation", &w.id, |_| Ok::<_, RecordError>(())),
        Err(RecordError::Vault(_))
    ));
    drop(s);

    // Reachable again: the next open deletes what was pending.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let s = open();
    assert_eq!(s.pending_erasures().unwrap(), 0);
    assert!(s.vault().blobs().get(&blob).unwrap().is_none());
    assert!(
        !on_disk(dir.path(), &ciphertext[..64]),
        "ciphertext left on disk"
    );
    assert!(matches!(
        s.erase("Observation", &w.id, |_| Ok::<_, RecordError>(())),
        Err(RecordError::Erased(_))
    ));
}
