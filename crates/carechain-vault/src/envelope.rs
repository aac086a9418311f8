//! Envelope encryption of record versions and HPKE wrapping of their data keys.

use std::collections::HashMap;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, sha256, sha256_parts};
use hpke::{
    Deserializable, Kem as _, OpModeR, OpModeS, Serializable, aead::ChaCha20Poly1305,
    kdf::HkdfSha256, kem::X25519HkdfSha256,
};
use parking_lot::Mutex;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{BlobStore, ContentId, VaultError};

const AAD_NAMESPACE: &[u8] = b"carechain/v1/record\0";
const WRAP_INFO: &[u8] = b"carechain/v1/data-key-wrap\0";
const COMMITMENT_NAMESPACE: &[u8] = b"carechain/v1/commitment\0";
const MAX_CACHED_KEYS: usize = 100_000;

/// What a record version is: bound to its ciphertext as associated data, so a ciphertext moved
/// to another patient, resource or version does not decrypt.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RecordContext {
    /// The patient the record belongs to (the node's internal id, never sent to the ledger).
    pub patient: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource id.
    pub resource_id: String,
    /// The version.
    pub version: u64,
}

impl RecordContext {
    fn aad(&self) -> Vec<u8> {
        let mut a = AAD_NAMESPACE.to_vec();
        a.extend_from_slice(&borsh::to_vec(self).unwrap_or_default());
        a
    }
}

/// An X25519 key-encryption key (the node's, or a patient's).
pub struct EncryptionKey {
    sk: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    pk: <X25519HkdfSha256 as hpke::Kem>::PublicKey,
}

/// The public half of an [`EncryptionKey`]: 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicEncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EncryptionKey(<redacted>, public: {})",
            hex::encode(self.public().0)
        )
    }
}

impl EncryptionKey {
    /// Derives a key from 32 bytes of secret seed (RFC 9180 DeriveKeyPair).
    pub fn from_seed(seed: &[u8; 32]) -> EncryptionKey {
        let (sk, pk) = X25519HkdfSha256::derive_keypair(seed);
        EncryptionKey { sk, pk }
    }

    /// A fresh key; returns it with its seed (to be stored by the caller, mode 0600).
    pub fn generate() -> Result<(EncryptionKey, Zeroizing<[u8; 32]>), VaultError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| VaultError::Randomness)?;
        Ok((EncryptionKey::from_seed(&seed), seed))
    }

    /// The key of an X25519 secret scalar, e.g. an Ed25519 identity's
    /// (`carechain_crypto::SecretKey::x25519_secret`): its public half is the identity's
    /// `PublicKey::x25519`, so records can be wrapped to any identity without a second key.
    pub fn from_x25519_secret(secret: &[u8; 32]) -> Result<EncryptionKey, VaultError> {
        let sk = <<X25519HkdfSha256 as hpke::Kem>::PrivateKey as hpke::Deserializable>::from_bytes(
            secret,
        )
        .map_err(|_| VaultError::Wrap)?;
        let pk = <X25519HkdfSha256 as hpke::Kem>::sk_to_pk(&sk);
        Ok(EncryptionKey { sk, pk })
    }

    /// The public key.
    pub fn public(&self) -> PublicEncryptionKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.pk.to_bytes());
        PublicEncryptionKey(out)
    }

    /// Unwraps the data key wrapped for this key.
    fn unwrap_key(
        &self,
        ctx_aad: &[u8],
        w: &WrappedKey,
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&w.enc)
            .map_err(|_| VaultError::Wrap)?;
        let info = [WRAP_INFO, ctx_aad].concat();
        let pt = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            &info,
            &w.ciphertext,
            &[],
        )
        .map_err(|_| VaultError::Decrypt)?;
        let pt = Zeroizing::new(pt);
        let mut key = Zeroizing::new([0u8; 32]);
        if pt.len() != 32 {
            return Err(VaultError::Decrypt);
        }
        key.copy_from_slice(&pt);
        Ok(key)
    }
}

/// A data key wrapped (HPKE) for one recipient.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct WrappedKey {
    /// The recipient's public key.
    pub recipient: PublicEncryptionKey,
    /// HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

/// Everything needed to find, decrypt and prove a sealed record version (kept off-chain by
/// the caller). Deleting it together with [`Vault::erase`] makes the record unrecoverable.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedRecord {
    /// The ciphertext's content id in the blob store.
    pub blob: ContentId,
    /// The salt of the commitment.
    pub salt: [u8; 32],
    /// The salted commitment that goes on the ledger.
    pub commitment: Hash,
    /// The data key, wrapped for each recipient.
    pub wrapped: Vec<WrappedKey>,
}

/// The ledger commitment to a ciphertext: `SHA-256(ns || salt || SHA-256(ciphertext))`. Without
/// the salt it reveals nothing, even about a guessable record; with it, anyone holding the
/// ciphertext can check it.
pub fn commitment(salt: &[u8; 32], blob: &ContentId) -> Hash {
    sha256_parts(&[COMMITMENT_NAMESPACE, salt, &blob.0])
}

/// A patient pseudonym for the ledger: HMAC-SHA256 of the patient id under a node secret, so
/// that nobody without the secret can link ledger entries to a person.
pub fn pseudonym(node_secret: &[u8; 32], patient: &str) -> Hash {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node_secret);
    let tag = ring::hmac::sign(&key, patient.as_bytes());
    Hash::from_slice(tag.as_ref()).unwrap_or_default()
}

/// Seals and opens record versions with a node key-encryption key over a blob store.
pub struct Vault<B: BlobStore> {
    blobs: B,
    kek: EncryptionKey,
    cache: Mutex<HashMap<Hash, Zeroizing<[u8; 32]>>>,
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| VaultError::Randomness)?;
    Ok(b)
}

fn cache_key(ctx_aad: &[u8], blob: &ContentId) -> Hash {
    sha256_parts(&[ctx_aad, &blob.0])
}

impl<B: BlobStore> Vault<B> {
    /// A vault over `blobs` whose data keys are always wrapped to `kek` (the node's).
    pub fn new(blobs: B, kek: EncryptionKey) -> Vault<B> {
        Vault {
            blobs,
            kek,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The blob store.
    pub fn blobs(&self) -> &B {
        &self.blobs
    }

    /// The node key's public half.
    pub fn node_public_key(&self) -> PublicEncryptionKey {
        self.kek.public()
    }

    /// Encrypts one record version under a fresh data key, stages the ciphertext in the blob
    /// store (call `blobs().sync()` before referring to it durably), and wraps the key to the
    /// node and to `also` (e.g. the patient).
    pub fn seal(
        &self,
        ctx: &RecordContext,
        plaintext: &[u8],
        also: &[PublicEncryptionKey],
    ) -> Result<SealedRecord, VaultError> {
        let dek = Zeroizing::new(random::<32>()?);
        let nonce = random::<NONCE_LEN>()?;
        let aad = ctx.aad();
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, dek.as_ref()).map_err(|_| VaultError::Wrap)?,
        );
        let mut blob = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        blob.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut body,
        )
        .map_err(|_| VaultError::Wrap)?;
        blob.extend_from_slice(&body);
        // Durable at the caller's next `sync` (before anything refers to it durably).
        let id = self.blobs.stage(&blob)?;
        let info = [WRAP_INFO, &aad].concat();
        let mut recipients = vec![self.kek.public()];
        recipients.extend(also.iter().copied().filter(|r| *r != self.kek.public()));
        let mut wrapped = Vec::with_capacity(recipients.len());
        for r in recipients {
            let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&r.0)
                .map_err(|_| VaultError::Wrap)?;
            let (enc, ct) =
                hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                    &OpModeS::Base,
                    &pk,
                    &info,
                    dek.as_ref(),
                    &[],
                )
                .map_err(|_| VaultError::Wrap)?;
            wrapped.push(WrappedKey {
                recipient: r,
                enc: enc.to_bytes().to_vec(),
                ciphertext: ct,
            });
        }
        self.cache_put(cache_key(&aad, &id), dek);
        let salt = random::<32>()?;
        Ok(SealedRecord {
            blob: id,
            salt,
            commitment: commitment(&salt, &id),
            wrapped,
        })
    }

    fn cache_put(&self, k: Hash, dek: Zeroizing<[u8; 32]>) {
        let mut c = self.cache.lock();
        if c.len() >= MAX_CACHED_KEYS {
            c.clear();
        }
        c.insert(k, dek);
    }

    /// Decrypts a record version with the node key (the unwrapped data key is cached, so
    /// repeated reads pay no HPKE operation).
    pub fn open(
        &self,
        ctx: &RecordContext,
        sealed: &SealedRecord,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let aad = ctx.aad();
        let ck = cache_key(&aad, &sealed.blob);
        let cached = self.cache.lock().get(&ck).cloned();
        let dek = match cached {
            Some(k) => k,
            None => {
                let w = sealed
                    .wrapped
                    .iter()
                    .find(|w| w.recipient == self.kek.public())
                    .ok_or(VaultError::NotARecipient)?;
                let k = self.kek.unwrap_key(&aad, w)?;
                self.cache_put(ck, k.clone());
                k
            }
        };
        decrypt(&self.blobs, &aad, sealed, &dek)
    }

    /// Destroys a record version: its ciphertext and its cached data key. Returns the
    /// commitment that stays on the ledger. The caller deletes the [`SealedRecord`] (the
    /// wrapped keys) in the same step.
    pub fn erase(&self, ctx: &RecordContext, sealed: &SealedRecord) -> Result<Hash, VaultError> {
        self.cache
            .lock()
            .remove(&cache_key(&ctx.aad(), &sealed.blob));
        self.blobs.delete(&sealed.blob)?;
        Ok(sealed.commitment)
    }
}

/// Decrypts a record version as another recipient (e.g. the patient with their own key),
/// without the node's key.
pub fn open_as<B: BlobStore>(
    blobs: &B,
    key: &EncryptionKey,
    ctx: &RecordContext,
    sealed: &SealedRecord,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let aad = ctx.aad();
    let w = sealed
        .wrapped
        .iter()
        .find(|w| w.recipient == key.public())
        .ok_or(VaultError::NotARecipient)?;
    let dek = key.unwrap_key(&aad, w)?;
    decrypt(blobs, &aad, sealed, &dek)
}

fn decrypt<B: BlobStore>(
    blobs: &B,
    aad: &[u8],
    sealed: &SealedRecord,
    dek: &[u8; 32],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let blob = blobs
        .get(&sealed.blob)?
        .ok_or_else(|| VaultError::Missing(sealed.blob.to_hex()))?;
    if blob.len() < NONCE_LEN + 16 {
        return Err(VaultError::Decrypt);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[..NONCE_LEN]);
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, dek).map_err(|_| VaultError::Decrypt)?);
    let mut body = Zeroizing::new(blob[NONCE_LEN..].to_vec());
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| VaultError::Decrypt)?
        .len();
    body.truncate(n);
    Ok(body)
}

/// SHA-256 of a ciphertext blob (its content id).
pub fn blob_id(blob: &[u8]) -> ContentId {
    sha256(blob)
}
