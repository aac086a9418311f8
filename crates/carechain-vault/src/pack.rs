//! The default blob store: ciphertexts appended to pack files, made durable a group at a time
//! (one `fdatasync` for every blob staged since the last one), and erased by overwriting
//! them in place.
//!
//! A pack file (`packs/<n>.pack`) is a sequence of records `"CCB1" | len: u32 LE | id: 32 |
//! bytes`, where `id` is the SHA-256 of the bytes. An erased record keeps its magic and length
//! with `id` and bytes overwritten by zeros, so the bytes are gone from the file and a scan
//! skips it. At open, the packs' headers are scanned to rebuild the in-memory index; a torn
//! record at the tail of the last pack (a crash before its sync — nothing can refer to it yet)
//! is cut off. Every read checks the bytes against their id. Packs roll over at [`PACK_LIMIT`] bytes.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use carechain_crypto::{Hash, sha256};
use parking_lot::{Mutex, RwLock};

use crate::{BlobStore, ContentId, VaultError};

const MAGIC: &[u8; 4] = b"CCB1";
const HEADER: u64 = 4 + 4 + 32;
/// A pack rolls over once it holds this many bytes.
pub const PACK_LIMIT: u64 = 256 << 20;
/// The largest blob.
pub const MAX_BLOB: usize = 64 << 20;

fn io(e: std::io::Error) -> VaultError {
    VaultError::Store(e.kind().to_string())
}

#[derive(Clone, Copy)]
struct Loc {
    pack: u32,
    /// Offset of the record's header.
    offset: u64,
    len: u32,
}

struct Appender {
    pack: u32,
    file: Arc<File>,
    end: u64,
    /// Blobs appended so far (a sequence number for group sync).
    written: u64,
    /// Earlier packs that still need a sync (after a roll-over).
    unsynced: Vec<Arc<File>>,
}

/// Blobs in append-only pack files under a directory.
pub struct PackBlobStore {
    dir: PathBuf,
    index: RwLock<HashMap<ContentId, Loc>>,
    packs: RwLock<Vec<Arc<File>>>,
    append: Mutex<Appender>,
    /// Sequence number of the last blob known durable; held while syncing.
    synced: Mutex<u64>,
    /// A write or sync failed: the store refuses further writes.
    failed: std::sync::atomic::AtomicBool,
}

fn pack_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.pack"))
}

fn open_pack(dir: &Path, n: u32) -> Result<File, VaultError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(pack_path(dir, n))
        .map_err(io)
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// Scans one pack: its live records, and the length of its valid prefix.
fn scan(file: &File, n: u32, last: bool) -> Result<(Vec<(ContentId, Loc)>, u64), VaultError> {
    let size = file.metadata().map_err(io)?.len();
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; HEADER as usize];
    while offset < size {
        let torn = |what: &str| {
            if last {
                Ok(())
            } else {
                Err(VaultError::Corrupt(format!("pack {n} at {offset}: {what}")))
            }
        };
        if size - offset < HEADER || r.read_exact(&mut header).is_err() {
            torn("short header")?;
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if &header[..4] != MAGIC || offset + HEADER + u64::from(len) > size {
            torn("bad header")?;
            break;
        }
        let id = Hash(header[8..].try_into().unwrap_or([0; 32]));
        r.seek_relative(i64::from(len)).map_err(io)?;
        // An erased record has an all-zero id (no blob hashes to it). Content is checked
        // against its id on every read (a damaged blob is reported as corrupt, not hidden).
        if id != Hash([0; 32]) {
            out.push((
                id,
                Loc {
                    pack: n,
                    offset,
                    len,
                },
            ));
        }
        offset += HEADER + u64::from(len);
    }
    Ok((out, offset))
}

impl PackBlobStore {
    /// Opens (creating if needed) a pack directory and rebuilds its index.
    pub fn open(dir: &Path) -> Result<PackBlobStore, VaultError> {
        fs::create_dir_all(dir).map_err(io)?;
        let mut numbers: Vec<u32> = fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".pack")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        if numbers.is_empty() {
            numbers.push(0);
        }
        let mut index = HashMap::new();
        let mut packs = Vec::new();
        let mut end = 0;
        for (i, &n) in numbers.iter().enumerate() {
            if usize::try_from(n).ok() != Some(i) {
                return Err(VaultError::Corrupt(format!("pack {i} is missing")));
            }
            let file = open_pack(dir, n)?;
            let last = i + 1 == numbers.len();
            let (live, valid) = scan(&file, n, last)?;
            if last {
                // Cut a torn tail (never synced, so never referred to).
                if valid < file.metadata().map_err(io)?.len() {
                    file.set_len(valid).map_err(io)?;
                    file.sync_all().map_err(io)?;
                }
                end = valid;
            }
            index.extend(live);
            packs.push(Arc::new(file));
        }
        sync_dir(dir)?;
        let n = numbers.len() - 1;
        let file = packs[n].clone();
        let store = PackBlobStore {
            dir: dir.to_path_buf(),
            index: RwLock::new(index),
            packs: RwLock::new(packs),
            append: Mutex::new(Appender {
                pack: u32::try_from(n).map_err(|_| VaultError::Store("too many packs".into()))?,
                file,
                end,
                written: 0,
                unsynced: Vec::new(),
            }),
            synced: Mutex::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
        };
        store.import_legacy(dir)?;
        Ok(store)
    }

    /// Moves blobs of the older file-per-blob layout (`ab/cd/<hex id>`, [`crate::LocalBlobStore`])
    /// found in `dir` into the packs: each is checked against its id, appended, synced, and only
    /// then its file is removed (a crash in between leaves it in both places, harmlessly).
    fn import_legacy(&self, dir: &Path) -> Result<(), VaultError> {
        let mut files = Vec::new();
        for a in fs::read_dir(dir).map_err(io)? {
            let a = a.map_err(io)?.path();
            let name = a.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !a.is_dir() || name.len() != 2 {
                continue;
            }
            for b in fs::read_dir(&a).map_err(io)? {
                for f in fs::read_dir(b.map_err(io)?.path()).map_err(io)? {
                    files.push(f.map_err(io)?.path());
                }
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        for f in &files {
            let bytes = fs::read(f).map_err(io)?;
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if sha256(&bytes).to_hex() != name {
                return Err(VaultError::Corrupt(format!("legacy blob {name}")));
            }
            self.stage(&bytes)?;
        }
        self.sync()?;
        for f in &files {
            fs::remove_file(f).map_err(io)?;
        }
        for a in fs::read_dir(dir).map_err(io)? {
            let a = a.map_err(io)?.path();
            if a.is_dir() {
                // Empty two-level directories of the old layout (and its `tmp`).
                for b in fs::read_dir(&a).map_err(io)? {
                    let _ = fs::remove_dir(b.map_err(io)?.path());
                }
                let _ = fs::remove_dir(&a);
            }
        }
        sync_dir(dir)
    }

    /// How many live blobs the store holds.
    pub fn len(&self) -> usize {
        self.index.read().len()
    }

    /// Whether the store holds no live blob.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fail<T>(&self, e: VaultError) -> Result<T, VaultError> {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        Err(e)
    }

    fn check(&self) -> Result<(), VaultError> {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(VaultError::Store(
                "an earlier write failed; reopen the store".into(),
            ));
        }
        Ok(())
    }

    fn file(&self, pack: u32) -> Result<Arc<File>, VaultError> {
        self.packs
            .read()
            .get(pack as usize)
            .cloned()
            .ok_or_else(|| VaultError::Corrupt(format!("pack {pack} is missing")))
    }
}

impl BlobStore for PackBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        let id = self.stage(bytes)?;
        self.sync()?;
        Ok(id)
    }

    fn stage(&self, bytes: &[u8]) -> Result<ContentId, VaultError> {
        self.check()?;
        if bytes.len() > MAX_BLOB {
            return Err(VaultError::Store("blob too large".into()));
        }
        let id = sha256(bytes);
        if self.index.read().contains_key(&id) {
            return Ok(id);
        }
        let len =
            u32::try_from(bytes.len()).map_err(|_| VaultError::Store("blob too large".into()))?;
        let mut record = Vec::with_capacity(HEADER as usize + bytes.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&id.0);
        record.extend_from_slice(bytes);
        let mut a = self.append.lock();
        if a.end + record.len() as u64 > PACK_LIMIT && a.end > 0 {
            let next = a.pack + 1;
            let file = match open_pack(&self.dir, next).and_then(|f| {
                sync_dir(&self.dir)?;
                Ok(f)
            }) {
                Ok(f) => Arc::new(f),
                Err(e) => return self.fail(e),
            };
            self.packs.write().push(file.clone());
            let old = std::mem::replace(&mut a.file, file);
            a.unsynced.push(old);
            a.pack = next;
            a.end = 0;
        }
        if let Err(e) = a.file.write_all_at(&record, a.end) {
            return self.fail(io(e));
        }
        let loc = Loc {
            pack: a.pack,
            offset: a.end,
            len,
        };
        a.end += record.len() as u64;
        a.written += 1;
        self.index.write().insert(id, loc);
        Ok(id)
    }

    fn sync(&self) -> Result<(), VaultError> {
        let target = self.append.lock().written;
        self.sync_through(target)
    }

    fn staged_mark(&self) -> u64 {
        self.append.lock().written
    }

    fn sync_through(&self, target: u64) -> Result<(), VaultError> {
        self.check()?;
        // Group sync: whoever holds `synced` syncs for everyone staged before it started.
        let mut synced = self.synced.lock();
        if *synced >= target {
            return Ok(());
        }
        let (file, older, upto) = {
            let mut a = self.append.lock();
            (a.file.clone(), std::mem::take(&mut a.unsynced), a.written)
        };
        for f in older.iter().chain(std::iter::once(&file)) {
            if let Err(e) = f.sync_data() {
                return self.fail(io(e));
            }
        }
        *synced = upto;
        Ok(())
    }

    fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(loc) = self.index.read().get(id).copied() else {
            return Ok(None);
        };
        let file = self.file(loc.pack)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset + HEADER)
            .map_err(io)?;
        if sha256(&buf) != *id {
            return Err(VaultError::Corrupt(id.to_hex()));
        }
        Ok(Some(buf))
    }

    fn delete(&self, id: &ContentId) -> Result<bool, VaultError> {
        self.check()?;
        let Some(loc) = self.index.read().get(id).copied() else {
            return Ok(false);
        };
        let file = self.file(loc.pack)?;
        // Overwrite id and bytes in place, durably, before forgetting the blob.
        let zeros = vec![0u8; 32 + loc.len as usize];
        if let Err(e) = file
            .write_all_at(&zeros, loc.offset + 8)
            .and_then(|()| file.sync_data())
        {
            return self.fail(io(e));
        }
        self.index.write().remove(id);
        Ok(true)
    }
}

impl std::fmt::Debug for PackBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackBlobStore")
            .field("dir", &self.dir)
            .field("blobs", &self.len())
            .finish()
    }
}
