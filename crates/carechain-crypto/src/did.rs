//! `did:key` identifiers for Ed25519 keys (multicodec `ed25519-pub` 0xed01, base58btc, `z` prefix).

use std::{fmt, str::FromStr};

use crate::keys::PublicKey;

const PREFIX: &str = "did:key:z";
const MULTICODEC_ED25519_PUB: [u8; 2] = [0xed, 0x01];

/// A `did:key` identity for an Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Did(pub PublicKey);

/// Why a string is not a carechain `did:key`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DidError {
    /// It does not start with `did:key:z` (base58btc multibase).
    #[error("not a did:key with base58btc multibase (expected prefix `did:key:z`)")]
    Prefix,
    /// The multibase part is not base58btc.
    #[error("the key part is not valid base58btc")]
    Base58,
    /// The multicodec is not `ed25519-pub` or the key is not 32 bytes.
    #[error("only 32-byte ed25519-pub keys (multicodec 0xed01) are supported")]
    Codec,
}

impl From<PublicKey> for Did {
    fn from(pk: PublicKey) -> Did {
        Did(pk)
    }
}

impl Did {
    /// The Ed25519 key this DID names.
    pub fn public_key(&self) -> PublicKey {
        self.0
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&MULTICODEC_ED25519_PUB);
        bytes.extend_from_slice(&(self.0).0);
        write!(f, "{PREFIX}{}", bs58::encode(bytes).into_string())
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Did {
    type Err = DidError;

    fn from_str(s: &str) -> Result<Did, DidError> {
        let rest = s.strip_prefix(PREFIX).ok_or(DidError::Prefix)?;
        if rest.len() > 64 {
            return Err(DidError::Codec);
        }
        let bytes = bs58::decode(rest)
            .into_vec()
            .map_err(|_| DidError::Base58)?;
        if bytes.len() != 34 || bytes[..2] != MULTICODEC_ED25519_PUB {
            return Err(DidError::Codec);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[2..]);
        Ok(Did(PublicKey(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn w3c_did_key_example_parses() {
        // Example from the W3C did:key specification (Ed25519).
        let s = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
        let did: Did = s.parse().unwrap();
        assert_eq!(did.to_string(), s);
        assert!(did.public_key().validate().is_ok());
    }

    #[test]
    fn rejects_other_methods_and_codecs() {
        assert_eq!("did:web:example.com".parse::<Did>(), Err(DidError::Prefix));
        assert_eq!("did:key:z0OIl".parse::<Did>(), Err(DidError::Base58));
        // secp256k1-pub (0xe701) key: valid did:key but not ours.
        assert_eq!(
            "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".parse::<Did>(),
            Err(DidError::Codec)
        );
    }

    proptest! {
        #[test]
        fn did_round_trips(key in any::<[u8; 32]>()) {
            let did = Did(PublicKey(key));
            let s = did.to_string();
            prop_assert!(s.starts_with("did:key:z6Mk"));
            prop_assert_eq!(s.parse::<Did>().unwrap(), did);
        }
    }
}
