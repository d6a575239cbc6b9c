//! The store's one error type.

/// Errors from the store. `Conflict` and `NotFound` are expected outcomes the
/// domain turns into its own errors; the rest are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("unique constraint: {0}")]
    Conflict(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("store is closed")]
    Closed,
    #[error("migration: {0}")]
    Migration(String),
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// A file kept next to the database (an attachment) could not be
    /// written or read.
    #[error("file: {0}")]
    File(#[source] std::io::Error),
}

impl StoreError {
    /// True for faults of the storage medium (disk full, read-only, I/O),
    /// which map to "service unavailable" rather than "internal error".
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DiskFull
                    | C::ReadOnly
                    | C::SystemIoFailure
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::CannotOpen
            ),
            StoreError::File(e) => {
                use std::io::ErrorKind as K;
                matches!(
                    e.kind(),
                    K::StorageFull | K::ReadOnlyFilesystem | K::QuotaExceeded
                ) || e.raw_os_error() == Some(EIO)
            }
            StoreError::CommitFailed(_) | StoreError::Closed => true,
            _ => false,
        }
    }
}

/// Linux's "I/O error" (`EIO`): the device failed, not the request.
const EIO: i32 = 5;
