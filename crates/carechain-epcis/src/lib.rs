//! The drug supply chain in GS1's terms. So far: [`gs1`], the identifiers trading partners'
//! systems exchange (EPC URNs of the Tag Data Standard and GS1 Digital Link URIs), with their
//! check digits, converted to the canonical Digital Link form the CBV 2.0 event hash uses.

pub mod gs1;

pub use gs1::{Gs1Error, check_digit, digital_link, is_valid_key};
