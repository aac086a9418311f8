//! Codec tests: pinned wire-format fixtures and property tests (round trip, truncation, bit flips).

#![allow(clippy::unwrap_used)]

use carechain_crypto::{Hash, PublicKey, SecretKey, sha256};
use carechain_types::*;
use proptest::prelude::*;

fn fixture_tx() -> SignedTx {
    let key = SecretKey::from_seed(&[1u8; 32]);
    TxBody {
        chain_id: "carechain-fixture".into(),
        signer: key.public(),
        nonce: 7,
        payload: Payload::Register {
            subject: SecretKey::from_seed(&[2u8; 32]).public(),
            role: Role::Practitioner,
            parent: Some(key.public()),
        },
    }
    .sign(&key)
}

fn fixture_block() -> Block {
    let key = SecretKey::from_seed(&[3u8; 32]);
    let txs = vec![fixture_tx()];
    let header = Header {
        version: FORMAT_VERSION,
        chain_id: "carechain-fixture".into(),
        height: 1,
        parent: sha256(b"genesis"),
        timestamp_ms: 1_790_000_000_000,
        proposer: key.public(),
        tx_count: 1,
        tx_root: Block::compute_tx_root(&txs),
        receipts_root: Receipt::compute_root(&[Receipt {
            tx_hash: txs[0].hash(),
            outcome: Outcome::Applied { log_index: 0 },
            fuel_used: 0,
            events: Vec::new(),
            data: Vec::new(),
        }]),
        state_root: sha256(b"state"),
        log_size: 1,
        log_root: sha256(b"log"),
    };
    Block::seal(header, txs, &key)
}

fn read_fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn transaction_wire_format_is_pinned() {
    let tx = fixture_tx();
    let bytes = encode(&tx);
    assert_eq!(
        hex::encode(&bytes),
        read_fixture("tx-v1.hex"),
        "tx encoding changed"
    );
    assert_eq!(
        tx.hash().to_hex(),
        read_fixture("tx-v1.hash"),
        "tx hash changed"
    );
    assert_eq!(decode_tx(&bytes).unwrap(), tx);
    assert!(tx.verify_with(&tx.body.signer).is_ok());
}

#[test]
fn block_wire_format_is_pinned() {
    let block = fixture_block();
    let bytes = encode(&block);
    assert_eq!(
        hex::encode(&bytes),
        read_fixture("block-v1.hex"),
        "block encoding changed"
    );
    assert_eq!(
        block.header.hash().to_hex(),
        read_fixture("block-v1.hash"),
        "header hash changed"
    );
    assert_eq!(decode_block(&bytes).unwrap(), block);
    assert!(block.verify_seal().is_ok());
}

#[test]
fn oversized_and_trailing_input_is_rejected() {
    let mut bytes = encode(&fixture_tx());
    bytes.push(0);
    assert!(matches!(
        decode_tx(&bytes),
        Err(DecodeError::Invalid { .. })
    ));
    let huge = vec![0u8; MAX_TX_BYTES + 1];
    assert!(matches!(
        decode_tx(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // A block whose tx vector claims u32::MAX entries, in a few bytes.
    let mut bytes = encode(&fixture_block().header);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_block(&bytes).is_err());
    // A string length prefix of 4 GiB.
    let mut tx = vec![0xff, 0xff, 0xff, 0xff];
    tx.extend_from_slice(b"abc");
    assert!(decode_tx(&tx).is_err());
}

fn arb_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Patient),
        Just(Role::Practitioner),
        Just(Role::Organization),
        Just(Role::Device),
        Just(Role::Validator),
        Just(Role::Operator),
    ]
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (arb_key(), arb_role(), proptest::option::of(arb_key())).prop_map(
            |(subject, role, parent)| Payload::Register {
                subject,
                role,
                parent
            }
        ),
        (arb_key(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(new_key, a, b)| {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&a);
            sig[32..].copy_from_slice(&b);
            Payload::RotateKey {
                new_key,
                proof: carechain_crypto::Signature(sig),
            }
        }),
        arb_key().prop_map(|subject| Payload::Deactivate { subject }),
        ("[a-z/-]{0,40}", any::<[u8; 32]>()).prop_map(|(kind, c)| Payload::Anchor {
            kind,
            commitment: Hash(c)
        }),
        (
            "[a-z/-]{0,40}",
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            "[A-Za-z]{0,70}",
            any::<u64>()
        )
            .prop_map(|(kind, c, subject, label, version)| Payload::TaggedAnchor {
                kind,
                commitment: Hash(c),
                subject: Hash(subject),
                label,
                version,
            }),
    ]
}

fn arb_tx() -> impl Strategy<Value = SignedTx> {
    (
        "[a-z0-9-]{1,30}",
        arb_key(),
        any::<u64>(),
        arb_payload(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(chain_id, signer, nonce, payload, s)| {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&s);
            SignedTx {
                body: TxBody {
                    chain_id,
                    signer,
                    nonce,
                    payload,
                },
                signature: carechain_crypto::Signature(sig),
            }
        })
}

proptest! {
    #[test]
    fn tx_round_trips(tx in arb_tx()) {
        let bytes = encode(&tx);
        prop_assert_eq!(decode_tx(&bytes).unwrap(), tx);
    }

    #[test]
    fn every_truncation_is_an_error(tx in arb_tx()) {
        let bytes = encode(&tx);
        for cut in 0..bytes.len() {
            prop_assert!(decode_tx(&bytes[..cut]).is_err(), "prefix of {} decoded", cut);
        }
    }

    #[test]
    fn bit_flips_never_panic_and_never_keep_the_hash(tx in arb_tx(), pos in any::<usize>(), bit in 0u8..8) {
        let mut bytes = encode(&tx);
        let i = pos % bytes.len();
        bytes[i] ^= 1 << bit;
        if let Ok(decoded) = decode_tx(&bytes) {
            // Canonical: a different byte string never decodes to the same value.
            prop_assert_ne!(decoded.hash(), tx.hash());
            prop_assert_eq!(encode(&decoded), bytes);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_tx(&bytes);
        let _ = decode_block(&bytes);
        let _ = decode_receipts(&bytes);
        let _ = decode_genesis(&bytes);
    }

    #[test]
    fn block_round_trips(txs in proptest::collection::vec(arb_tx(), 0..5), height in any::<u64>()) {
        let key = SecretKey::from_seed(&[9u8; 32]);
        let header = Header {
            version: FORMAT_VERSION, chain_id: "c".into(), height, parent: Hash::ZERO,
            timestamp_ms: 0, proposer: key.public(), tx_count: txs.len() as u32,
            tx_root: Block::compute_tx_root(&txs), receipts_root: Hash::ZERO,
            state_root: Hash::ZERO, log_size: 0, log_root: Hash::ZERO,
        };
        let block = Block::seal(header, txs, &key);
        let bytes = encode(&block);
        let back = decode_block(&bytes).unwrap();
        prop_assert!(back.verify_seal().is_ok());
        prop_assert_eq!(back, block);
    }
}
