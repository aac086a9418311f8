//! Framing of mempool gossip: a batch of encoded transactions, each length-prefixed, with
//! bounds on count and size so a peer cannot make a validator allocate without limit.

use carechain_types::MAX_TX_BYTES;

/// Most transactions in one gossip message.
pub const MAX_GOSSIP_TXS: usize = 256;

/// Encodes a batch (at most [`MAX_GOSSIP_TXS`] transactions; callers chunk).
pub fn encode_batch(txs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + txs.iter().map(|t| 4 + t.len()).sum::<usize>());
    out.extend_from_slice(&(txs.len().min(MAX_GOSSIP_TXS) as u16).to_be_bytes());
    for t in txs.iter().take(MAX_GOSSIP_TXS) {
        out.extend_from_slice(&(t.len() as u32).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

/// Decodes a batch; `None` for anything malformed or over the bounds.
pub fn decode_batch(msg: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (n, mut rest) = msg.split_first_chunk::<2>()?;
    let n = u16::from_be_bytes(*n) as usize;
    if n > MAX_GOSSIP_TXS {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > MAX_TX_BYTES || tail.len() < len {
            return None;
        }
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_malformed_batches() {
        let batch = vec![vec![1u8, 2, 3], vec![], vec![9u8; 100]];
        let msg = encode_batch(&batch);
        assert_eq!(decode_batch(&msg), Some(batch));
        assert_eq!(decode_batch(&msg[..msg.len() - 1]), None);
        let mut extra = msg.clone();
        extra.push(0);
        assert_eq!(decode_batch(&extra), None);
        assert_eq!(decode_batch(&[0xff, 0xff]), None);
        let mut huge = vec![0u8, 1];
        huge.extend_from_slice(&(u32::MAX).to_be_bytes());
        assert_eq!(decode_batch(&huge), None);
        assert_eq!(decode_batch(&[]), None);
    }
}
