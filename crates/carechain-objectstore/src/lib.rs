//! The scale-out blob store: record ciphertexts as objects in S3-compatible object storage
//! (AWS S3, MinIO, Ceph, R2, ...) through the `object_store` crate, behind the vault's
//! [`BlobStore`] trait. Objects are content-addressed (`<prefix>/ab/cd/<sha-256 hex>`), written
//! with one PUT each (durable when the store acknowledges it, so `stage` = `put` and `sync` has
//! nothing left to do), checked against their id on every read, and erased with a DELETE.
//!
//! Provable erasure needs a bucket without object versioning (or with a lifecycle rule that
//! expires noncurrent versions at once): a versioned bucket keeps the deleted ciphertext.
//!
//! `object_store` is asynchronous; this store owns a small Tokio runtime of its own, runs each
//! request there and waits for the answer on a channel — so it can be called from any thread,
//! inside another runtime or not.

use std::sync::Arc;

use carechain_vault::{BlobStore, ContentId, VaultError};
use object_store::{ObjectStore, PutPayload, aws::AmazonS3Builder, path::Path};

/// Blobs in an S3-compatible bucket.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for S3BlobStore {
    fn drop(&mut self) {
        // Allowed anywhere, also inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn err(e: impl std::fmt::Display) -> VaultError {
    VaultError::Store(format!("object store: {e}"))
}

impl S3BlobStore {
    /// Connects to `bucket` with the standard `AWS_*` environment (`AWS_ENDPOINT`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ALLOW_HTTP`),
    /// storing objects under `prefix`.
    pub fn from_env(bucket: &str, prefix: &str) -> Result<S3BlobStore, VaultError> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(err)?;
        S3BlobStore::new(Box::new(store), prefix)
    }

    /// Wraps any `object_store` backend.
    pub fn new(store: Box<dyn ObjectStore>, prefix: &str) -> Result<S3BlobStore, VaultError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("blob-store")
            .enable_all()
            .build()
            .map_err(err)?;
        Ok(S3BlobStore {
            store: Arc::from(store),
            prefix: prefix.trim_matches('/').to_string(),
            rt: Some(rt),
        })
    }

    /// Runs a request on the store's runtime and waits for its result.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<dyn ObjectStore>) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> Result<T, VaultError> {
        let rt = self.rt.as_ref().ok_or_else(|| err("closed"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.store.clone());
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| err("request abandoned"))
    }

    fn path(&self, id: &ContentId) -> Path {
        let h = id.to_hex();
        let rel = format!("{}/{}/{h}", &h[..2], &h[2..4]);
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }
}

impl BlobStore for S3BlobStore {
    fn put(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        let id = carechain_crypto::sha256(bytes);
        let path = self.path(&id);
        let payload = PutPayload::from(bytes.to_vec());
        self.run(move |s| Box::pin(async move { s.put(&path, payload).await.map(|_| ()) }))?
            .map_err(err)?;
        Ok(id)
    }

    fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, VaultError> {
        let path = self.path(id);
        let got = self.run(move |s| {
            Box::pin(async move {
                match s.get(&path).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })?;
        match got.map_err(err)? {
            None => Ok(None),
            Some(b) => {
                if carechain_crypto::sha256(&b) != *id {
                    return Err(VaultError::Corrupt(id.to_hex()));
                }
                Ok(Some(b.to_vec()))
            }
        }
    }

    fn delete(&self, id: &ContentId) -> Result<bool, VaultError> {
        let path = self.path(id);
        self.run(move |s| {
            Box::pin(async move {
                match s.head(&path).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => return Ok(false),
                    Err(e) => return Err(err(e)),
                }
                s.delete(&path).await.map_err(err)?;
                Ok(true)
            })
        })?
    }
}

pub mod testing {
    //! Test support: a real S3-compatible server (moto's `moto_server`, from PyPI) on a free
    //! loopback port, for this crate's tests and the node's end-to-end tests.

    use std::io::{BufRead, Read, Write};

    /// A running `moto_server`, stopped on drop.
    pub struct MotoServer {
        child: std::process::Child,
        port: u16,
        /// `http://127.0.0.1:<port>`.
        pub endpoint: String,
    }

    impl MotoServer {
        /// Starts one and waits until it says it is listening.
        ///
        /// # Panics
        /// If `moto_server` is not installed or does not start.
        #[allow(clippy::expect_used)]
        pub fn start() -> MotoServer {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            // `python3 -m moto.server` is `moto_server` without depending on PATH shims.
            let mut child = std::process::Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("python3 is not installed");
            // Ready once the server says it is listening (its log goes to stderr).
            let stderr = child.stderr.take().expect("piped stderr");
            let mut lines = std::io::BufReader::new(stderr).lines();
            let ready = lines
                .by_ref()
                .any(|l| l.is_ok_and(|l| l.contains("Running on")));
            assert!(
                ready,
                "moto's server did not start: is it installed? pip install 'moto[server]' (scripts/test-all.sh does)"
            );
            // Keep draining its log so that it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            MotoServer {
                child,
                port,
                endpoint: format!("http://127.0.0.1:{port}"),
            }
        }

        /// Creates a bucket (moto accepts an unsigned request).
        ///
        /// # Panics
        /// If the server refuses.
        #[allow(clippy::expect_used)]
        pub fn create_bucket(&self, name: &str) {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
            write!(
                s,
                "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            )
            .expect("write");
            let mut resp = String::new();
            s.read_to_string(&mut resp).expect("read");
            assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
        }

        /// The environment that points `S3BlobStore::from_env` at this server.
        pub fn env(&self) -> Vec<(&'static str, String)> {
            vec![
                ("AWS_ENDPOINT", self.endpoint.clone()),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ]
        }
    }

    impl Drop for MotoServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
