//! Fuzz target: transaction decoding never panics, and what decodes re-encodes to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = carechain_types::decode_tx(data) {
        assert_eq!(carechain_types::encode(&tx), data);
    }
});
