//! A patient's consent as ledger data: granted and revoked by transactions her own key signs,
//! so that every node enforces the same consent from the same height.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::PublicKey;

/// Most data classes one consent names.
pub const MAX_CONSENT_CLASSES: usize = 32;
/// Longest data-class code, in bytes.
pub const MAX_CLASS_CODE: usize = 64;
/// Most consents (granted, in force or not) one patient holds.
pub const MAX_CONSENTS_PER_PATIENT: usize = 256;
/// Most delegates that may grant and revoke consents for one patient.
pub const MAX_CONSENT_DELEGATES: usize = 8;

/// Why the grantee may access the records (HL7 v3 PurposeOfUse).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ConsentPurpose {
    /// Treatment (`TREAT`).
    Treatment = 0,
    /// Emergency treatment (`ETREAT`).
    Emergency = 1,
    /// Payment (`HPAYMT`).
    Payment = 2,
    /// Research (`HRESCH`).
    Research = 3,
    /// Operations (`HOPERAT`).
    Operations = 4,
    /// Public health (`PUBHLTH`).
    PublicHealth = 5,
}

impl ConsentPurpose {
    /// The HL7 v3 ActReason code.
    pub fn code(self) -> &'static str {
        match self {
            ConsentPurpose::Treatment => "TREAT",
            ConsentPurpose::Emergency => "ETREAT",
            ConsentPurpose::Payment => "HPAYMT",
            ConsentPurpose::Research => "HRESCH",
            ConsentPurpose::Operations => "HOPERAT",
            ConsentPurpose::PublicHealth => "PUBHLTH",
        }
    }

    /// Every purpose, in code order.
    pub const ALL: [ConsentPurpose; 6] = [
        ConsentPurpose::Treatment,
        ConsentPurpose::Emergency,
        ConsentPurpose::Payment,
        ConsentPurpose::Research,
        ConsentPurpose::Operations,
        ConsentPurpose::PublicHealth,
    ];

    /// From an HL7 v3 ActReason code.
    pub fn parse(code: &str) -> Option<ConsentPurpose> {
        ConsentPurpose::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// What a patient lets one grantee do.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ConsentRule {
    /// Who may access: a practitioner's or an organization's identity (an organization's
    /// grant covers its staff).
    pub grantee: PublicKey,
    /// For which purposes (at least one).
    pub purposes: Vec<ConsentPurpose>,
    /// Which data classes: record category codes (`vital-signs`) or FHIR resource types
    /// (`Observation`), as a FHIR Consent's `provision.class`; empty: all.
    pub classes: Vec<String>,
    /// In force from (ms since the Unix epoch, compared with the time of each access).
    pub not_before_ms: u64,
    /// Until (exclusive), or open-ended.
    pub not_after_ms: Option<u64>,
}

impl ConsentRule {
    /// Whether the rule is within the ledger's bounds: a purpose, bounded and unique class
    /// codes, a non-empty period.
    pub fn is_well_formed(&self) -> bool {
        let mut purposes = self.purposes.clone();
        purposes.sort();
        purposes.dedup();
        let mut classes: Vec<&String> = self.classes.iter().collect();
        classes.sort();
        classes.dedup();
        !self.purposes.is_empty()
            && purposes.len() == self.purposes.len()
            && self.classes.len() <= MAX_CONSENT_CLASSES
            && classes.len() == self.classes.len()
            && self
                .classes
                .iter()
                .all(|c| !c.is_empty() && c.len() <= MAX_CLASS_CODE)
            && self.not_after_ms.is_none_or(|end| end > self.not_before_ms)
    }

    /// Whether the rule lets `who` (an identity, or the organization it acts for) access a
    /// record of data class `class` (`None`: unclassified) for `purpose` at `at_ms`.
    pub fn allows(
        &self,
        who: &[PublicKey],
        purpose: ConsentPurpose,
        class: Option<&str>,
        at_ms: u64,
    ) -> bool {
        who.contains(&self.grantee)
            && self.purposes.contains(&purpose)
            && (self.classes.is_empty()
                || class.is_some_and(|c| self.classes.iter().any(|x| x == c)))
            && at_ms >= self.not_before_ms
            && self.not_after_ms.is_none_or(|end| at_ms < end)
    }
}
