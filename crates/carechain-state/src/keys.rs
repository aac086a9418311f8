//! The layout of state keys.

use carechain_crypto::PublicKey;

/// `id/<identity key>` → [`crate::Identity`].
pub fn identity_key(id: &PublicKey) -> Vec<u8> {
    [b"id/".as_slice(), &id.0].concat()
}

/// `key/<public key>` → the identity that uses or used this key (keys are never reused).
pub fn key_index_key(key: &PublicKey) -> Vec<u8> {
    [b"key/".as_slice(), &key.0].concat()
}
