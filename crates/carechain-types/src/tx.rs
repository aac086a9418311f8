//! Transactions: the signed envelope and the payloads of the identity registry and anchors.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Did, Hash, Namespace, PublicKey, Signature, sha256};

use crate::codec::encode;
use crate::consent::ConsentRule;

/// The role an identity plays in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Role {
    /// A person whose records these are; owns their identity.
    Patient = 0,
    /// A clinician acting for an organization.
    Practitioner = 1,
    /// A hospital, clinic, lab, pharmacy, insurer or research body.
    Organization = 2,
    /// A device (wearable, scanner) registered by an organization.
    Device = 3,
    /// A node that proposes and validates blocks.
    Validator = 4,
    /// A network operator allowed to register organizations and validators.
    Operator = 5,
}

impl Role {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Practitioner => "practitioner",
            Role::Organization => "organization",
            Role::Device => "device",
            Role::Validator => "validator",
            Role::Operator => "operator",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "patient" => Role::Patient,
            "practitioner" => Role::Practitioner,
            "organization" => Role::Organization,
            "device" => Role::Device,
            "validator" => Role::Validator,
            "operator" => Role::Operator,
            _ => return None,
        })
    }
}

/// What a transaction asks the state machine to do.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Payload {
    /// Register a new identity. The subject's key is its permanent id (`did:key`).
    Register {
        /// The new identity's key (and id).
        subject: PublicKey,
        /// Its role.
        role: Role,
        /// The organization it belongs to, if any.
        parent: Option<PublicKey>,
    },
    /// Replace the signer's current key. Signed by the current (old) key; `proof` is the new
    /// key's signature over [`rotation_proof_message`], showing its holder agrees.
    RotateKey {
        /// The key that will sign from now on.
        new_key: PublicKey,
        /// The new key's proof of possession.
        proof: Signature,
    },
    /// Deactivate an identity: it can no longer sign.
    Deactivate {
        /// The identity to deactivate.
        subject: PublicKey,
    },
    /// Record an opaque commitment (e.g. a salted hash of an encrypted record version).
    Anchor {
        /// A short label the layer above uses to tell its commitments apart.
        kind: String,
        /// The commitment itself.
        commitment: Hash,
    },
    /// Record an opaque commitment with public tags the layer above chooses, all opaque to
    /// the ledger: a pseudonymous subject (e.g. a keyed hash of a patient id, which links
    /// nothing to a person without the key), a short label (e.g. a resource type) and a
    /// version. Applied like [`Payload::Anchor`].
    TaggedAnchor {
        /// A short label the layer above uses to tell its commitments apart.
        kind: String,
        /// The commitment itself.
        commitment: Hash,
        /// The pseudonymous subject.
        subject: Hash,
        /// A short public label.
        label: String,
        /// A version number.
        version: u64,
    },
    /// Propose a change of the validator set, effective from `effective_height` (a future
    /// epoch start: a multiple of [`crate::EPOCH_LENGTH`]). Signed by a current validator,
    /// whose signature counts as the first approval. The proposal's id is
    /// [`validator_proposal_id`].
    ProposeValidatorChange {
        /// The change.
        change: ValidatorChange,
        /// The first height at which the changed set proposes and votes.
        effective_height: u64,
    },
    /// Approve a pending validator-set proposal. Signed by a current validator; the change is
    /// scheduled once approvals reach [`approval_quorum`] of the current set.
    ApproveValidatorChange {
        /// The proposal's id.
        proposal: Hash,
    },
    /// Grant a consent of `patient`: signed by her (role `patient`) or by a delegate she
    /// recorded ([`Payload::DelegateConsents`]). `id` is unique per patient; the rule is
    /// public ledger data (see ARCHITECTURE.md).
    GrantConsent {
        /// The patient (her identity).
        patient: PublicKey,
        /// The consent's id.
        id: Hash,
        /// What it allows.
        rule: ConsentRule,
    },
    /// Revoke one of `patient`'s consents (signed by her or a delegate of hers): it denies
    /// from this block's height on, at every node.
    RevokeConsent {
        /// The patient (her identity).
        patient: PublicKey,
        /// The consent's id.
        id: Hash,
    },
    /// Declare that `node` serves the signer organization's records to the network at
    /// `endpoint` (an `http(s)://host:port` base URL, at most [`crate::MAX_ENDPOINT`] bytes).
    /// Signed by the organization: other nodes accept requests signed by `node` as made for
    /// the organization's members. Re-registering moves the organization to the new node.
    RegisterNode {
        /// The node's key (it signs node-to-node requests and answers).
        node: PublicKey,
        /// Where other nodes reach it.
        endpoint: String,
    },
    /// Record (`held`) or withdraw that the signer, a registered node, holds records of
    /// `patient`: the patient's record locator. The patient herself may withdraw any node
    /// from her locator. Nothing about the records is said, only where to ask.
    LocateRecords {
        /// The patient (her identity).
        patient: PublicKey,
        /// Whether the node holds records of hers (false: withdraw).
        held: bool,
        /// The node concerned (the signer, unless the patient withdraws it).
        node: PublicKey,
    },
    /// Let `delegate` (an active identity: her custodian's node, say) grant and revoke
    /// consents for the signer, a patient, from this block on (`allowed`), or stop it. At most
    /// [`crate::MAX_CONSENT_DELEGATES`] delegates per patient.
    DelegateConsents {
        /// The delegate's identity.
        delegate: PublicKey,
        /// Whether it may sign for her (false: withdraw).
        allowed: bool,
    },
}

/// A change of the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ValidatorChange {
    /// Add a validator (registered with role `validator` if it is not an identity yet).
    Add {
        /// Its key.
        key: PublicKey,
    },
    /// Remove a validator from the set (its identity stays).
    Remove {
        /// Its key.
        key: PublicKey,
    },
}

impl ValidatorChange {
    /// The validator concerned.
    pub fn key(&self) -> &PublicKey {
        match self {
            ValidatorChange::Add { key } | ValidatorChange::Remove { key } => key,
        }
    }

    /// `add` or `remove`.
    pub fn action(&self) -> &'static str {
        match self {
            ValidatorChange::Add { .. } => "add",
            ValidatorChange::Remove { .. } => "remove",
        }
    }
}

/// The id of a validator-set proposal: SHA-256 of its canonical encoding under a fixed label,
/// so the same change for the same height is one proposal however often it is proposed.
pub fn validator_proposal_id(change: &ValidatorChange, effective_height: u64) -> Hash {
    sha256(&encode(&(
        "carechain/validator-change",
        change,
        effective_height,
    )))
}

/// How many approvals of a set of `n` validators a governance change needs: at least two
/// thirds (⌈2n/3⌉).
pub fn approval_quorum(n: usize) -> usize {
    (2 * n).div_ceil(3)
}

impl Payload {
    /// Stable name of the payload type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Payload::Register { .. } => "register",
            Payload::RotateKey { .. } => "rotate_key",
            Payload::Deactivate { .. } => "deactivate",
            Payload::Anchor { .. } => "anchor",
            Payload::TaggedAnchor { .. } => "tagged_anchor",
            Payload::ProposeValidatorChange { .. } => "propose_validator_change",
            Payload::ApproveValidatorChange { .. } => "approve_validator_change",
            Payload::GrantConsent { .. } => "grant_consent",
            Payload::RevokeConsent { .. } => "revoke_consent",
            Payload::RegisterNode { .. } => "register_node",
            Payload::LocateRecords { .. } => "locate_records",
            Payload::DelegateConsents { .. } => "delegate_consents",
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxBody {
    /// The chain this transaction is meant for (replay protection across networks).
    pub chain_id: String,
    /// The identity that signs: the original key of a registered identity.
    pub signer: PublicKey,
    /// The signer's sequence number: exactly one more than its last applied transaction.
    pub nonce: u64,
    /// What to do.
    pub payload: Payload,
}

/// A transaction with its signature over [`Namespace::Transaction`] `||` `encode(body)`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTx {
    /// The signed body.
    pub body: TxBody,
    /// The signature, by the signer's current key.
    pub signature: Signature,
}

impl TxBody {
    /// Signs the body with `key` (which must be the signer's current key).
    pub fn sign(self, key: &carechain_crypto::SecretKey) -> SignedTx {
        let signature = key.sign(Namespace::Transaction, &encode(&self));
        SignedTx {
            body: self,
            signature,
        }
    }
}

impl SignedTx {
    /// The transaction's id: SHA-256 of its canonical encoding.
    pub fn hash(&self) -> Hash {
        sha256(&encode(self))
    }

    /// Verifies the signature against `key` (the signer's current key).
    pub fn verify_with(&self, key: &PublicKey) -> Result<(), carechain_crypto::CryptoError> {
        key.verify(Namespace::Transaction, &encode(&self.body), &self.signature)
    }

    /// The signer as a `did:key`.
    pub fn signer_did(&self) -> Did {
        self.body.signer.did()
    }
}

/// The message a new key signs (under [`Namespace::KeyRotation`]) to agree to a rotation:
/// `chain_id || identity || new_key || nonce`, so a proof cannot be replayed elsewhere.
pub fn rotation_proof_message(
    chain_id: &str,
    identity: &PublicKey,
    new_key: &PublicKey,
    nonce: u64,
) -> Vec<u8> {
    encode(&(chain_id, identity, new_key, nonce))
}
