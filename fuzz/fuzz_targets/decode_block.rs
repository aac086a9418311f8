//! Fuzz target: block and receipts decoding never panics, and is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = carechain_types::decode_block(data) {
        assert_eq!(carechain_types::encode(&b), data);
        let _ = b.verify_seal();
    }
    let _ = carechain_types::decode_receipts(data);
});
