//! Content-addressed blob storage: a blob's id is the SHA-256 of its bytes.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use carechain_crypto::{Hash, sha256};

use crate::VaultError;

/// A blob's address: SHA-256 of its bytes.
pub type ContentId = Hash;

/// Where ciphertext lives. Implementations must make `put` durable before returning,
/// `stage`d blobs durable by the next `sync`, and `delete` irreversible.
pub trait BlobStore: Send + Sync {
    /// Stores bytes durably; returns their content id. Storing the same bytes twice is a no-op.
    fn put(&self, bytes: &[u8]) -> Result<ContentId, VaultError>;
    /// Stores bytes, readable at once but durable only after the next [`BlobStore::sync`] (so
    /// that many writers share one sync). Nothing may refer to the blob durably before then.
    fn stage(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        self.put(bytes)
    }
    /// Makes every blob staged so far durable.
    fn sync(&self) -> Result<(), VaultError> {
        Ok(())
    }
    /// A mark that covers every blob staged so far, for [`BlobStore::sync_through`]; taken
    /// after staging, it is never 0 (callers read 0 as "nothing staged, no sync needed"). The
    /// default asks for a full [`BlobStore::sync`] every time, which is right for any store.
    fn staged_mark(&self) -> u64 {
        1
    }
    /// Makes durable at least every blob staged before `mark` was taken (with
    /// [`BlobStore::staged_mark`]); returns at once when a sync since then covered them.
    fn sync_through(&self, mark: u64) -> Result<(), VaultError> {
        let _ = mark;
        self.sync()
    }
    /// Reads a blob, checking it against its id.
    fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, VaultError>;
    /// Destroys a blob; returns whether it existed.
    fn delete(&self, id: &ContentId) -> Result<bool, VaultError>;
}

impl<T: BlobStore + ?Sized> BlobStore for Box<T> {
    fn put(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        (**self).put(bytes)
    }
    fn stage(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        (**self).stage(bytes)
    }
    fn sync(&self) -> Result<(), VaultError> {
        (**self).sync()
    }
    fn staged_mark(&self) -> u64 {
        (**self).staged_mark()
    }
    fn sync_through(&self, mark: u64) -> Result<(), VaultError> {
        (**self).sync_through(mark)
    }
    fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, VaultError> {
        (**self).get(id)
    }
    fn delete(&self, id: &ContentId) -> Result<bool, VaultError> {
        (**self).delete(id)
    }
}

/// Blobs as files under a directory (`ab/cd/<hex id>`), written atomically: temporary file,
/// fsync, rename, fsync of the directory.
pub struct LocalBlobStore {
    root: PathBuf,
}

fn io(e: std::io::Error) -> VaultError {
    VaultError::Store(e.kind().to_string())
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

impl LocalBlobStore {
    /// Opens (creating if needed) a blob directory. Leftover temporary files of an interrupted
    /// write are removed: they were never acknowledged.
    pub fn open(root: &Path) -> Result<LocalBlobStore, VaultError> {
        fs::create_dir_all(root.join("tmp")).map_err(io)?;
        for e in fs::read_dir(root.join("tmp")).map_err(io)? {
            let _ = fs::remove_file(e.map_err(io)?.path());
        }
        Ok(LocalBlobStore {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, id: &ContentId) -> PathBuf {
        let h = id.to_hex();
        self.root.join(&h[..2]).join(&h[2..4]).join(h)
    }
}

impl BlobStore for LocalBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        let id = sha256(bytes);
        let path = self.path(&id);
        if path.exists() {
            return Ok(id);
        }
        let dir = path
            .parent()
            .ok_or_else(|| VaultError::Store("bad path".into()))?;
        fs::create_dir_all(dir).map_err(io)?;
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|_| VaultError::Randomness)?;
        let tmp = self.root.join("tmp").join(hex::encode(rnd));
        {
            let mut f = fs::File::create(&tmp).map_err(io)?;
            f.write_all(bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(io)?;
        sync_dir(dir)?;
        Ok(id)
    }

    fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, VaultError> {
        match fs::read(self.path(id)) {
            Ok(b) => {
                if sha256(&b) != *id {
                    return Err(VaultError::Corrupt(id.to_hex()));
                }
                Ok(Some(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn delete(&self, id: &ContentId) -> Result<bool, VaultError> {
        let path = self.path(id);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        // Overwrite in place before unlinking, so the ciphertext does not linger in freed
        // blocks (on file systems that write in place).
        {
            let mut f = fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.write_all(&vec![0u8; len as usize]).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::remove_file(&path).map_err(io)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(true)
    }
}
