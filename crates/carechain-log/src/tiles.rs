//! The C2SP tlog-tiles layout: tile paths, tile contents, entry bundles, and a [`NodeSource`]
//! that reads complete nodes out of fetched tiles (used to verify a remote or copied log).

use std::{cell::RefCell, collections::BTreeMap};

use carechain_crypto::{Hash, merkle::node_hash};

use crate::{LogError, NodeSource};

/// Tile height: each tile holds up to 256 hashes of one tree level, 8 levels apart.
pub const TILE_HEIGHT: u8 = 8;
/// Full tile width.
pub const TILE_WIDTH: u64 = 256;

/// Encodes a tile index as `x001/x234/067`.
pub fn encode_index(n: u64) -> String {
    let s = format!("{n}");
    let padded = format!("{}{}", "0".repeat((3 - s.len() % 3) % 3), s);
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap_or("000"))
        .collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g}")
            } else {
                (*g).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Path of a hash tile: `tile/<L>/<N>[.p/<W>]`.
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    let mut p = format!("tile/{level}/{}", encode_index(index));
    if width < TILE_WIDTH {
        p.push_str(&format!(".p/{width}"));
    }
    p
}

/// Path of an entry bundle: `tile/entries/<N>[.p/<W>]`.
pub fn entries_path(index: u64, width: u64) -> String {
    let mut p = format!("tile/entries/{}", encode_index(index));
    if width < TILE_WIDTH {
        p.push_str(&format!(".p/{width}"));
    }
    p
}

/// What a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileRef {
    /// A hash tile at tile level `level`.
    Hashes {
        /// Tile level (tree level / 8).
        level: u8,
        /// Tile index.
        index: u64,
        /// Width (256 for a full tile).
        width: u64,
    },
    /// An entry bundle.
    Entries {
        /// Bundle index.
        index: u64,
        /// Width (256 for a full bundle).
        width: u64,
    },
}

/// Parses the part after `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
pub fn parse_tile_path(path: &str) -> Option<TileRef> {
    let (kind, rest) = path.split_once('/')?;
    let (index_part, width) = match rest.split_once(".p/") {
        Some((i, w)) => {
            if w.is_empty()
                || w.len() > 3
                || !w.bytes().all(|b| b.is_ascii_digit())
                || w.starts_with('0')
            {
                return None;
            }
            let w: u64 = w.parse().ok()?;
            if w == 0 || w >= TILE_WIDTH {
                return None;
            }
            (i, w)
        }
        None => (rest, TILE_WIDTH),
    };
    let groups: Vec<&str> = index_part.split('/').collect();
    if groups.len() > 7 {
        return None;
    }
    let mut digits = String::new();
    for (i, g) in groups.iter().enumerate() {
        let g = if i + 1 < groups.len() {
            g.strip_prefix('x')?
        } else {
            g
        };
        if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(g);
    }
    let index: u64 = digits.parse().ok()?;
    if encode_index(index) != index_part {
        return None;
    }
    if kind == "entries" {
        return Some(TileRef::Entries { index, width });
    }
    if kind.is_empty()
        || kind.len() > 2
        || !kind.bytes().all(|b| b.is_ascii_digit())
        || (kind.len() > 1 && kind.starts_with('0'))
    {
        return None;
    }
    let level: u8 = kind.parse().ok()?;
    if level > 7 {
        return None;
    }
    Some(TileRef::Hashes {
        level,
        index,
        width,
    })
}

/// Width of tile `index` at tile level `level` for a tree of `size` leaves (0 if absent).
pub fn tile_width(level: u8, index: u64, size: u64) -> u64 {
    let nodes = size
        .checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0);
    nodes.saturating_sub(index * TILE_WIDTH).min(TILE_WIDTH)
}

/// Encodes an entry bundle: each entry as a big-endian u16 length and its bytes.
pub fn encode_entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&e[..usize::from(len)]);
    }
    out
}

/// Decodes an entry bundle.
pub fn decode_entry_bundle(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, LogError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return Err(LogError::Source("truncated entry length".into()));
        }
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        bytes = &bytes[2..];
        if bytes.len() < len {
            return Err(LogError::Source("truncated entry".into()));
        }
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    Ok(out)
}

/// Reads complete nodes of a tree of `size` leaves from hash tiles obtained by `fetch`
/// (a function from a tile path such as `tile/0/000.p/15` to its bytes). Tiles are cached.
pub struct TileNodeSource<F: Fn(&str) -> Result<Vec<u8>, String>> {
    size: u64,
    fetch: F,
    cache: RefCell<BTreeMap<(u8, u64), Vec<Hash>>>,
}

impl<F: Fn(&str) -> Result<Vec<u8>, String>> TileNodeSource<F> {
    /// A source for the tree of `size` leaves.
    pub fn new(size: u64, fetch: F) -> Self {
        TileNodeSource {
            size,
            fetch,
            cache: RefCell::new(BTreeMap::new()),
        }
    }

    /// The hashes of tile (`level`, `index`) at this tree size.
    pub fn tile(&self, level: u8, index: u64) -> Result<Vec<Hash>, LogError> {
        if let Some(t) = self.cache.borrow().get(&(level, index)) {
            return Ok(t.clone());
        }
        let width = tile_width(level, index, self.size);
        if width == 0 {
            return Err(LogError::OutOfRange(format!(
                "tile {level}/{index} is beyond the tree"
            )));
        }
        let path = tile_path(level, index, width);
        let bytes = (self.fetch)(&path).map_err(|e| LogError::Source(format!("{path}: {e}")))?;
        if bytes.len() as u64 != width * 32 {
            return Err(LogError::Source(format!(
                "{path}: {} bytes, expected {}",
                bytes.len(),
                width * 32
            )));
        }
        let hashes: Vec<Hash> = bytes.chunks(32).filter_map(Hash::from_slice).collect();
        self.cache
            .borrow_mut()
            .insert((level, index), hashes.clone());
        Ok(hashes)
    }
}

impl<F: Fn(&str) -> Result<Vec<u8>, String>> NodeSource for TileNodeSource<F> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        let missing = LogError::MissingNode { level, index };
        let tile_level = level / TILE_HEIGHT;
        let r = level % TILE_HEIGHT;
        // The node covers 2^r consecutive nodes of tree level 8 * tile_level.
        let first = index.checked_shl(u32::from(r)).ok_or(missing)?;
        let count = 1u64 << r;
        let tile_index = first / TILE_WIDTH;
        let tile = self.tile(tile_level, tile_index)?;
        let off = (first % TILE_WIDTH) as usize;
        let end = off + count as usize;
        if end > tile.len() {
            return Err(LogError::MissingNode { level, index });
        }
        let mut layer: Vec<Hash> = tile[off..end].to_vec();
        while layer.len() > 1 {
            layer = layer.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        Ok(layer[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_matches_the_spec_examples() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(5), "005");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(tile_path(1, 1234067, 256), "tile/1/x001/x234/067");
        assert_eq!(tile_path(0, 0, 15), "tile/0/000.p/15");
        assert_eq!(entries_path(3, 7), "tile/entries/003.p/7");
    }

    #[test]
    fn paths_parse_back() {
        for (l, n, w) in [
            (0u8, 0u64, 256u64),
            (2, 1234067, 17),
            (0, 999, 1),
            (7, 1000, 255),
        ] {
            let p = tile_path(l, n, w);
            assert_eq!(
                parse_tile_path(p.strip_prefix("tile/").unwrap()),
                Some(TileRef::Hashes {
                    level: l,
                    index: n,
                    width: w
                })
            );
        }
        assert_eq!(
            parse_tile_path("entries/x001/002.p/5"),
            Some(TileRef::Entries {
                index: 1002,
                width: 5
            })
        );
        for bad in [
            "0/1",
            "0/000.p/0",
            "0/000.p/256",
            "0/x000",
            "8/000",
            "0/001/002",
            "01/000",
            "0/000.p/05",
            "../x",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn entry_bundles_round_trip() {
        let entries: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let b = encode_entry_bundle(entries.iter().copied());
        assert_eq!(
            decode_entry_bundle(&b).unwrap(),
            vec![b"one".to_vec(), vec![], b"three".to_vec()]
        );
        assert!(decode_entry_bundle(&b[..b.len() - 1]).is_err());
    }
}
