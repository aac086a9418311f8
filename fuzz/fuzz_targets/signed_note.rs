//! Fuzz target: signed-note, checkpoint and tile-path parsing never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = carechain_log::SignedNote::parse(s);
        let _ = carechain_log::Checkpoint::parse_text(s);
        let _ = carechain_log::tiles::parse_tile_path(s);
        let _ = carechain_log::NoteVerifier::parse(s);
    }
});
