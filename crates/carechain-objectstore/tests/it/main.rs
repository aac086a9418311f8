//! The S3 blob store against a real S3-compatible server on loopback (moto's `moto_server`,
//! from PyPI, installed by `.ci/run`): put, get, content addressing, corruption detection and
//! erasure through the S3 protocol.

#![allow(clippy::unwrap_used)]

use carechain_objectstore::S3BlobStore;
use carechain_vault::{BlobStore, VaultError};

use carechain_objectstore::testing::MotoServer as S3Server;

fn client(s3: &S3Server, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&s3.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_bucket_name(bucket)
        .build()
        .unwrap()
}

fn store(s3: &S3Server, bucket: &str) -> S3BlobStore {
    S3BlobStore::new(Box::new(client(s3, bucket)), "records").unwrap()
}

/// Direct access to the bucket, beside the store (to look and to tamper).
struct Raw(object_store::aws::AmazonS3, tokio::runtime::Runtime);

impl Raw {
    fn exists(&self, key: &str) -> bool {
        use object_store::ObjectStore;
        self.1
            .block_on(self.0.head(&object_store::path::Path::from(key)))
            .is_ok()
    }
    fn put(&self, key: &str, bytes: &[u8]) {
        use object_store::ObjectStore;
        self.1
            .block_on(self.0.put(
                &object_store::path::Path::from(key),
                object_store::PutPayload::from(bytes.to_vec()),
            ))
            .unwrap();
    }
}

#[test]
fn blobs_round_trip_through_s3_and_erasure_deletes_the_object() {
    let s3 = S3Server::start();
    s3.create_bucket("carechain");
    let store = store(&s3, "carechain");
    let raw = Raw(
        client(&s3, "carechain"),
        tokio::runtime::Runtime::new().unwrap(),
    );
    let bytes = b"ciphertext of a record version".to_vec();
    let id = store.stage(&bytes).unwrap();
    store.sync().unwrap();
    assert_eq!(id, carechain_crypto::sha256(&bytes));
    assert_eq!(store.get(&id).unwrap().unwrap(), bytes);
    // The object is where the content id says.
    let h = id.to_hex();
    let key = format!("records/{}/{}/{h}", &h[..2], &h[2..4]);
    assert!(raw.exists(&key));
    // Unknown ids are absent, not errors.
    assert!(
        store
            .get(&carechain_crypto::sha256(b"nothing"))
            .unwrap()
            .is_none()
    );
    // An object altered in the bucket is detected on read.
    raw.put(&key, b"tampered");
    assert!(matches!(store.get(&id), Err(VaultError::Corrupt(_))));
    store.put(&bytes).unwrap();
    // Erasure deletes the object; a second erasure finds nothing.
    assert!(store.delete(&id).unwrap());
    assert!(!raw.exists(&key));
    assert!(store.get(&id).unwrap().is_none());
    assert!(!store.delete(&id).unwrap());
    // A missing bucket is an error, not a silent loss.
    let nowhere = self::store(&s3, "no-such-bucket");
    assert!(nowhere.put(b"x").is_err());
}
