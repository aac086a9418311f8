//! Blocks as Commonware sees them: carechain's sealed block (or the genesis marker at height
//! 0) with its header hash as the consensus digest, decoded only when its transactions match
//! the header's transaction root and its proposer seal verifies.

use std::sync::Arc;

use bytes::{Buf, BufMut};
use carechain_crypto::Hash;
use carechain_types::{Block, decode_block, encode};
use commonware_codec::{EncodeSize, Error as CodecError, Read, Write};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{Digestible, sha256::Digest};

/// The consensus digest of a carechain hash.
pub fn digest_of(hash: &Hash) -> Digest {
    Digest(hash.0)
}

/// The carechain hash of a consensus digest.
pub fn hash_of(digest: &Digest) -> Hash {
    Hash(digest.0)
}

/// A block on the consensus path: the chain's genesis (height 0, digest = the genesis hash)
/// or a sealed block. Its encoding is made once and kept.
#[derive(Clone, Debug)]
pub struct ChainBlock {
    inner: Inner,
    encoded: Arc<Vec<u8>>,
}

#[derive(Clone, Debug)]
enum Inner {
    Genesis(Hash),
    Block { block: Arc<Block>, hash: Hash },
}

const TAG_GENESIS: u8 = 0;
const TAG_BLOCK: u8 = 1;

impl ChainBlock {
    /// The genesis marker of a chain.
    pub fn genesis(hash: Hash) -> ChainBlock {
        let mut encoded = Vec::with_capacity(33);
        encoded.push(TAG_GENESIS);
        encoded.extend_from_slice(&hash.0);
        ChainBlock {
            inner: Inner::Genesis(hash),
            encoded: Arc::new(encoded),
        }
    }

    /// A sealed block.
    pub fn block(block: Block) -> ChainBlock {
        let body = encode(&block);
        let mut encoded = Vec::with_capacity(5 + body.len());
        encoded.push(TAG_BLOCK);
        encoded.extend_from_slice(&(body.len() as u32).to_be_bytes());
        encoded.extend_from_slice(&body);
        let hash = block.header.hash();
        ChainBlock {
            inner: Inner::Block {
                block: Arc::new(block),
                hash,
            },
            encoded: Arc::new(encoded),
        }
    }

    /// The sealed block (`None` for genesis).
    pub fn sealed(&self) -> Option<&Arc<Block>> {
        match &self.inner {
            Inner::Genesis(_) => None,
            Inner::Block { block, .. } => Some(block),
        }
    }

    /// The header hash (the genesis hash for genesis).
    pub fn hash(&self) -> Hash {
        match &self.inner {
            Inner::Genesis(h) => *h,
            Inner::Block { hash, .. } => *hash,
        }
    }

    /// The height (0 for genesis).
    pub fn chain_height(&self) -> u64 {
        self.sealed().map_or(0, |b| b.header.height)
    }

    /// The encoded size in bytes.
    pub fn size(&self) -> usize {
        self.encoded.len()
    }
}

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.encoded);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        self.encoded.len()
    }
}

impl Read for ChainBlock {
    /// The largest encoded block accepted.
    type Cfg = usize;

    fn read_cfg(buf: &mut impl Buf, max: &usize) -> Result<Self, CodecError> {
        if !buf.has_remaining() {
            return Err(CodecError::EndOfBuffer);
        }
        match buf.get_u8() {
            TAG_GENESIS => {
                if buf.remaining() < 32 {
                    return Err(CodecError::EndOfBuffer);
                }
                let mut h = [0u8; 32];
                buf.copy_to_slice(&mut h);
                Ok(ChainBlock::genesis(Hash(h)))
            }
            TAG_BLOCK => {
                if buf.remaining() < 4 {
                    return Err(CodecError::EndOfBuffer);
                }
                let len = buf.get_u32() as usize;
                if len > *max {
                    return Err(CodecError::InvalidLength(len));
                }
                if buf.remaining() < len {
                    return Err(CodecError::EndOfBuffer);
                }
                let mut body = vec![0u8; len];
                buf.copy_to_slice(&mut body);
                let block = decode_block(&body)
                    .map_err(|_| CodecError::Invalid("ChainBlock", "not a carechain block"))?;
                // The digest covers the header only: bind the rest to it before anyone
                // trusts the block by its digest.
                if Block::compute_tx_root(&block.txs) != block.header.tx_root
                    || block.header.tx_count as usize != block.txs.len()
                {
                    return Err(CodecError::Invalid(
                        "ChainBlock",
                        "transactions do not match the header",
                    ));
                }
                if block.verify_seal().is_err() {
                    return Err(CodecError::Invalid("ChainBlock", "bad proposer seal"));
                }
                let decoded = ChainBlock::block(block);
                if decoded.encoded[5..] != body[..] {
                    return Err(CodecError::Invalid("ChainBlock", "non-canonical encoding"));
                }
                Ok(decoded)
            }
            other => Err(CodecError::InvalidEnum(other)),
        }
    }
}

impl Digestible for ChainBlock {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        digest_of(&self.hash())
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.chain_height())
    }
}

impl commonware_consensus::Block for ChainBlock {
    fn parent(&self) -> Digest {
        match &self.inner {
            Inner::Genesis(_) => Digest([0u8; 32]),
            Inner::Block { block, .. } => digest_of(&block.header.parent),
        }
    }
}

impl PartialEq for ChainBlock {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for ChainBlock {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use carechain_crypto::{SecretKey, sha256};
    use carechain_types::{FORMAT_VERSION, Header, Payload, TxBody};
    use commonware_codec::{Decode, Encode};

    fn block(k: &SecretKey) -> Block {
        let txs: Vec<_> = (0..3u64)
            .map(|n| {
                TxBody {
                    chain_id: "c".into(),
                    signer: k.public(),
                    nonce: n,
                    payload: Payload::Anchor {
                        kind: "t".into(),
                        commitment: sha256(&n.to_le_bytes()),
                    },
                }
                .sign(k)
            })
            .collect();
        let header = Header {
            version: FORMAT_VERSION,
            chain_id: "c".into(),
            height: 1,
            parent: sha256(b"genesis"),
            timestamp_ms: 5,
            proposer: k.public(),
            tx_count: txs.len() as u32,
            tx_root: Block::compute_tx_root(&txs),
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            log_size: 0,
            log_root: Hash::ZERO,
        };
        Block::seal(header, txs, k)
    }

    #[test]
    fn decodes_what_it_encodes_and_refuses_anything_the_digest_does_not_bind() {
        let k = SecretKey::from_seed(&[1; 32]);
        let b = block(&k);
        let cb = ChainBlock::block(b.clone());
        let bytes = cb.encode();
        let back = ChainBlock::decode_cfg(bytes.clone(), &(1 << 20)).unwrap();
        assert_eq!(back, cb);
        assert_eq!(back.digest(), digest_of(&b.header.hash()));
        let g = ChainBlock::genesis(sha256(b"g"));
        assert_eq!(ChainBlock::decode_cfg(g.encode(), &0).unwrap(), g);
        // Same header (same digest), other transactions: refused.
        let mut other = b.clone();
        other.txs.pop();
        other
            .txs
            .push(block(&SecretKey::from_seed(&[2; 32])).txs[0].clone());
        assert!(ChainBlock::decode_cfg(ChainBlock::block(other).encode(), &(1 << 20)).is_err());
        // Same header, a seal that is not the proposer's: refused.
        let mut forged = b.clone();
        forged.seal = Block::seal(b.header.clone(), vec![], &SecretKey::from_seed(&[3; 32])).seal;
        assert!(ChainBlock::decode_cfg(ChainBlock::block(forged).encode(), &(1 << 20)).is_err());
        // Truncated, oversized, unknown tag, garbage.
        assert!(ChainBlock::decode_cfg(bytes.slice(..bytes.len() - 1), &(1 << 20)).is_err());
        assert!(ChainBlock::decode_cfg(bytes.clone(), &16).is_err());
        assert!(ChainBlock::decode_cfg(bytes::Bytes::from_static(&[9, 0, 0]), &16).is_err());
        assert!(
            ChainBlock::decode_cfg(bytes::Bytes::from_static(&[1, 0, 0, 0, 3, 1, 2, 3]), &16)
                .is_err()
        );
    }
}
