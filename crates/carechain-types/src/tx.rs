//! Transactions: the signed envelope and the payloads of the identity registry and anchors.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Did, Hash, Namespace, PublicKey, Signature, sha256};

use crate::codec::encode;
use crate::consent::ConsentRule;
use crate::supply::SupplyEvent;
use crate::token::Account;

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
    /// Propose a governance change (of the validator set or the token's issuers), effective
    /// from `effective_height` (a future epoch start: a multiple of [`crate::EPOCH_LENGTH`]).
    /// Signed by a current validator, whose signature counts as the first approval. The
    /// proposal's id is [`proposal_id`].
    ProposeChange {
        /// The change.
        change: GovernanceChange,
        /// The first height at which it holds.
        effective_height: u64,
    },
    /// Approve a pending governance proposal. Signed by a current validator; the change is
    /// scheduled once approvals reach [`approval_quorum`] of the current set.
    ApproveChange {
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
    /// Create `amount` new tokens for `to`. Signed by an issuer governance approved.
    Mint {
        /// Who receives them.
        to: Account,
        /// How many minor units.
        amount: u64,
    },
    /// Move `amount` of the signer's tokens to `to`.
    Transfer {
        /// Who receives them.
        to: Account,
        /// How many minor units.
        amount: u64,
    },
    /// Destroy `amount` of the signer's tokens.
    Burn {
        /// How many minor units.
        amount: u64,
    },
    /// Let `spender` move up to `amount` of the signer's tokens until block `expires_at`:
    /// replaces any allowance before it (absolute, not added), so there is no race between
    /// changing an allowance and spending it; `amount` 0 withdraws it.
    SetAllowance {
        /// Who may spend.
        spender: Account,
        /// How much, at most.
        amount: u64,
        /// The first height at which it no longer holds.
        expires_at: u64,
    },
    /// Move `amount` of `owner`'s tokens to `to`, spending the allowance she gave the signer.
    TransferFrom {
        /// Whose tokens.
        owner: PublicKey,
        /// Who receives them.
        to: Account,
        /// How many minor units.
        amount: u64,
    },
    /// Store WebAssembly code, by its SHA-256 (validated: see ARCHITECTURE.md).
    DeployCode {
        /// The module.
        code: Vec<u8>,
    },
    /// Create a contract instance of stored code, at [`crate::contract_address`] of the
    /// code, the signer and this nonce, running its `instantiate` with `msg` (JSON) and
    /// moving `funds` of the signer's tokens to it first.
    Instantiate {
        /// The code's hash.
        code: Hash,
        /// The instantiate message (JSON).
        msg: Vec<u8>,
        /// Tokens the signer sends along.
        funds: u64,
        /// A human label (at most [`crate::MAX_CONTRACT_LABEL`] bytes).
        label: String,
    },
    /// Run a contract's `execute` with `msg` (JSON), moving `funds` of the signer's tokens
    /// to it first.
    Execute {
        /// The contract's address.
        contract: Hash,
        /// The message (JSON).
        msg: Vec<u8>,
        /// Tokens the signer sends along.
        funds: u64,
    },
    /// Assign a GS1 company prefix (6 to 12 digits) to `organization`: it alone may
    /// commission and recall the GTINs under it and capture events at the GLNs under it.
    /// Signed by a network operator; `organization` `None` withdraws the prefix.
    AssignCompanyPrefix {
        /// The prefix's digits.
        prefix: String,
        /// Its owner (`None`: withdrawn).
        organization: Option<PublicKey>,
    },
    /// A batch of product events captured by `organization`: signed by it or by the node it
    /// registered ([`Payload::RegisterNode`]). Each event's hash is anchored; `atomic` applies
    /// all or none (the batch is rejected with the first failure), else each event that fails
    /// is skipped and reported in the receipt (a `supply.skipped` event naming its index).
    Supply {
        /// The capturing organization.
        organization: PublicKey,
        /// The events, applied in order.
        events: Vec<SupplyEvent>,
        /// All or none.
        atomic: bool,
    },
}

/// A change governance decides: the validator set, or who may mint the token.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum GovernanceChange {
    /// Add a validator (registered with role `validator` if it is not an identity yet).
    AddValidator {
        /// Its key.
        key: PublicKey,
    },
    /// Remove a validator from the set (its identity stays).
    RemoveValidator {
        /// Its key.
        key: PublicKey,
    },
    /// Let an identity mint the token from the effective height on.
    AddIssuer {
        /// The issuer's identity.
        key: PublicKey,
    },
    /// Stop an issuer from minting from the effective height on.
    RemoveIssuer {
        /// The issuer's identity.
        key: PublicKey,
    },
}

impl GovernanceChange {
    /// The identity concerned.
    pub fn key(&self) -> &PublicKey {
        match self {
            GovernanceChange::AddValidator { key }
            | GovernanceChange::RemoveValidator { key }
            | GovernanceChange::AddIssuer { key }
            | GovernanceChange::RemoveIssuer { key } => key,
        }
    }

    /// `add`, `remove`, `add_issuer` or `remove_issuer`.
    pub fn action(&self) -> &'static str {
        match self {
            GovernanceChange::AddValidator { .. } => "add",
            GovernanceChange::RemoveValidator { .. } => "remove",
            GovernanceChange::AddIssuer { .. } => "add_issuer",
            GovernanceChange::RemoveIssuer { .. } => "remove_issuer",
        }
    }

    /// Whether it changes the validator set (else the issuers).
    pub fn is_validator_change(&self) -> bool {
        matches!(
            self,
            GovernanceChange::AddValidator { .. } | GovernanceChange::RemoveValidator { .. }
        )
    }
}

/// The id of a governance proposal: SHA-256 of its canonical encoding under a fixed label,
/// so the same change for the same height is one proposal however often it is proposed.
pub fn proposal_id(change: &GovernanceChange, effective_height: u64) -> Hash {
    sha256(&encode(&(
        "carechain/governance-change",
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
            Payload::ProposeChange { .. } => "propose_change",
            Payload::ApproveChange { .. } => "approve_change",
            Payload::GrantConsent { .. } => "grant_consent",
            Payload::RevokeConsent { .. } => "revoke_consent",
            Payload::RegisterNode { .. } => "register_node",
            Payload::LocateRecords { .. } => "locate_records",
            Payload::DelegateConsents { .. } => "delegate_consents",
            Payload::Mint { .. } => "mint",
            Payload::Transfer { .. } => "transfer",
            Payload::Burn { .. } => "burn",
            Payload::SetAllowance { .. } => "set_allowance",
            Payload::TransferFrom { .. } => "transfer_from",
            Payload::DeployCode { .. } => "deploy_code",
            Payload::Instantiate { .. } => "instantiate",
            Payload::Execute { .. } => "execute",
            Payload::AssignCompanyPrefix { .. } => "assign_company_prefix",
            Payload::Supply { .. } => "supply",
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
