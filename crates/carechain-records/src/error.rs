//! What a record store operation can fail with.

use carechain_fhir::Issue;
use carechain_vault::VaultError;

/// Failures of the record store. Domain failures (invalid, missing, deleted, erased,
/// conflicting) are for the caller to answer; the others keep their source.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The resource does not conform to the R4 definitions.
    #[error("resource is not valid FHIR R4 ({} issues)", .0.len())]
    Invalid(Vec<Issue>),
    /// The request is not usable.
    #[error("{0}")]
    BadRequest(String),
    /// No such resource or version.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource was deleted.
    #[error("{0} was deleted")]
    Deleted(String),
    /// The resource was erased.
    #[error("{0} was erased")]
    Erased(String),
    /// `If-Match` names another version than the current one.
    #[error("version conflict: current version is {current}")]
    VersionConflict {
        /// The current version.
        current: u64,
    },
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The metadata database failed.
    #[error("record database")]
    Db(#[source] redb::Error),
    /// The store's directory, or a stored metadata record that does not decode.
    #[error("record store I/O")]
    Io(#[from] std::io::Error),
    /// A stored resource that does not parse (it was serialized by this store).
    #[error("stored resource is not JSON")]
    Json(#[from] serde_json::Error),
    /// A commit this write shared with others failed (the writer that led it has the cause).
    #[error("the commit this write joined failed")]
    CommitFailed,
    /// An earlier metadata commit failed: the handle takes no more writes (reopen the store).
    #[error("an earlier write failed; the record store must be reopened")]
    Poisoned,
    /// A sealing thread panicked.
    #[error("a sealing thread panicked")]
    SealPanicked,
}

/// `From` every redb error type for `$target`, wrapping the unified `redb::Error` with `$wrap`.
macro_rules! from_redb {
    ($target:ident, $wrap:expr) => {
        $crate::error::from_redb!(
            @each $target, $wrap, DatabaseError, TransactionError, TableError, StorageError,
            CommitError, SetDurabilityError, Error
        );
    };
    (@each $target:ident, $wrap:expr, $($t:ident),*) => {$(
        impl From<redb::$t> for $target {
            fn from(e: redb::$t) -> $target {
                ($wrap)(redb::Error::from(e))
            }
        }
    )*};
}
pub(crate) use from_redb;

from_redb!(RecordError, RecordError::Db);
