//! The drug supply chain in GS1's terms: [`gs1`] and [`link`], the identifiers trading
//! partners' systems exchange (EPC URNs of the Tag Data Standard and GS1 Digital Link URIs)
//! with their check digits; [`hash`], the CBV 2.0 event hash that gives every EPCIS event an
//! identity independent of its syntax.

pub mod event;
pub mod gs1;
pub mod hash;
pub mod link;
pub mod schema;
pub mod xml;

pub use event::{Action, Event, EventError, EventType, Party, Quantity, bare_term};
pub use gs1::{Gs1Error, check_digit, digital_link, is_valid_key};
pub use link::{DigitalLink, PrimaryKey, normalise, parse_link};
