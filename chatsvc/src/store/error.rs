//! The store's one error type.

/// Errors from the store. `Conflict` and `NotFound` are expected outcomes the
/// domain turns into its own errors; the rest are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled PostgreSQL connection: none free in time, none could be
    /// opened, or the pool is closed.
    #[error("postgres pool: {}", pool_message(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
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
    /// The store's configuration cannot work (a malformed database URL).
    #[error("store configuration: {0}")]
    Config(String),
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
            StoreError::Postgres(e) => postgres_unavailable(e),
            StoreError::Pool(e) => {
                use deadpool_postgres::PoolError as P;
                match e {
                    P::Timeout(_) | P::Closed => true,
                    P::Backend(e) => postgres_unavailable(e),
                    P::PostCreateHook(_) | P::NoRuntimeSpecified => false,
                }
            }
            StoreError::CommitFailed(_) | StoreError::Closed => true,
            _ => false,
        }
    }
}

/// True when PostgreSQL could not be reached or could not serve the
/// request for now, so that a retry later may succeed: the connection
/// failed or closed (I/O errors, refused connections, the server shutting
/// down), SQLSTATE class 08 (connection exception), class 53 (insufficient
/// resources: disk full, out of memory, too many connections), 57P01-03
/// (shut down by an administrator or a crash, cannot connect now) and
/// 57014 (a statement timeout or a cancel).
fn postgres_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(state) = e.code() {
        return unavailable_state(state);
    }
    // Not from the server: a connection that could not be made or broke
    // (refused, reset, timed out) carries the I/O error.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn unavailable_state(state: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    let code = state.code();
    code.starts_with("08")
        || code.starts_with("53")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::QUERY_CANCELED,
        ]
        .contains(state)
}

/// tokio-postgres's own message says only "db error" for what the server
/// reported: the server's message and SQLSTATE are what a log needs. Not
/// its DETAIL, which quotes the rows' values (a unique violation's key).
fn postgres_message(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}

fn pool_message(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => postgres_message(e),
        e => e.to_string(),
    }
}

/// Linux's "I/O error" (`EIO`): the device failed, not the request.
const EIO: i32 = 5;

#[cfg(test)]
mod tests {
    use tokio_postgres::error::SqlState;

    use super::unavailable_state;

    #[test]
    fn postgres_states_that_a_retry_may_cure_are_unavailable() {
        for state in [
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::INSUFFICIENT_RESOURCES,
            SqlState::DISK_FULL,
            SqlState::OUT_OF_MEMORY,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::QUERY_CANCELED,
        ] {
            assert!(unavailable_state(&state), "{}", state.code());
        }
        for state in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::INVALID_PASSWORD,
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::DATABASE_DROPPED,
        ] {
            assert!(!unavailable_state(&state), "{}", state.code());
        }
    }
}
