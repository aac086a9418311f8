//! Vault tests through the public API: sealing binds context, keys and ciphertext; patients
//! decrypt with their own key; erasure leaves nothing to decrypt; blobs are content-addressed
//! and written atomically.

#![allow(clippy::unwrap_used)]

use carechain_vault::*;
use proptest::prelude::*;

fn ctx(version: u64) -> RecordContext {
    RecordContext {
        patient: "patient-123".into(),
        resource_type: "Observation".into(),
        resource_id: "obs-1".into(),
        version,
    }
}

fn vault(dir: &std::path::Path) -> Vault<LocalBlobStore> {
    Vault::new(
        LocalBlobStore::open(dir).unwrap(),
        EncryptionKey::from_seed(&[1; 32]),
    )
}

const RECORD: &[u8] =
    br#"{"resourceType":"Observation","status":"final","valueQuantity":{"value":72}}"#;

#[test]
fn seal_then_open_and_ciphertext_reveals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let sealed = v.seal(&ctx(1), RECORD, &[]).unwrap();
    assert_eq!(&v.open(&ctx(1), &sealed).unwrap()[..], RECORD);
    let blob = v.blobs().get(&sealed.blob).unwrap().unwrap();
    assert_eq!(blob_id(&blob), sealed.blob);
    assert!(
        !blob.windows(6).any(|w| w == b"Observ"),
        "plaintext leaked into the blob"
    );
    assert_eq!(sealed.commitment, commitment(&sealed.salt, &sealed.blob));
    // Two seals of the same record give unrelated ciphertexts and commitments.
    let again = v.seal(&ctx(1), RECORD, &[]).unwrap();
    assert_ne!(again.blob, sealed.blob);
    assert_ne!(again.commitment, sealed.commitment);
}

#[test]
fn context_is_bound_as_associated_data() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let sealed = v.seal(&ctx(1), RECORD, &[]).unwrap();
    let others = [
        RecordContext {
            patient: "patient-124".into(),
            ..ctx(1)
        },
        RecordContext {
            resource_type: "Condition".into(),
            ..ctx(1)
        },
        RecordContext {
            resource_id: "obs-2".into(),
            ..ctx(1)
        },
        ctx(2),
    ];
    // A fresh vault with the same key: no cached data key, so the wrap is checked too.
    let cold = vault(dir.path());
    for other in &others {
        assert!(
            matches!(cold.open(other, &sealed), Err(VaultError::Decrypt)),
            "{other:?}"
        );
        assert!(
            matches!(v.open(other, &sealed), Err(VaultError::Decrypt)),
            "{other:?}"
        );
    }
    assert_eq!(&cold.open(&ctx(1), &sealed).unwrap()[..], RECORD);
}

#[test]
fn patient_decrypts_with_own_key_and_strangers_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let (patient, _seed) = EncryptionKey::generate().unwrap();
    let stranger = EncryptionKey::from_seed(&[9; 32]);
    let sealed = v.seal(&ctx(1), RECORD, &[patient.public()]).unwrap();
    assert_eq!(sealed.wrapped.len(), 2);
    assert_eq!(
        &open_as(v.blobs(), &patient, &ctx(1), &sealed).unwrap()[..],
        RECORD
    );
    assert!(matches!(
        open_as(v.blobs(), &stranger, &ctx(1), &sealed),
        Err(VaultError::NotARecipient)
    ));
    // A wrapped key relabelled for the stranger still does not open for them.
    let mut forged = sealed.clone();
    forged.wrapped[1].recipient = stranger.public();
    assert!(matches!(
        open_as(v.blobs(), &stranger, &ctx(1), &forged),
        Err(VaultError::Decrypt)
    ));
    // Another node key is not a recipient.
    let other_node = Vault::new(
        LocalBlobStore::open(dir.path()).unwrap(),
        EncryptionKey::from_seed(&[2; 32]),
    );
    assert!(matches!(
        other_node.open(&ctx(1), &sealed),
        Err(VaultError::NotARecipient)
    ));
}

#[test]
fn tampered_ciphertext_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let sealed = v.seal(&ctx(1), RECORD, &[]).unwrap();
    let mut blob = v.blobs().get(&sealed.blob).unwrap().unwrap();
    blob[20] ^= 1;
    // Stored under its own address, the altered blob fails authentication.
    let id = v.blobs().put(&blob).unwrap();
    let moved = SealedRecord {
        blob: id,
        ..sealed.clone()
    };
    assert!(matches!(v.open(&ctx(1), &moved), Err(VaultError::Decrypt)));
    // Overwritten in place, it no longer matches its address.
    let h = sealed.blob.to_hex();
    let path = dir.path().join(&h[..2]).join(&h[2..4]).join(&h);
    std::fs::write(&path, &blob).unwrap();
    assert!(matches!(
        v.open(&ctx(1), &sealed),
        Err(VaultError::Corrupt(_))
    ));
}

#[test]
fn erasure_destroys_ciphertext_and_cached_key() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let (patient, _) = EncryptionKey::generate().unwrap();
    let sealed = v.seal(&ctx(3), RECORD, &[patient.public()]).unwrap();
    let keep = v.seal(&ctx(4), RECORD, &[]).unwrap();
    v.open(&ctx(3), &sealed).unwrap();
    let h = sealed.blob.to_hex();
    let path = dir.path().join(&h[..2]).join(&h[2..4]).join(&h);
    assert!(path.exists());
    assert_eq!(v.erase(&ctx(3), &sealed).unwrap(), sealed.commitment);
    assert!(!path.exists(), "ciphertext file still present");
    assert!(v.blobs().get(&sealed.blob).unwrap().is_none());
    assert!(matches!(
        v.open(&ctx(3), &sealed),
        Err(VaultError::Missing(_))
    ));
    assert!(matches!(
        open_as(v.blobs(), &patient, &ctx(3), &sealed),
        Err(VaultError::Missing(_))
    ));
    // The commitment still verifies as a commitment (what the ledger holds), nothing more.
    assert_eq!(commitment(&sealed.salt, &sealed.blob), sealed.commitment);
    // Other records are untouched; erasing twice is harmless.
    assert_eq!(&v.open(&ctx(4), &keep).unwrap()[..], RECORD);
    assert!(!v.blobs().delete(&sealed.blob).unwrap());
}

#[test]
fn blobs_are_content_addressed_and_interrupted_writes_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let a = store.put(b"same bytes").unwrap();
    assert_eq!(store.put(b"same bytes").unwrap(), a);
    assert_eq!(a, carechain_crypto::sha256(b"same bytes"));
    assert!(
        store
            .get(&carechain_crypto::sha256(b"other"))
            .unwrap()
            .is_none()
    );
    // A write interrupted before its rename leaves a temporary file, removed at the next open
    // and never visible as a blob.
    std::fs::write(dir.path().join("tmp").join("deadbeef"), b"partial").unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(store.get(&a).unwrap().unwrap(), b"same bytes");
}

#[test]
fn pseudonyms_depend_on_the_node_secret() {
    let a = pseudonym(&[1; 32], "patient-123");
    assert_eq!(a, pseudonym(&[1; 32], "patient-123"));
    assert_ne!(a, pseudonym(&[2; 32], "patient-123"));
    assert_ne!(a, pseudonym(&[1; 32], "patient-124"));
    assert_ne!(a, carechain_crypto::sha256(b"patient-123"));
}

#[test]
fn debug_output_hides_keys() {
    let k = EncryptionKey::from_seed(&[0xAB; 32]);
    assert!(format!("{k:?}").contains("redacted"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_record_round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000), version in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let sealed = v.seal(&ctx(version), &data, &[]).unwrap();
        prop_assert_eq!(&v.open(&ctx(version), &sealed).unwrap()[..], &data[..]);
    }
}

fn pack_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    pack_files(dir).iter().any(|p| {
        std::fs::read(p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    })
}

#[test]
fn pack_store_group_syncs_erases_in_place_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = PackBlobStore::open(dir.path()).unwrap();
    let blobs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    let ids: Vec<_> = blobs.iter().map(|b| store.stage(b).unwrap()).collect();
    // Staged blobs are readable at once, content-addressed, and stored once.
    assert_eq!(store.get(&ids[7]).unwrap().unwrap(), blobs[7]);
    assert_eq!(store.stage(&blobs[7]).unwrap(), ids[7]);
    assert_eq!(ids[7], carechain_crypto::sha256(&blobs[7]));
    store.sync().unwrap();
    assert_eq!(store.len(), 50);

    // Erasure overwrites the bytes in place: gone from the file, gone after reopening.
    let secret = b"a ciphertext that must vanish from the disk".to_vec();
    let sid = store.put(&secret).unwrap();
    assert!(contains(dir.path(), &secret));
    assert!(store.delete(&sid).unwrap());
    assert!(!store.delete(&sid).unwrap());
    assert!(store.get(&sid).unwrap().is_none());
    assert!(!contains(dir.path(), &secret));
    drop(store);
    let store = PackBlobStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 50);
    assert!(store.get(&sid).unwrap().is_none());
    for (b, id) in blobs.iter().zip(&ids) {
        assert_eq!(&store.get(id).unwrap().unwrap(), b);
    }

    // A crash in the middle of an append (never synced, so never referred to) leaves a torn
    // record: reopening cuts it off and later appends land after the last good record.
    drop(store);
    let pack = pack_files(dir.path()).pop().unwrap();
    let good = std::fs::metadata(&pack).unwrap().len();
    let mut torn = b"CCB1".to_vec();
    torn.extend_from_slice(&1000u32.to_le_bytes());
    torn.extend_from_slice(&[7u8; 32]);
    torn.extend_from_slice(&[1u8; 300]);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(&pack, &bytes).unwrap();
    let store = PackBlobStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), good);
    assert_eq!(store.len(), 50);
    let late = store.put(b"after the crash").unwrap();
    drop(store);
    let store = PackBlobStore::open(dir.path()).unwrap();
    assert_eq!(store.get(&late).unwrap().unwrap(), b"after the crash");
    assert_eq!(store.len(), 51);

    // A damaged byte in a synced blob is reported as corruption on read; the others stay.
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[40 + 5] ^= 0xff;
    std::fs::write(&pack, &bytes).unwrap();
    let store = PackBlobStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 51);
    assert!(matches!(store.get(&ids[0]), Err(VaultError::Corrupt(_))));
    assert_eq!(store.get(&ids[1]).unwrap().unwrap(), blobs[1]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Any sequence of stages, syncs, deletes and reopenings agrees with a plain map.
    #[test]
    fn pack_store_agrees_with_a_model(ops in proptest::collection::vec((0u8..4, 0u8..20), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = PackBlobStore::open(dir.path()).unwrap();
        let mut model = std::collections::BTreeMap::new();
        for (op, k) in ops {
            let bytes = vec![k; usize::from(k) * 7 + 1];
            let id = carechain_crypto::sha256(&bytes);
            match op {
                0 => { store.stage(&bytes).unwrap(); model.insert(id, bytes); }
                1 => { store.sync().unwrap(); }
                2 => { prop_assert_eq!(store.delete(&id).unwrap(), model.remove(&id).is_some()); }
                _ => { store.sync().unwrap(); drop(store); store = PackBlobStore::open(dir.path()).unwrap(); }
            }
            prop_assert_eq!(store.len(), model.len());
        }
        for (id, b) in &model {
            prop_assert_eq!(&store.get(id).unwrap().unwrap(), b);
        }
    }
}

#[test]
fn records_can_be_wrapped_to_an_ed25519_identity() {
    // An identity's X25519 form (from its public key alone) is the public half of the key
    // derived from its secret: the node wraps to it, the identity opens with its own key.
    let id = carechain_crypto::SecretKey::from_seed(&[9; 32]);
    let mine = EncryptionKey::from_x25519_secret(&id.x25519_secret()).unwrap();
    assert_eq!(
        mine.public(),
        PublicEncryptionKey(id.public().x25519().unwrap())
    );
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let sealed = v
        .seal(&ctx(1), b"for the patient", &[mine.public()])
        .unwrap();
    v.blobs().sync().unwrap();
    assert_eq!(
        &open_as(v.blobs(), &mine, &ctx(1), &sealed).unwrap()[..],
        b"for the patient"
    );
    let other = carechain_crypto::SecretKey::from_seed(&[10; 32]);
    let theirs = EncryptionKey::from_x25519_secret(&other.x25519_secret()).unwrap();
    assert!(matches!(
        open_as(v.blobs(), &theirs, &ctx(1), &sealed),
        Err(VaultError::NotARecipient)
    ));
}

#[test]
fn blobs_of_the_file_per_blob_layout_move_into_packs() {
    let dir = tempfile::tempdir().unwrap();
    let old = LocalBlobStore::open(dir.path()).unwrap();
    let a = old.put(b"written by an earlier version").unwrap();
    let b = old.put(b"and another").unwrap();
    drop(old);
    let store = PackBlobStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get(&a).unwrap().unwrap(),
        b"written by an earlier version"
    );
    assert_eq!(store.get(&b).unwrap().unwrap(), b"and another");
    // Only the packs remain.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(left.iter().all(|n| n.ends_with(".pack")), "{left:?}");
    drop(store);
    assert_eq!(PackBlobStore::open(dir.path()).unwrap().len(), 2);
}

#[test]
fn wrapping_sessions_rotate_and_each_wrapped_key_opens_only_its_own_version() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path());
    let (patient, _) = EncryptionKey::generate().unwrap();
    // More seals than one session covers: the node's and the patient's sessions both rotate.
    let sealed: Vec<_> = (0..1100u64)
        .map(|i| v.seal(&ctx(i), RECORD, &[patient.public()]).unwrap())
        .collect();
    for who in 0..2 {
        let encs: std::collections::BTreeSet<_> =
            sealed.iter().map(|s| s.wrapped[who].enc.clone()).collect();
        assert!(encs.len() >= 2, "one session wrapped 1,100 keys");
        assert!(encs.len() < 100, "sessions are not shared: {}", encs.len());
    }
    // A cold vault (no cached data keys) and the patient both open every version.
    let cold = vault(dir.path());
    for (i, s) in sealed.iter().enumerate().step_by(37) {
        assert_eq!(&cold.open(&ctx(i as u64), s).unwrap()[..], RECORD);
        assert_eq!(
            &open_as(v.blobs(), &patient, &ctx(i as u64), s).unwrap()[..],
            RECORD
        );
    }
    // Two versions wrapped under the same session: a wrapped key moved from one to the other
    // does not open (the wrapping key is bound to the version and its ciphertext).
    assert_eq!(sealed[1].wrapped[0].enc, sealed[2].wrapped[0].enc);
    let mut moved = sealed[2].clone();
    moved.wrapped = sealed[1].wrapped.clone();
    let cold = vault(dir.path());
    assert!(matches!(
        cold.open(&ctx(2), &moved),
        Err(VaultError::Decrypt)
    ));
    assert!(matches!(
        open_as(v.blobs(), &patient, &ctx(2), &moved),
        Err(VaultError::Decrypt)
    ));
    // A tampered encapsulated key or wrapped key does not open either.
    for (field, byte) in [(0, 5), (1, 10)] {
        let mut bad = sealed[3].clone();
        match field {
            0 => bad.wrapped[0].enc[byte] ^= 1,
            _ => bad.wrapped[0].ciphertext[byte] ^= 1,
        }
        let cold = vault(dir.path());
        assert!(cold.open(&ctx(3), &bad).is_err(), "tampered field {field}");
    }
}
