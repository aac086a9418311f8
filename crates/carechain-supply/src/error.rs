//! What can go wrong in the supply service, by kind; mapped to HTTP once, at the edge.

use carechain_epcis::schema::SchemaError;

/// A failure of a supply operation.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    /// The request is malformed (a bad identifier, parameter or document).
    #[error("{0}")]
    Bad(String),
    /// The document breaks GS1's EPCIS schema.
    #[error("the document does not conform to the EPCIS 2.0 schema ({} errors)", .0.len())]
    Schema(Vec<SchemaError>),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such capture, event, query or subscription.
    #[error("{0}")]
    NotFound(String),
    /// More than a capture takes.
    #[error("{0}")]
    TooLarge(String),
    /// The repository's store failed (fatal to this handle: every later call fails).
    #[error("the EPCIS store failed")]
    Store(#[source] redb::Error),
    /// The node or the records service failed.
    #[error(transparent)]
    Service(#[from] carechain_service::ServiceError),
    /// Ledger state could not be read.
    #[error("ledger state could not be read")]
    State(#[source] carechain_state::ViewError),
}

macro_rules! from_redb {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for SupplyError {
            fn from(e: redb::$t) -> SupplyError {
                SupplyError::Store(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError,
    Error
);

impl From<carechain_state::ViewError> for SupplyError {
    fn from(e: carechain_state::ViewError) -> Self {
        SupplyError::State(e)
    }
}

impl SupplyError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        SupplyError::Bad(msg.into())
    }
}
