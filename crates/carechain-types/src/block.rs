//! Blocks, headers, receipts and the genesis description.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, Namespace, PublicKey, SecretKey, Signature, merkle, sha256};

use crate::{
    codec::encode,
    contract::{CodeError, ContractConfig, ContractFailure, Event},
    token::TokenConfig,
    tx::{Role, SignedTx},
};

/// A block header. Its hash identifies the block and is what the proposer signs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Header {
    /// Wire format version ([`crate::FORMAT_VERSION`]).
    pub version: u16,
    /// The chain.
    pub chain_id: String,
    /// Height: the first block after genesis is 1.
    pub height: u64,
    /// Hash of the previous header (the genesis hash for height 1).
    pub parent: Hash,
    /// Milliseconds since the Unix epoch, chosen by the proposer; never decreases.
    pub timestamp_ms: u64,
    /// The proposer's key.
    pub proposer: PublicKey,
    /// Number of transactions.
    pub tx_count: u32,
    /// RFC 6962 root over the leaf hashes of the transaction hashes.
    pub tx_root: Hash,
    /// RFC 6962 root over the leaf hashes of the encoded receipts.
    pub receipts_root: Hash,
    /// Commitment to the whole state after this block.
    pub state_root: Hash,
    /// Size of the verifiable log after this block.
    pub log_size: u64,
    /// Root of the verifiable log after this block.
    pub log_root: Hash,
}

impl Header {
    /// The block id.
    pub fn hash(&self) -> Hash {
        sha256(&encode(self))
    }
}

/// A block: header, ordered transactions and the proposer's seal over the header hash.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTx>,
    /// The proposer's signature over [`Namespace::Block`] `||` header hash.
    pub seal: Signature,
}

impl Block {
    /// Seals a header with the proposer's key.
    pub fn seal(header: Header, txs: Vec<SignedTx>, key: &SecretKey) -> Block {
        let seal = key.sign(Namespace::Block, &header.hash().0);
        Block { header, txs, seal }
    }

    /// Verifies the seal against the header's proposer key.
    pub fn verify_seal(&self) -> Result<(), carechain_crypto::CryptoError> {
        self.header
            .proposer
            .verify(Namespace::Block, &self.header.hash().0, &self.seal)
    }

    /// The root the header must carry for these transactions.
    pub fn compute_tx_root(txs: &[SignedTx]) -> Hash {
        let leaves: Vec<Hash> = txs.iter().map(|t| merkle::leaf_hash(&t.hash().0)).collect();
        merkle::root_of_leaf_hashes(&leaves)
    }
}

/// Why the state machine refused a transaction. Each has a stable machine-readable code.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RejectReason {
    /// The transaction names another chain.
    WrongChain,
    /// The signer is not a registered identity.
    UnknownSigner,
    /// The signer has been deactivated.
    SignerDeactivated,
    /// The signature does not verify under the signer's current key.
    BadSignature,
    /// The nonce is not the next one for the signer.
    BadNonce {
        /// The nonce the state machine expected.
        expected: u64,
        /// The nonce the transaction carried.
        got: u64,
    },
    /// The signer's role does not allow this action.
    Unauthorized,
    /// The subject is already registered.
    AlreadyRegistered,
    /// The subject, parent or organization is not registered (or not active).
    UnknownSubject,
    /// A key in the payload is not a valid Ed25519 point.
    InvalidKey,
    /// The new key's proof of possession does not verify.
    BadRotationProof,
    /// The new key is already in use by an identity.
    KeyInUse,
    /// A field is out of bounds (too long, empty).
    Malformed,
    /// The signer is not in the current validator set.
    NotValidator,
    /// A governance change's effective height is not a future epoch start.
    BadEffectiveHeight,
    /// The same validator change for the same height was already proposed.
    ProposalExists,
    /// No pending proposal has this id.
    UnknownProposal,
    /// The signer already approved this proposal.
    AlreadyApproved,
    /// The proposal's effective height has been reached without enough approvals.
    ProposalExpired,
    /// The change would leave the set empty, too large, or adds a member / removes a
    /// non-member.
    InvalidValidatorSet,
    /// The patient already has a consent with this id.
    ConsentExists,
    /// The signer has no consent with this id.
    UnknownConsent,
    /// The consent was already revoked.
    ConsentRevoked,
    /// The patient holds the most consents allowed.
    TooManyConsents,
    /// The signer (or the node named) is not a node registered by an organization.
    UnknownNode,
    /// A node serves the most organizations allowed, or a patient's locator is full.
    TooManyEntries,
    /// The signer is not an issuer of the token.
    NotIssuer,
    /// An issuer change adds an issuer, or removes a non-issuer, or names no active identity.
    InvalidIssuerChange,
    /// The account does not hold enough tokens.
    InsufficientFunds,
    /// The amount would overflow the supply or a balance.
    Overflow,
    /// The signer's allowance from the owner is missing, expired or too small.
    AllowanceExceeded,
    /// The receiving account is not a registered identity or a contract.
    UnknownAccount,
    /// This code is already stored.
    CodeExists,
    /// No stored code has this hash.
    UnknownCode,
    /// No contract has this address.
    UnknownContract,
    /// The code was refused at deploy.
    InvalidCode(CodeError),
    /// The contract call failed; its changes are dropped.
    ContractFailed(ContractFailure),
    /// A supply event of an atomic batch failed (its index and why).
    SupplyEvent {
        /// The event's index in the batch.
        index: u32,
        /// Why it failed.
        reason: SupplyReject,
    },
}

/// Why a supply event cannot be applied. Each has a stable machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum SupplyReject {
    /// The signer may not capture for the organization.
    NotCapturer = 0,
    /// The GTIN's company prefix is not the organization's.
    NotGtinOwner = 1,
    /// The location (GLN) is not under the organization's company prefixes.
    NotLocationOwner = 2,
    /// A product of the event is already commissioned.
    AlreadyCommissioned = 3,
    /// A product of the event is not commissioned.
    UnknownItem = 4,
    /// A product is not in the organization's custody.
    NotCustodian = 5,
    /// A product was dispensed or decommissioned.
    Inactive = 6,
    /// A product is not in transit (to this organization).
    NotInTransit = 7,
    /// Packing would nest containers too deeply or in a cycle.
    BadNesting = 8,
    /// A child is not in that container.
    NotInContainer = 9,
    /// A field is empty, too long or too many.
    Malformed = 10,
    /// A product is packed in a container: ship, dispense or unpack the container.
    Packed = 11,
}

impl SupplyReject {
    /// Stable code for APIs and logs.
    pub fn code(self) -> &'static str {
        match self {
            SupplyReject::NotCapturer => "not_capturer",
            SupplyReject::NotGtinOwner => "not_gtin_owner",
            SupplyReject::NotLocationOwner => "not_location_owner",
            SupplyReject::AlreadyCommissioned => "already_commissioned",
            SupplyReject::UnknownItem => "unknown_item",
            SupplyReject::NotCustodian => "not_custodian",
            SupplyReject::Inactive => "inactive",
            SupplyReject::NotInTransit => "not_in_transit",
            SupplyReject::BadNesting => "bad_nesting",
            SupplyReject::NotInContainer => "not_in_container",
            SupplyReject::Malformed => "malformed",
            SupplyReject::Packed => "packed",
        }
    }

    /// Human-readable explanation.
    pub fn message(self) -> &'static str {
        match self {
            SupplyReject::NotCapturer => "the signer may not capture events for this organization",
            SupplyReject::NotGtinOwner => {
                "the GTIN's company prefix belongs to another organization"
            }
            SupplyReject::NotLocationOwner => "the location belongs to another organization",
            SupplyReject::AlreadyCommissioned => "a product is already commissioned",
            SupplyReject::UnknownItem => "a product was never commissioned",
            SupplyReject::NotCustodian => "a product is not in this organization's custody",
            SupplyReject::Inactive => "a product was dispensed or decommissioned",
            SupplyReject::NotInTransit => "a product is not in transit to this organization",
            SupplyReject::BadNesting => "containers would nest too deeply or in a cycle",
            SupplyReject::NotInContainer => "a product is not in that container",
            SupplyReject::Malformed => "a field is empty, too long or too many",
            SupplyReject::Packed => "a product is packed in a container",
        }
    }
}

impl RejectReason {
    /// Stable code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::WrongChain => "wrong_chain",
            RejectReason::UnknownSigner => "unknown_signer",
            RejectReason::SignerDeactivated => "signer_deactivated",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::BadNonce { .. } => "bad_nonce",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::AlreadyRegistered => "already_registered",
            RejectReason::UnknownSubject => "unknown_subject",
            RejectReason::InvalidKey => "invalid_key",
            RejectReason::BadRotationProof => "bad_rotation_proof",
            RejectReason::ConsentExists => "consent_exists",
            RejectReason::UnknownConsent => "unknown_consent",
            RejectReason::ConsentRevoked => "consent_revoked",
            RejectReason::TooManyConsents => "too_many_consents",
            RejectReason::UnknownNode => "unknown_node",
            RejectReason::TooManyEntries => "too_many_entries",
            RejectReason::KeyInUse => "key_in_use",
            RejectReason::Malformed => "malformed",
            RejectReason::NotValidator => "not_validator",
            RejectReason::BadEffectiveHeight => "bad_effective_height",
            RejectReason::ProposalExists => "proposal_exists",
            RejectReason::UnknownProposal => "unknown_proposal",
            RejectReason::AlreadyApproved => "already_approved",
            RejectReason::ProposalExpired => "proposal_expired",
            RejectReason::InvalidValidatorSet => "invalid_validator_set",
            RejectReason::NotIssuer => "not_issuer",
            RejectReason::InvalidIssuerChange => "invalid_issuer_change",
            RejectReason::InsufficientFunds => "insufficient_funds",
            RejectReason::Overflow => "overflow",
            RejectReason::AllowanceExceeded => "allowance_exceeded",
            RejectReason::UnknownAccount => "unknown_account",
            RejectReason::CodeExists => "code_exists",
            RejectReason::UnknownCode => "unknown_code",
            RejectReason::UnknownContract => "unknown_contract",
            RejectReason::InvalidCode(_) => "invalid_code",
            RejectReason::ContractFailed(f) => match f {
                ContractFailure::OutOfFuel => "out_of_fuel",
                ContractFailure::BlockFuelExhausted => "block_fuel_exhausted",
                ContractFailure::Trap(_) => "contract_trap",
                ContractFailure::CallDepth => "call_depth",
                ContractFailure::MemoryLimit => "memory_limit",
                ContractFailure::Aborted(_) => "contract_error",
                ContractFailure::HostMisuse(_) => "host_misuse",
                ContractFailure::BadMessage => "bad_message",
                ContractFailure::NoEntryPoint(_) => "no_entry_point",
            },
            RejectReason::SupplyEvent { reason, .. } => reason.code(),
        }
    }

    /// Human-readable explanation (never contains payload data).
    pub fn message(&self) -> String {
        match self {
            RejectReason::WrongChain => "transaction is for another chain".into(),
            RejectReason::UnknownSigner => "signer is not a registered identity".into(),
            RejectReason::SignerDeactivated => "signer identity is deactivated".into(),
            RejectReason::BadSignature => {
                "signature does not verify under the signer's current key".into()
            }
            RejectReason::BadNonce { expected, got } => {
                format!("nonce {got} is not the next nonce (expected {expected})")
            }
            RejectReason::Unauthorized => "signer's role may not perform this action".into(),
            RejectReason::AlreadyRegistered => "identity is already registered".into(),
            RejectReason::UnknownSubject => {
                "referenced identity is not registered or active".into()
            }
            RejectReason::InvalidKey => "key is not a valid Ed25519 public key".into(),
            RejectReason::BadRotationProof => {
                "new key's proof of possession does not verify".into()
            }
            RejectReason::KeyInUse => "new key already belongs to an identity".into(),
            RejectReason::Malformed => "a field is empty or too long".into(),
            RejectReason::NotValidator => "signer is not in the current validator set".into(),
            RejectReason::BadEffectiveHeight => format!(
                "effective height must be a future multiple of the epoch length ({})",
                crate::EPOCH_LENGTH
            ),
            RejectReason::ProposalExists => "this validator change is already proposed".into(),
            RejectReason::UnknownProposal => "no pending validator change has this id".into(),
            RejectReason::AlreadyApproved => "signer already approved this change".into(),
            RejectReason::ProposalExpired => {
                "the change's effective height passed before it was approved".into()
            }
            RejectReason::ConsentExists => "the patient already has a consent with this id".into(),
            RejectReason::UnknownConsent => "the signer has no consent with this id".into(),
            RejectReason::ConsentRevoked => "the consent is already revoked".into(),
            RejectReason::TooManyConsents => format!(
                "a patient holds at most {} consents",
                crate::MAX_CONSENTS_PER_PATIENT
            ),
            RejectReason::UnknownNode => {
                "the node is not registered by an organization (register_node)".into()
            }
            RejectReason::TooManyEntries => format!(
                "a node serves at most {} organizations and a patient's locator names at most {} nodes",
                crate::MAX_NODE_ORGANIZATIONS,
                crate::MAX_LOCATOR_NODES
            ),
            RejectReason::InvalidValidatorSet => {
                "the change would leave an empty or oversized set, add a member or remove a non-member"
                    .into()
            }
            RejectReason::NotIssuer => "signer is not an issuer of the token".into(),
            RejectReason::InvalidIssuerChange => {
                "the issuer change does not apply to the issuers as they are".into()
            }
            RejectReason::InsufficientFunds => "the account does not hold enough tokens".into(),
            RejectReason::Overflow => "the amount would overflow a balance or the supply".into(),
            RejectReason::AllowanceExceeded => {
                "no allowance from the owner covers this amount at this height".into()
            }
            RejectReason::UnknownAccount => {
                "the account is not a registered identity or a contract".into()
            }
            RejectReason::CodeExists => "this code is already stored".into(),
            RejectReason::UnknownCode => "no stored code has this hash".into(),
            RejectReason::UnknownContract => "no contract has this address".into(),
            RejectReason::InvalidCode(e) => e.message(),
            RejectReason::ContractFailed(f) => f.message(),
            RejectReason::SupplyEvent { index, reason } => {
                format!("supply event {index}: {}", reason.message())
            }
        }
    }
}

/// What happened to a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Outcome {
    /// Applied; its hash is leaf `log_index` of the verifiable log.
    Applied {
        /// Index of the transaction hash in the verifiable log.
        log_index: u64,
    },
    /// Refused; the state is unchanged apart from nothing (the nonce is not consumed).
    Rejected(RejectReason),
}

/// The recorded result of one transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    /// The transaction.
    pub tx_hash: Hash,
    /// Its outcome.
    pub outcome: Outcome,
    /// Contract fuel it burned (applied or not; 0 for transactions that run no contract).
    pub fuel_used: u64,
    /// What it emitted (only when applied).
    pub events: Vec<Event>,
    /// What the contract returned (JSON; empty for other transactions).
    pub data: Vec<u8>,
}

impl Receipt {
    /// The root the header must carry for these receipts.
    pub fn compute_root(receipts: &[Receipt]) -> Hash {
        let leaves: Vec<Hash> = receipts
            .iter()
            .map(|r| merkle::leaf_hash(&encode(r)))
            .collect();
        merkle::root_of_leaf_hashes(&leaves)
    }
}

/// One identity present from the start.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct GenesisIdentity {
    /// Its key (and permanent id).
    pub key: PublicKey,
    /// Its role.
    pub role: Role,
    /// Its organization, if any.
    pub parent: Option<PublicKey>,
}

/// The description of a chain's initial state. Its hash is the parent of block 1.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Genesis {
    /// The chain id every transaction must carry.
    pub chain_id: String,
    /// The genesis time (ms since the Unix epoch); block 1 may not be older.
    pub timestamp_ms: u64,
    /// Initial identities (operators, validators, organizations, ...).
    pub identities: Vec<GenesisIdentity>,
    /// The care token's metadata and fee.
    pub token: TokenConfig,
    /// The contract runtime's cost table and limits.
    pub contracts: ContractConfig,
}

impl Genesis {
    /// The genesis hash.
    pub fn hash(&self) -> Hash {
        sha256(&encode(self))
    }
}
