//! What a storage operation can fail with.

/// Storage failures. Failures of the database keep their source.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed (I/O, corruption, lock).
    #[error("database error")]
    Db(#[source] redb::Error),
    /// A state read through a snapshot failed.
    #[error("state read failed")]
    View(#[from] carechain_state::ViewError),
    /// A previous write failed; this handle accepts no more writes.
    #[error("storage handle is poisoned by an earlier failed write; restart the node")]
    Poisoned,
    /// Stored bytes do not decode: the data directory is corrupt or was altered.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The data directory has no chain (run `carechain init`), or already has one.
    #[error("{0}")]
    Setup(String),
    /// The block does not extend the stored head.
    #[error("block {got} does not extend head {head}")]
    NotNext {
        /// Current head height.
        head: u64,
        /// The block's height.
        got: u64,
    },
    /// The background transaction-index thread could not start.
    #[error("cannot start the transaction index thread")]
    IndexThread(#[source] std::io::Error),
    /// The background transaction-index thread ended without being stopped.
    #[error("the transaction index thread stopped")]
    IndexStopped,
    /// The durable head and the cached tip stayed apart (a committer stalled or failed).
    #[error("the durable head and its cached state disagree")]
    TipMismatch,
}

macro_rules! from_redb {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StorageError {
            fn from(e: redb::$t) -> StorageError {
                StorageError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    Error,
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError,
    SetDurabilityError
);
