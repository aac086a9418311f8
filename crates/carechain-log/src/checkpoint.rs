//! C2SP `tlog-checkpoint` bodies, `signed-note` signatures (Ed25519 keys, type 0x01) and
//! `tlog-cosignature` v1 cosignatures (Ed25519, type 0x04, timestamped), with a quorum check.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use carechain_crypto::{Hash, PublicKey, SecretKey, Signature, sha256_parts};

const SIG_PREFIX: &str = "\u{2014} ";
const MAX_NOTE_BYTES: usize = 1 << 20;
const MAX_SIGNATURES: usize = 100;
const ED25519_TYPE: u8 = 0x01;
const COSIGNATURE_TYPE: u8 = 0x04;
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// Why a note or checkpoint is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// Structure is wrong (no blank line, bad signature line, too large, not UTF-8).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// The checkpoint body is wrong (origin, size, root lines).
    #[error("malformed checkpoint body: {0}")]
    BadCheckpoint(&'static str),
    /// A verifier key string is not `name+hexid+base64key`.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// No signature of the expected key is on the note.
    #[error("note has no signature by key {0}")]
    NoSignature(String),
    /// A signature by the expected key (name and id) does not verify.
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
    /// Fewer distinct cosigners than required cosigned the checkpoint.
    #[error("checkpoint cosigned by {have} of the required {need} cosigners")]
    Quorum {
        /// Valid distinct cosignatures.
        have: usize,
        /// Required.
        need: usize,
    },
}

/// A log checkpoint: origin, tree size and root hash, plus optional extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (unique name of the log).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Further lines, passed through unparsed.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text (body) of the checkpoint, each line ending in `\n`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body.
    pub fn parse_text(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::BadCheckpoint("missing final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::BadCheckpoint("no origin"))?;
        let size_line = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("no size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(NoteError::BadCheckpoint("size is not a decimal number"));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("size overflows"))?;
        let root_line = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("no root line"))?;
        let root_bytes = B64
            .decode(root_line)
            .map_err(|_| NoteError::BadCheckpoint("root is not base64"))?;
        let root = Hash::from_slice(&root_bytes)
            .ok_or(NoteError::BadCheckpoint("root is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::BadCheckpoint("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first 4 bytes of the key hash).
    pub key_id: [u8; 4],
    /// The signature bytes (after the key id).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parses one signature line (`— name base64(key id || signature)`, without its newline).
    pub fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line must start with an em dash",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "signature line needs a name and a signature",
        ))?;
        if name.is_empty() || name.contains('+') {
            return Err(NoteError::Malformed("bad key name"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&raw[..4]);
        Ok(NoteSignature {
            name: name.to_string(),
            key_id,
            signature: raw[4..].to_vec(),
        })
    }
}

/// A parsed signed note: its text and its signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending with `\n`.
    pub text: String,
    /// Signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parses the wire form (text, blank line, signature lines).
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("note too large"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block does not end with a newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signatures"));
        }
        Ok(SignedNote {
            text: text.to_string(),
            signatures,
        })
    }
}

/// The signed-note key id: `SHA-256(name || "\n" || type || key)[:4]`.
fn key_id(name: &str, key_type: u8, key: &PublicKey) -> [u8; 4] {
    let h = sha256_parts(&[name.as_bytes(), b"\n", &[key_type], &key.0]);
    let mut id = [0u8; 4];
    id.copy_from_slice(&h.0[..4]);
    id
}

/// A verifier key string `name+hexid+base64(type||key)`.
fn vkey(name: &str, key_id: [u8; 4], key_type: u8, key: &PublicKey) -> String {
    let mut k = vec![key_type];
    k.extend_from_slice(&key.0);
    format!("{name}+{}+{}", hex::encode(key_id), B64.encode(k))
}

/// Parses a verifier key string of an Ed25519 key of `key_type` and checks its id.
fn parse_vkey(
    vkey: &str,
    key_type: u8,
    wrong_type: &'static str,
) -> Result<(String, [u8; 4], PublicKey), NoteError> {
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::BadVerifierKey("expected name+id+key"));
    };
    let mut claimed = [0u8; 4];
    hex::decode_to_slice(id_hex, &mut claimed)
        .map_err(|_| NoteError::BadVerifierKey("id is not 8 hex digits"))?;
    let raw = B64
        .decode(key_b64)
        .map_err(|_| NoteError::BadVerifierKey("key is not base64"))?;
    if raw.len() != 33 || raw[0] != key_type {
        return Err(NoteError::BadVerifierKey(wrong_type));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&raw[1..]);
    let key = PublicKey(k);
    if key_id(name, key_type, &key) != claimed {
        return Err(NoteError::BadVerifierKey(
            "key id does not match name and key",
        ));
    }
    Ok((name.to_string(), claimed, key))
}

/// A signed-note key name: not empty, no `+`, spaces or newlines.
fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(['+', ' ', '\n']) {
        return Err(NoteError::BadVerifierKey(
            "key name must not be empty or contain '+', spaces or newlines",
        ));
    }
    Ok(())
}

/// Signs notes under a key name (Ed25519).
pub struct NoteSigner {
    name: String,
    key: SecretKey,
    key_id: [u8; 4],
}

impl NoteSigner {
    /// A signer for `name` (no spaces, no `+`).
    pub fn new(name: &str, key: SecretKey) -> Result<NoteSigner, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, ED25519_TYPE, &key.public());
        Ok(NoteSigner {
            name: name.to_string(),
            key,
            key_id,
        })
    }

    /// The verifier key string (`name+hexid+base64(0x01||key)`) that checks this signer.
    pub fn verifier_key(&self) -> String {
        vkey(&self.name, self.key_id, ED25519_TYPE, &self.key.public())
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.public(),
        }
    }

    /// Signs `text` (which must end with `\n` and contain no blank line) and returns the note.
    pub fn sign(&self, text: &str) -> String {
        let sig: Signature = self.key.sign_note(text.as_bytes());
        let mut raw = self.key_id.to_vec();
        raw.extend_from_slice(&sig.0);
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// Signs a checkpoint and returns the signed note.
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> String {
        self.sign(&cp.to_text())
    }
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: [u8; 4],
    /// The public key.
    pub key: PublicKey,
}

impl NoteVerifier {
    /// A verifier for an Ed25519 key under a key name.
    pub fn new(name: &str, key: PublicKey) -> NoteVerifier {
        NoteVerifier {
            name: name.to_string(),
            key_id: key_id(name, ED25519_TYPE, &key),
            key,
        }
    }

    /// The verifier key string `name+hexid+base64(0x01||key)`.
    pub fn to_vkey(&self) -> String {
        vkey(&self.name, self.key_id, ED25519_TYPE, &self.key)
    }

    /// Parses a verifier key string `name+hexid+base64(0x01||key)` and checks its id.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let (name, key_id, key) = parse_vkey(
            vkey,
            ED25519_TYPE,
            "only Ed25519 (type 0x01) keys are supported",
        )?;
        Ok(NoteVerifier { name, key_id, key })
    }

    /// Checks that `note` carries a valid signature by this key; returns the parsed note.
    pub fn verify(&self, note: &str) -> Result<SignedNote, NoteError> {
        let parsed = SignedNote::parse(note)?;
        let mut found = false;
        for s in &parsed.signatures {
            if s.name != self.name || s.key_id != self.key_id {
                continue;
            }
            found = true;
            let sig: [u8; 64] = s
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_raw(parsed.text.as_bytes(), &Signature(sig))
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        }
        if !found {
            return Err(NoteError::NoSignature(self.name.clone()));
        }
        Ok(parsed)
    }

    /// Verifies a signed checkpoint and parses its body.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let parsed = self.verify(note)?;
        Checkpoint::parse_text(&parsed.text)
    }
}

/// The message a `cosignature/v1` signs: header line, time line, whole note body.
fn cosigned_message(note_text: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{note_text}")
}

/// Makes C2SP `cosignature/v1` lines (a statement that, at a time, the cosigner observed
/// this checkpoint as the log's largest consistent tree head).
pub struct Cosigner {
    name: String,
    key: SecretKey,
    key_id: [u8; 4],
}

impl Cosigner {
    /// A cosigner named `name` (no spaces, no `+`).
    pub fn new(name: &str, key: SecretKey) -> Result<Cosigner, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, COSIGNATURE_TYPE, &key.public());
        Ok(Cosigner {
            name: name.to_string(),
            key,
            key_id,
        })
    }

    /// The signature line (with its newline) cosigning `note_text` (a checkpoint body,
    /// ending with a newline) at `timestamp` (seconds since the Unix epoch).
    pub fn cosign(&self, note_text: &str, timestamp: u64) -> String {
        let sig = self
            .key
            .sign_note(cosigned_message(note_text, timestamp).as_bytes());
        let mut raw = self.key_id.to_vec();
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.0);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier::new(&self.name, self.key.public())
    }
}

/// Checks `cosignature/v1` lines of one cosigner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    /// Cosigner name.
    pub name: String,
    /// Its key id (type 0x04).
    pub key_id: [u8; 4],
    /// Its public key.
    pub key: PublicKey,
}

impl CosignatureVerifier {
    /// A verifier for cosigner `name` with `key`.
    pub fn new(name: &str, key: PublicKey) -> CosignatureVerifier {
        CosignatureVerifier {
            name: name.to_string(),
            key_id: key_id(name, COSIGNATURE_TYPE, &key),
            key,
        }
    }

    /// The verifier key string `name+hexid+base64(0x04||key)`.
    pub fn to_vkey(&self) -> String {
        vkey(&self.name, self.key_id, COSIGNATURE_TYPE, &self.key)
    }

    /// Parses a verifier key string `name+hexid+base64(0x04||key)` and checks its id.
    pub fn parse(vkey: &str) -> Result<CosignatureVerifier, NoteError> {
        let (name, key_id, key) = parse_vkey(
            vkey,
            COSIGNATURE_TYPE,
            "only Ed25519 cosigner (type 0x04) keys are supported",
        )?;
        Ok(CosignatureVerifier { name, key_id, key })
    }

    /// Checks one signature line of a note with body `text`; returns its timestamp.
    pub fn check(&self, text: &str, sig: &NoteSignature) -> Result<u64, NoteError> {
        if sig.name != self.name || sig.key_id != self.key_id {
            return Err(NoteError::NoSignature(self.name.clone()));
        }
        let bad = || NoteError::BadSignature(self.name.clone());
        if sig.signature.len() != 8 + 64 {
            return Err(bad());
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&sig.signature[..8]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > i64::MAX as u64 {
            return Err(bad());
        }
        let mut s = [0u8; 64];
        s.copy_from_slice(&sig.signature[8..]);
        self.key
            .verify_raw(cosigned_message(text, timestamp).as_bytes(), &Signature(s))
            .map_err(|_| bad())?;
        Ok(timestamp)
    }
}

/// Verifies that at least `threshold` distinct cosigners among `cosigners` cosigned the
/// checkpoint `note` (whatever else signed it); returns the checkpoint and who cosigned.
pub fn verify_cosigned(
    note: &str,
    cosigners: &[CosignatureVerifier],
    threshold: usize,
) -> Result<(Checkpoint, Vec<String>), NoteError> {
    let parsed = SignedNote::parse(note)?;
    let checkpoint = Checkpoint::parse_text(&parsed.text)?;
    let mut who: Vec<String> = Vec::new();
    for c in cosigners {
        if parsed
            .signatures
            .iter()
            .any(|s| c.check(&parsed.text, s).is_ok())
            && !who.contains(&c.name)
        {
            who.push(c.name.clone());
        }
    }
    if who.len() < threshold {
        return Err(NoteError::Quorum {
            have: who.len(),
            need: threshold,
        });
    }
    Ok((checkpoint, who))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosignatures_verify_count_distinct_cosigners_and_catch_tampering() {
        let origin = "carechain/test";
        let log = NoteSigner::new(origin, SecretKey::from_seed(&[1; 32])).unwrap();
        let cp = Checkpoint {
            origin: origin.into(),
            size: 7,
            root: Hash([3; 32]),
            extensions: vec![],
        };
        let mut note = log.sign_checkpoint(&cp);
        let cosigners: Vec<Cosigner> = (0..4u8)
            .map(|i| {
                Cosigner::new(
                    &format!("validator-{i}"),
                    SecretKey::from_seed(&[10 + i; 32]),
                )
                .unwrap()
            })
            .collect();
        let verifiers: Vec<_> = cosigners.iter().map(Cosigner::verifier).collect();
        let text = cp.to_text();
        for c in &cosigners[..3] {
            note.push_str(&c.cosign(&text, 1_700_000_000));
        }
        // A duplicate line of one cosigner counts once.
        note.push_str(&cosigners[0].cosign(&text, 1_700_000_001));
        let (got, who) = verify_cosigned(&note, &verifiers, 3).unwrap();
        assert_eq!(got, cp);
        assert_eq!(who.len(), 3);
        assert_eq!(
            verify_cosigned(&note, &verifiers, 4),
            Err(NoteError::Quorum { have: 3, need: 4 })
        );
        // The log's own signature still verifies beside the cosignatures.
        assert_eq!(log.verifier().verify_checkpoint(&note).unwrap(), cp);
        // Another root: no cosignature holds.
        let forged = note.replacen(&B64.encode(cp.root.0), &B64.encode([4u8; 32]), 1);
        assert!(matches!(
            verify_cosigned(&forged, &verifiers, 1),
            Err(NoteError::Quorum { have: 0, .. })
        ));
        // A cosignature is not a plain note signature of the same key, nor the reverse.
        let plain = NoteSigner::new("validator-0", SecretKey::from_seed(&[10; 32])).unwrap();
        let mut other = log.sign_checkpoint(&cp);
        other.push_str(plain.sign(&text).rsplit_once("\n\n").unwrap().1);
        assert!(matches!(
            verify_cosigned(&other, &verifiers, 1),
            Err(NoteError::Quorum { have: 0, .. })
        ));
        assert!(verifiers[0].to_vkey().starts_with("validator-0+"));
        assert_eq!(
            CosignatureVerifier::parse(&verifiers[0].to_vkey()).unwrap(),
            verifiers[0]
        );
        assert!(CosignatureVerifier::parse(&log.verifier_key()).is_err());
    }

    #[test]
    fn sign_then_verify_and_detect_tampering() {
        let signer =
            NoteSigner::new("carechain.example/log", SecretKey::from_seed(&[5; 32])).unwrap();
        let cp = Checkpoint {
            origin: "carechain.example/log".into(),
            size: 42,
            root: Hash([9; 32]),
            extensions: vec![],
        };
        let note = signer.sign_checkpoint(&cp);
        let v = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(v.verify_checkpoint(&note).unwrap(), cp);
        let tampered = note.replacen("42", "43", 1);
        assert_eq!(
            v.verify_checkpoint(&tampered),
            Err(NoteError::BadSignature(v.name.clone()))
        );
        let other = NoteSigner::new("other", SecretKey::from_seed(&[6; 32]))
            .unwrap()
            .verifier();
        assert!(matches!(
            other.verify(&note),
            Err(NoteError::NoSignature(_))
        ));
    }

    #[test]
    fn rejects_malformed_bodies() {
        for bad in ["", "o\n", "o\n01\nAAAA\n", "o\n1\n!!\n", "o\n-1\nAAAA\n"] {
            assert!(Checkpoint::parse_text(bad).is_err(), "{bad:?}");
        }
    }
}
