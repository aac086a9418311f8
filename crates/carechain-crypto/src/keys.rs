//! Ed25519 keys, domain-separated signing and (batch) verification.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, Verifier};
use zeroize::Zeroizing;

use crate::did::Did;

/// Errors from key handling and signature checks. They never contain key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The bytes are not a valid Ed25519 public key (not a curve point).
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// A secret key must be exactly 32 bytes.
    #[error("invalid Ed25519 secret key length")]
    InvalidSecretKey,
    /// The signature does not verify under the given key, namespace and message.
    #[error("signature verification failed")]
    BadSignature,
    /// Batch verification failed; `index` is the first item that fails on its own.
    #[error("signature {index} of the batch does not verify")]
    BadSignatureInBatch {
        /// Index of the first failing item in the batch.
        index: usize,
    },
    /// The operating system's random source failed.
    #[error("system randomness unavailable")]
    Randomness,
}

/// The purposes for which carechain signs. Each signature is made over the namespace's bytes
/// followed by the message, so a signature made for one purpose never verifies for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// A ledger transaction body.
    Transaction,
    /// A block seal by its proposer.
    Block,
    /// Proof that the holder of a new key agrees to a key rotation.
    KeyRotation,
    /// An HTTP/API challenge response (authentication).
    Challenge,
    /// A certificate the node issues (erasure certificates).
    Certificate,
    /// A patient's claim of her record with a one-time activation code.
    PatientClaim,
    /// A request one node makes of another for a patient's records.
    PeerRequest,
    /// A custodian node's answer to a peer request.
    PeerAnswer,
    /// An EPCIS subscription's delivery to its webhook.
    EpcisDelivery,
    /// The identifier of a product or logistic unit on the ledger (a hash, not a signature).
    SupplyItem,
}

impl Namespace {
    /// The constant prefix for this purpose. Each ends with a NUL byte so that no
    /// namespace is a prefix of another.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Namespace::Transaction => b"carechain/v1/transaction\0",
            Namespace::Block => b"carechain/v1/block\0",
            Namespace::KeyRotation => b"carechain/v1/key-rotation\0",
            Namespace::Challenge => b"carechain/v1/challenge\0",
            Namespace::Certificate => b"carechain/v1/certificate\0",
            Namespace::PatientClaim => b"carechain/v1/patient-claim\0",
            Namespace::PeerRequest => b"carechain/v1/peer-request\0",
            Namespace::PeerAnswer => b"carechain/v1/peer-answer\0",
            Namespace::EpcisDelivery => b"carechain/v1/epcis-delivery\0",
            Namespace::SupplyItem => b"carechain/v1/supply-item\0",
        }
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

impl Signature {
    /// Lower-case hexadecimal form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// An Ed25519 public key (32 bytes, compressed Edwards point). The bytes are not checked
/// at decode time; [`PublicKey::verify`] rejects keys that are not valid points.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", Did::from(*self))
    }
}

impl PublicKey {
    /// The X25519 public key of the same key pair (the birational map from Edwards to
    /// Montgomery form), so that data can be encrypted to an identity with no second key
    /// to register — as age does for ssh-ed25519 recipients; ePrint 2021/509 shows HPKE-style
    /// KEMs stay secure when they share the key with Ed25519 signatures.
    pub fn x25519(&self) -> Result<[u8; 32], CryptoError> {
        Ok(self.dalek()?.to_montgomery().to_bytes())
    }

    /// The `did:key` of this key.
    pub fn did(&self) -> Did {
        Did::from(*self)
    }

    /// The decompressed key. Point decompression costs about as much as a third of a
    /// verification, and the same signers sign again and again, so decompressed keys are
    /// cached per thread (bounded; a pure function's cache, so results never depend on it).
    fn dalek(&self) -> Result<ed25519_dalek::VerifyingKey, CryptoError> {
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<[u8; 32], ed25519_dalek::VerifyingKey>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        const MAX_CACHED: usize = 65_536;
        if let Some(k) = CACHE.with(|c| c.borrow().get(&self.0).copied()) {
            return Ok(k);
        }
        let k = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(self.0, k);
        });
        Ok(k)
    }

    /// Checks that the bytes decode to a curve point.
    pub fn validate(&self) -> Result<(), CryptoError> {
        self.dalek().map(|_| ())
    }

    /// Verifies a domain-separated signature over `namespace || message`.
    pub fn verify(
        &self,
        ns: Namespace,
        message: &[u8],
        sig: &Signature,
    ) -> Result<(), CryptoError> {
        let mut buf = Vec::with_capacity(ns.as_bytes().len() + message.len());
        buf.extend_from_slice(ns.as_bytes());
        buf.extend_from_slice(message);
        self.verify_raw(&buf, sig)
    }

    /// Verifies a plain Ed25519 signature (RFC 8032) over `message`, rejecting malleable
    /// (non-canonical) signatures. Only for formats that define their own separation,
    /// such as C2SP signed notes, and for test vectors.
    pub fn verify_raw(&self, message: &[u8], sig: &Signature) -> Result<(), CryptoError> {
        let vk = self.dalek()?;
        let s = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify(message, &s)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// An Ed25519 secret key. Its bytes are zeroized on drop and never printed.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<redacted>, public: {})", self.public().did())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, CryptoError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| CryptoError::Randomness)?;
        Ok(SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from its 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A key from a seed slice, which must be 32 bytes long.
    pub fn from_seed_slice(seed: &[u8]) -> Result<SecretKey, CryptoError> {
        let arr: [u8; 32] = seed.try_into().map_err(|_| CryptoError::InvalidSecretKey)?;
        Ok(SecretKey::from_seed(&arr))
    }

    /// The 32-byte seed, in a buffer that is zeroized on drop. Handle with care.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The X25519 secret scalar of this key (RFC 7748 form, clamped by X25519 itself), for
    /// opening what was encrypted to [`PublicKey::x25519`]. Zeroized on drop.
    pub fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_scalar_bytes())
    }

    /// Signs `namespace || message`.
    pub fn sign(&self, ns: Namespace, message: &[u8]) -> Signature {
        let mut buf = Vec::with_capacity(ns.as_bytes().len() + message.len());
        buf.extend_from_slice(ns.as_bytes());
        buf.extend_from_slice(message);
        Signature(self.0.sign(&buf).to_bytes())
    }

    /// Signs the text of a C2SP signed note (a log checkpoint). The signed-note format is
    /// its own domain separation, and other tools must be able to verify these signatures.
    pub fn sign_note(&self, note_text: &[u8]) -> Signature {
        Signature(self.0.sign(note_text).to_bytes())
    }
}

/// One item of a batch verification: who signed what, for which purpose.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    /// The signer's key.
    pub key: &'a PublicKey,
    /// The purpose.
    pub ns: Namespace,
    /// The message (without the namespace).
    pub message: &'a [u8],
    /// The signature.
    pub sig: &'a Signature,
}

/// Verifies many domain-separated signatures at once (much faster per signature than one by
/// one). On failure, the items are re-checked singly and the first bad index is reported.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(items.len());
    for (index, it) in items.iter().enumerate() {
        keys.push(
            it.key
                .dalek()
                .map_err(|_| CryptoError::BadSignatureInBatch { index })?,
        );
    }
    let buffers: Vec<Vec<u8>> = items
        .iter()
        .map(|it| {
            let mut b = Vec::with_capacity(it.ns.as_bytes().len() + it.message.len());
            b.extend_from_slice(it.ns.as_bytes());
            b.extend_from_slice(it.message);
            b
        })
        .collect();
    let messages: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|it| ed25519_dalek::Signature::from_bytes(&it.sig.0))
        .collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (index, it) in items.iter().enumerate() {
        if it.key.verify(it.ns, it.message, it.sig).is_err() {
            return Err(CryptoError::BadSignatureInBatch { index });
        }
    }
    // Batch equation failed but every single check passed (possible only for adversarial
    // small-order components): treat the batch as bad and name the first item.
    Err(CryptoError::BadSignatureInBatch { index: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_bound_to_its_namespace() {
        let k = SecretKey::from_seed(&[7u8; 32]);
        let sig = k.sign(Namespace::Transaction, b"hello");
        assert!(
            k.public()
                .verify(Namespace::Transaction, b"hello", &sig)
                .is_ok()
        );
        assert_eq!(
            k.public().verify(Namespace::Block, b"hello", &sig),
            Err(CryptoError::BadSignature)
        );
        assert!(
            k.public()
                .verify(Namespace::Transaction, b"hellp", &sig)
                .is_err()
        );
        assert!(k.public().verify_raw(b"hello", &sig).is_err());
    }

    #[test]
    fn namespaces_are_prefix_free() {
        let all = [
            Namespace::Transaction,
            Namespace::Block,
            Namespace::KeyRotation,
            Namespace::Challenge,
            Namespace::Certificate,
            Namespace::PatientClaim,
            Namespace::PeerRequest,
            Namespace::PeerAnswer,
        ];
        for a in all {
            for b in all {
                if a != b {
                    assert!(
                        !b.as_bytes().starts_with(a.as_bytes()),
                        "{a:?} prefixes {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn batch_names_the_first_bad_signature() {
        let keys: Vec<SecretKey> = (0..40u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let pubs: Vec<PublicKey> = keys.iter().map(SecretKey::public).collect();
        let mut sigs: Vec<Signature> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| k.sign(Namespace::Transaction, m))
            .collect();
        fn items<'a>(
            pubs: &'a [PublicKey],
            msgs: &'a [Vec<u8>],
            sigs: &'a [Signature],
        ) -> Vec<BatchItem<'a>> {
            (0..40)
                .map(|i| BatchItem {
                    key: &pubs[i],
                    ns: Namespace::Transaction,
                    message: &msgs[i],
                    sig: &sigs[i],
                })
                .collect()
        }
        assert_eq!(verify_batch(&items(&pubs, &msgs, &sigs)), Ok(()));
        sigs[17].0[3] ^= 1;
        assert_eq!(
            verify_batch(&items(&pubs, &msgs, &sigs)),
            Err(CryptoError::BadSignatureInBatch { index: 17 })
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = SecretKey::from_seed(&[0xAB; 32]);
        let dbg = format!("{k:?}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
    }

    #[test]
    fn rfc8032_test_1() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let k = SecretKey::from_seed_slice(&seed).unwrap();
        assert_eq!(
            hex::encode(k.public().0),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = k.sign_note(b"");
        assert_eq!(
            sig.to_hex(),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
