//! Envelope encryption of record versions and HPKE wrapping of their data keys.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, sha256, sha256_parts};
use hpke::{
    Deserializable, Kem as _, OpModeR, OpModeS, Serializable,
    aead::{AeadCtxR, AeadCtxS, ChaCha20Poly1305},
    kdf::HkdfSha256,
    kem::X25519HkdfSha256,
};
use parking_lot::Mutex;
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{BlobStore, ContentId, VaultError};

const AAD_NAMESPACE: &[u8] = b"carechain/v1/record\0";
const WRAP_INFO: &[u8] = b"carechain/v1/data-key-wrap\0";
const COMMITMENT_NAMESPACE: &[u8] = b"carechain/v1/commitment\0";
const MAX_CACHED_KEYS: usize = 100_000;
/// HPKE `info` of a wrapping session (see [`WrappedKey`]).
const SESSION_INFO: &[u8] = b"carechain/v1/data-key-wrap-session\0";
/// First byte of a data key wrapped under a session (a single-shot wrap is 48 bytes, no tag).
const SESSION_TAG: u8 = 1;
/// Data keys wrapped under one session before a fresh one is set up.
const SESSION_WRAPS: u32 = 1024;
/// Sessions (sender or receiver) kept at most; beyond, the cache starts over.
const MAX_SESSIONS: usize = 4096;

type SenderCtx = AeadCtxS<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>;
type ReceiverCtx = AeadCtxR<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>;

/// An HPKE sender context to one recipient, shared by up to [`SESSION_WRAPS`] data keys.
struct SenderSession {
    enc: Vec<u8>,
    ctx: SenderCtx,
    left: AtomicU32,
}

/// The key that wraps one data key under a session: exported from the HPKE context (RFC 9180
/// §5.3) with the record's context and ciphertext id, so it is unique to this version and this
/// seal (the ciphertext id covers a fresh random nonce), and used once.
fn session_wrapping_key(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    ctx_aad: &[u8],
    blob: &ContentId,
) -> Result<LessSafeKey, VaultError> {
    let mut kwk = Zeroizing::new([0u8; 32]);
    export(&[WRAP_INFO, &blob.0, ctx_aad].concat(), kwk.as_mut()).map_err(|_| VaultError::Wrap)?;
    Ok(LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, kwk.as_ref()).map_err(|_| VaultError::Wrap)?,
    ))
}

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

    /// Sets up the receiving side of a wrapping session.
    fn receiver(&self, enc: &[u8]) -> Result<ReceiverCtx, VaultError> {
        let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
            .map_err(|_| VaultError::Wrap)?;
        hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            SESSION_INFO,
        )
        .map_err(|_| VaultError::Decrypt)
    }

    /// Unwraps the data key of the ciphertext `blob` wrapped for this key. `receivers` caches
    /// session receivers (so a cold read pays one HPKE setup per session, not per record).
    fn unwrap_key(
        &self,
        ctx_aad: &[u8],
        blob: &ContentId,
        w: &WrappedKey,
        receivers: Option<&Mutex<HashMap<Vec<u8>, Arc<ReceiverCtx>>>>,
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let plain: Zeroizing<Vec<u8>> = match w.session_ciphertext() {
            Some(wrapped) => {
                let cached = receivers.and_then(|r| r.lock().get(&w.enc).cloned());
                let rx = match cached {
                    Some(rx) => rx,
                    None => {
                        let rx = Arc::new(self.receiver(&w.enc)?);
                        if let Some(r) = receivers {
                            insert_bounded(&mut r.lock(), MAX_SESSIONS, w.enc.clone(), rx.clone());
                        }
                        rx
                    }
                };
                let kwk = session_wrapping_key(|c, out| rx.export(c, out), ctx_aad, blob)?;
                let mut buf = Zeroizing::new(wrapped.to_vec());
                let n = kwk
                    .open_in_place(
                        Nonce::assume_unique_for_key([0; NONCE_LEN]),
                        Aad::from(ctx_aad),
                        &mut buf,
                    )
                    .map_err(|_| VaultError::Decrypt)?
                    .len();
                buf.truncate(n);
                buf
            }
            // A single-shot wrap (RFC 9180 §6.1), as written before wrapping sessions.
            None => {
                let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&w.enc)
                    .map_err(|_| VaultError::Wrap)?;
                let info = [WRAP_INFO, ctx_aad].concat();
                Zeroizing::new(
                    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                        &OpModeR::Base,
                        &self.sk,
                        &enc,
                        &info,
                        &w.ciphertext,
                        &[],
                    )
                    .map_err(|_| VaultError::Decrypt)?,
                )
            }
        };
        if plain.len() != 32 {
            return Err(VaultError::Decrypt);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }
}

/// Inserts into a cache bounded to `max` entries (when full, it starts over: entries are
/// cheap to recompute and the bound is what matters).
fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, max: usize, k: K, v: V) {
    if map.len() >= max {
        map.clear();
    }
    map.insert(k, v);
}

/// A data key wrapped (HPKE, RFC 9180 base mode, X25519 / HKDF-SHA256 / ChaCha20-Poly1305)
/// for one recipient.
///
/// Keys are wrapped under a *session*: one HPKE sender context per recipient (`enc` is its
/// encapsulated key, shared by up to 1,024 data keys), from which a one-time wrapping key is
/// exported per record version (exporter context: the record's context and ciphertext id);
/// `ciphertext` is then `0x01 || ChaCha20-Poly1305(wrapping key, zero nonce, data key, AAD =
/// record context)`. One X25519 operation is shared by a session's keys instead of paid per
/// key, and each version still has its own data key, wrapped on its own (erasing one wrapped
/// key leaves the others untouched). A 48-byte `ciphertext` is a single-shot HPKE seal of the
/// data key (`info` = wrap label + record context), as written before sessions; both open.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct WrappedKey {
    /// The recipient's public key.
    pub recipient: PublicEncryptionKey,
    /// HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// The AEAD ciphertext of a session wrap (`None` for a single-shot wrap).
    fn session_ciphertext(&self) -> Option<&[u8]> {
        match self.ciphertext.split_first() {
            Some((&SESSION_TAG, rest)) if self.ciphertext.len() == 1 + 32 + 16 => Some(rest),
            _ => None,
        }
    }
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
    /// Wrapping sessions in use, per recipient.
    sessions: Mutex<HashMap<PublicEncryptionKey, Arc<SenderSession>>>,
    /// Receiving sides of the node key's sessions, by encapsulated key.
    receivers: Mutex<HashMap<Vec<u8>, Arc<ReceiverCtx>>>,
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
            sessions: Mutex::new(HashMap::new()),
            receivers: Mutex::new(HashMap::new()),
        }
    }

    /// A wrapping session to `r` with a wrap left (a fresh one when the current one is used up).
    fn session(&self, r: &PublicEncryptionKey) -> Result<Arc<SenderSession>, VaultError> {
        if let Some(s) = self.sessions.lock().get(r)
            && s.left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            return Ok(s.clone());
        }
        // Set up outside the lock: other sealers go on meanwhile.
        let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&r.0)
            .map_err(|_| VaultError::Wrap)?;
        let (enc, ctx) = hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &pk,
            SESSION_INFO,
        )
        .map_err(|_| VaultError::Wrap)?;
        let s = Arc::new(SenderSession {
            enc: enc.to_bytes().to_vec(),
            ctx,
            left: AtomicU32::new(SESSION_WRAPS - 1),
        });
        insert_bounded(&mut self.sessions.lock(), MAX_SESSIONS, *r, s.clone());
        Ok(s)
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
        let mut recipients = vec![self.kek.public()];
        recipients.extend(also.iter().copied().filter(|r| *r != self.kek.public()));
        let wrapped = recipients
            .iter()
            .map(|r| self.wrap(r, &aad, &id, &dek))
            .collect::<Result<Vec<_>, _>>()?;
        self.cache_put(cache_key(&aad, &id), dek);
        let salt = random::<32>()?;
        Ok(SealedRecord {
            blob: id,
            salt,
            commitment: commitment(&salt, &id),
            wrapped,
        })
    }

    /// Wraps data key `dek` of ciphertext `blob` (record context `aad`) for recipient `r`.
    fn wrap(
        &self,
        r: &PublicEncryptionKey,
        aad: &[u8],
        blob: &ContentId,
        dek: &Zeroizing<[u8; 32]>,
    ) -> Result<WrappedKey, VaultError> {
        let session = self.session(r)?;
        let kwk = session_wrapping_key(|c, out| session.ctx.export(c, out), aad, blob)?;
        let mut ciphertext = Vec::with_capacity(1 + 32 + 16);
        ciphertext.push(SESSION_TAG);
        ciphertext.extend_from_slice(dek.as_ref());
        let tag = kwk
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(aad),
                &mut ciphertext[1..],
            )
            .map_err(|_| VaultError::Wrap)?;
        ciphertext.extend_from_slice(tag.as_ref());
        Ok(WrappedKey {
            recipient: *r,
            enc: session.enc.clone(),
            ciphertext,
        })
    }

    /// `sealed` with its data key also wrapped for `recipient` (unchanged if it already is):
    /// for a patient who proves her identity after her records were written. The ciphertext
    /// and the commitment stay as they are.
    pub fn wrap_to(
        &self,
        ctx: &RecordContext,
        sealed: &SealedRecord,
        recipient: &PublicEncryptionKey,
    ) -> Result<SealedRecord, VaultError> {
        let mut out = sealed.clone();
        if sealed.wrapped.iter().any(|w| w.recipient == *recipient) {
            return Ok(out);
        }
        let aad = ctx.aad();
        let dek = self.data_key(&aad, sealed)?;
        out.wrapped
            .push(self.wrap(recipient, &aad, &sealed.blob, &dek)?);
        Ok(out)
    }

    /// The data key of `sealed` (record context `aad`), unwrapped with the node key; cached,
    /// so repeated use pays no HPKE operation.
    fn data_key(
        &self,
        aad: &[u8],
        sealed: &SealedRecord,
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let ck = cache_key(aad, &sealed.blob);
        if let Some(k) = self.cache.lock().get(&ck).cloned() {
            return Ok(k);
        }
        let w = sealed
            .wrapped
            .iter()
            .find(|w| w.recipient == self.kek.public())
            .ok_or(VaultError::NotARecipient)?;
        let k = self
            .kek
            .unwrap_key(aad, &sealed.blob, w, Some(&self.receivers))?;
        self.cache_put(ck, k.clone());
        Ok(k)
    }

    fn cache_put(&self, k: Hash, dek: Zeroizing<[u8; 32]>) {
        insert_bounded(&mut self.cache.lock(), MAX_CACHED_KEYS, k, dek);
    }

    /// Decrypts a record version with the node key (the unwrapped data key is cached, so
    /// repeated reads pay no HPKE operation).
    pub fn open(
        &self,
        ctx: &RecordContext,
        sealed: &SealedRecord,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let aad = ctx.aad();
        let dek = self.data_key(&aad, sealed)?;
        decrypt(&self.blobs, &aad, sealed, &dek)
    }

    /// Destroys a record version: its ciphertext and its cached data key. Returns the
    /// commitment that stays on the ledger. The caller deletes the [`SealedRecord`] (the
    /// wrapped keys) in the same step.
    pub fn erase(&self, ctx: &RecordContext, sealed: &SealedRecord) -> Result<Hash, VaultError> {
        self.erase_blob(ctx, &sealed.blob)?;
        Ok(sealed.commitment)
    }

    /// Destroys the ciphertext `blob` of the record version `ctx` and its cached data key
    /// (idempotent: a blob already gone is fine). For erasures finished after the wrapped
    /// keys are gone.
    pub fn erase_blob(&self, ctx: &RecordContext, blob: &ContentId) -> Result<(), VaultError> {
        self.cache.lock().remove(&cache_key(&ctx.aad(), blob));
        self.blobs.delete(blob)?;
        Ok(())
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
    let dek = key.unwrap_key(&aad, &sealed.blob, w, None)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::LocalBlobStore;

    /// Data keys wrapped single-shot (before sessions) still open, cold and for the patient.
    #[test]
    fn single_shot_wraps_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let kek = || EncryptionKey::from_seed(&[1; 32]);
        let v = Vault::new(LocalBlobStore::open(dir.path()).unwrap(), kek());
        let patient = EncryptionKey::from_seed(&[2; 32]);
        let ctx = RecordContext {
            patient: "p".into(),
            resource_type: "Observation".into(),
            resource_id: "o".into(),
            version: 1,
        };
        let mut sealed = v.seal(&ctx, b"record", &[patient.public()]).unwrap();
        let aad = ctx.aad();
        let dek = v.cache.lock()[&cache_key(&aad, &sealed.blob)].clone();
        let info = [WRAP_INFO, &aad].concat();
        for w in &mut sealed.wrapped {
            let pk =
                <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&w.recipient.0).unwrap();
            let (enc, ct) =
                hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                    &OpModeS::Base,
                    &pk,
                    &info,
                    dek.as_ref(),
                    &[],
                )
                .unwrap();
            assert_eq!(ct.len(), 48);
            w.enc = enc.to_bytes().to_vec();
            w.ciphertext = ct;
        }
        let cold = Vault::new(LocalBlobStore::open(dir.path()).unwrap(), kek());
        assert_eq!(&cold.open(&ctx, &sealed).unwrap()[..], b"record");
        assert_eq!(
            &open_as(v.blobs(), &patient, &ctx, &sealed).unwrap()[..],
            b"record"
        );
    }
}
