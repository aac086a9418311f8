//! Insurance claims on the ledger: a provider's FHIR R4 claim bundle is decided by the
//! insurer's claims contract (`contracts/claims`, shipped with this repository) in the block
//! that carries it, the payment moving from the contract to the provider in the same
//! transaction; the decision comes back as FHIR (`ClaimResponse`, and an
//! `ExplanationOfBenefit` for the patient) with evidence anyone can check offline.
//!
//! - [`bundle`]: reading a submission (`ClaimBundle::parse`), every problem named.
//! - [`message`]: what goes on chain (pseudonymous member, billing lines, commitment).
//! - [`submit`]: `Claim/$submit` on a node's records service.
//! - [`inquire`]: `Claim/$inquire`, the stored response brought up to the insurer's decision.
//! - [`response`]: the FHIR views and the evidence extension.
//! - [`evidence`]: the proofs a decision carries.
//! - [`verify`]: `carechain verify-claim`, running the contract again on the decision's reads.
//! - [`billing`]: invoices paid with a token transfer, reconciled as PaymentReconciliation
//!   and PaymentNotice.

pub mod billing;
pub mod bundle;
pub mod evidence;
pub mod inquire;
pub mod message;
pub mod response;
pub mod submit;
pub mod verify;

pub use billing::{ReconcileError, Reconciled, TX_SYSTEM, reconcile};
pub use bundle::{BundleProblem, CONTRACT_SYSTEM, ClaimBundle, Line};
pub use evidence::Evidence;
pub use message::{claim_id, inputs_commitment, member_pseudonym, submit_message};
pub use response::{
    CARC_SYSTEM, EVIDENCE_URL, claim_response, evidence_of, explanation_of_benefit,
};
pub use submit::{Claims, SubmitError, Submitted};
pub use verify::{VerifiedClaim, VerifyInputs, verify_claim};
