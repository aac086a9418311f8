//! Tree construction: the compact range used to append, root computation and proof generation
//! over any source of complete-subtree nodes.

use carechain_crypto::{Hash, merkle};

use crate::LogError;

/// Where complete subtree hashes come from. `node(level, index)` is the root of the complete
/// subtree holding leaves `index << level .. (index + 1) << level`.
pub trait NodeSource {
    /// Returns the hash of a complete node.
    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError>;
}

/// An in-memory log that keeps every complete node: for tests, proofs over small logs and the
/// offline verifier.
#[derive(Clone, Debug, Default)]
pub struct MemoryLog {
    levels: Vec<Vec<Hash>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash and returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let index = self.levels[0].len() as u64;
        self.levels[0].push(leaf);
        let mut level = 0;
        let mut i = index;
        while i & 1 == 1 {
            let left = self.levels[level][(i - 1) as usize];
            let right = self.levels[level][i as usize];
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(merkle::node_hash(&left, &right));
            level += 1;
            i >>= 1;
        }
        index
    }

    /// Appends leaf data (hashed with the 0x00 prefix) and returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_leaf_hash(merkle::leaf_hash(data))
    }

    /// The root at the current size.
    pub fn root(&self) -> Hash {
        root(self, self.size()).unwrap_or_else(|_| merkle::empty_root())
    }
}

impl NodeSource for MemoryLog {
    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or(LogError::MissingNode { level, index })
    }
}

/// The right border of a log: one complete subtree per set bit of the size. Enough to append
/// and to compute the root without reading anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// (level, hash) from the largest (left-most) subtree to the smallest.
    peaks: Vec<(u8, Hash)>,
}

impl CompactRange {
    /// The compact range of the empty log.
    pub fn empty() -> CompactRange {
        CompactRange::default()
    }

    /// Rebuilds the compact range of a log of `size` leaves from its complete nodes.
    pub fn from_source(source: &dyn NodeSource, size: u64) -> Result<CompactRange, LogError> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push((level, source.node(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(CompactRange { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Returns the complete nodes created, `(level, index, hash)`,
    /// starting with the leaf itself; the caller stores them.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let index = self.size;
        let mut created = vec![(0u8, index, leaf)];
        let mut current = (0u8, leaf);
        let mut i = index;
        while let Some(&(level, left)) = self.peaks.last() {
            if level != current.0 {
                break;
            }
            self.peaks.pop();
            i >>= 1;
            let h = merkle::node_hash(&left, &current.1);
            current = (level + 1, h);
            created.push((level + 1, i, h));
        }
        self.peaks.push(current);
        self.size += 1;
        created
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return merkle::empty_root();
        };
        for (_, left) in iter {
            acc = merkle::node_hash(left, &acc);
        }
        acc
    }
}

/// The Merkle tree hash of leaves `lo..hi`, where `lo` is aligned as in RFC 6962's recursive
/// decomposition (a multiple of the largest power of two not below `hi - lo`).
pub fn range_hash(source: &dyn NodeSource, lo: u64, hi: u64) -> Result<Hash, LogError> {
    let n = hi - lo;
    if n == 0 {
        return Ok(merkle::empty_root());
    }
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return source.node(level, lo >> level);
    }
    let k = merkle::split_point(n);
    Ok(merkle::node_hash(
        &range_hash(source, lo, lo + k)?,
        &range_hash(source, lo + k, hi)?,
    ))
}

/// The root of the tree of the first `size` leaves.
pub fn root(source: &dyn NodeSource, size: u64) -> Result<Hash, LogError> {
    range_hash(source, 0, size)
}

/// RFC 9162 inclusion proof (audit path) for leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(
    source: &dyn NodeSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LogError> {
    if index >= size {
        return Err(LogError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    let mut out = Vec::new();
    path(source, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(
    source: &dyn NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = merkle::split_point(n);
    if m < k {
        path(source, m, lo, lo + k, out)?;
        out.push(range_hash(source, lo + k, hi)?);
    } else {
        path(source, m - k, lo + k, hi, out)?;
        out.push(range_hash(source, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 consistency proof between the trees of `size1` and `size2` leaves.
pub fn consistency_proof(
    source: &dyn NodeSource,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, LogError> {
    if size1 > size2 {
        return Err(LogError::OutOfRange(format!(
            "size1 {size1} is larger than size2 {size2}"
        )));
    }
    let mut out = Vec::new();
    if size1 == 0 || size1 == size2 {
        return Ok(out);
    }
    subproof(source, size1, 0, size2, true, &mut out)?;
    Ok(out)
}

fn subproof(
    source: &dyn NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), LogError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(range_hash(source, lo, hi)?);
        }
        return Ok(());
    }
    let k = merkle::split_point(n);
    if m <= k {
        subproof(source, m, lo, lo + k, whole, out)?;
        out.push(range_hash(source, lo + k, hi)?);
    } else {
        subproof(source, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(source, lo, lo + k)?);
    }
    Ok(())
}
