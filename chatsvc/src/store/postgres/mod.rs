//! The PostgreSQL backend's foundations: a bounded connection pool, the
//! schema's migrations, and transactions that run the store's synchronous
//! closures.
//!
//! The domain's rules are written once, as synchronous closures over a
//! store session, for both backends. SQLite runs them on its own threads;
//! here [`Backend::run`] takes a pooled connection, opens a transaction on
//! a blocking thread and runs the closure there, each statement driven to
//! completion with [`tokio::runtime::Handle::block_on`]. A closure holds one
//! pooled connection for its whole transaction, so the pool's size bounds
//! the transactions in flight as well as the connections.
//!
//! Every connection starts with `synchronous_commit = on` (a commit returns
//! once its WAL record is flushed: durable before answered, whatever the
//! server's or the database's default), the configured
//! `statement_timeout` (no statement holds its locks and its connection
//! for ever) and `application_name = chatd` (unless the URL names one), all
//! sent in the startup packet, so no round trip of its own.
//!
//! # Layout
//! - [`Backend`]: the pool; [`Backend::connect`] migrates, [`Backend::run`]
//!   runs a closure in a transaction.
//! - [`Session`] (`session.rs`): what a closure gets; statements prepared
//!   once per connection.
//! - `limits.rs`: rate-limit buckets every node shares, taken with one
//!   upsert on the pool.
//! - `writer.rs`: every write, a group of jobs per transaction on a
//!   connection of the writer's own, with the lock order that lets several
//!   chatd write at once without deadlock: the write lock (shared by sends,
//!   exclusive for the rest), then a group of sends' conversations by id,
//!   then the users whose inbox cursors they bump, by id.
//! - `migrations.rs`: versioned SQL under `chatsvc/migrations/postgres/`,
//!   applied under an advisory lock.

pub(crate) mod expiry;
pub(crate) mod files;
pub(crate) mod groups;
pub(crate) mod limits;
pub(crate) mod messages;
mod migrations;
pub(crate) mod mqtt;
pub(crate) mod pins;
pub(crate) mod reactions;
pub(crate) mod replies;
mod sends;
pub(crate) mod services;
mod session;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod social;
pub(crate) mod users;
pub(crate) mod webhooks;
mod writer;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};

pub use migrations::{versions as migration_versions, SCHEMA_VERSION};
pub use session::Session;
pub(crate) use writer::Writer;

use super::StoreError;

/// How a [`Backend`] connects; [`Options::default`] suits one chatd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Connections kept at most, which is also how many transactions run at
    /// once; a caller past that waits for one up to `acquire_timeout`.
    pub max_connections: usize,
    /// How long opening one connection may take (when the URL does not say).
    pub connect_timeout: Duration,
    /// How long a caller waits for a pooled connection when all are busy.
    pub acquire_timeout: Duration,
    /// The server cancels any statement running longer (`57014`, reported
    /// as unavailable). At least a millisecond: there is always a bound.
    pub statement_timeout: Duration,
    /// Group-commit writers (lanes), each with a connection of its own
    /// besides the pool's (see `writer.rs`). At least one.
    pub writer_lanes: usize,
}

/// Writer lanes by default: one. Sends of several lanes that share a
/// user wait for each other's row locks and commit in smaller groups;
/// under chat-bench's dm load on two cores four lanes were slower than one
/// (`bench/HISTORY.md`).
pub const DEFAULT_WRITER_LANES: usize = 1;

impl Default for Options {
    fn default() -> Options {
        Options {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(10),
            writer_lanes: DEFAULT_WRITER_LANES,
        }
    }
}

/// Whether a transaction may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `READ ONLY`, `REPEATABLE READ`: every statement of the closure sees
    /// one snapshot, as SQLite's read transactions do.
    Read,
    /// `READ WRITE`, `READ COMMITTED`: each statement sees what committed
    /// before it, and concurrent writers order themselves on row locks
    /// (counters are allocated with `UPDATE ... RETURNING`).
    Write,
}

/// The PostgreSQL store backend: a pool of connections to one database.
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Backend {
    pool: Pool,
    /// How to open a connection of one's own (the writer's).
    config: std::sync::Arc<tokio_postgres::Config>,
    /// How many writer lanes [`Writer::spawn`] starts.
    writer_lanes: usize,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Backend")
            .field("max_connections", &status.max_size)
            .field("connections", &status.size)
            .finish()
    }
}

impl Backend {
    /// Connects to the database at `url` (`postgres://USER:PASS@HOST:PORT/DB`,
    /// `postgresql://...`, or key-value pairs such as `host=/run/postgresql
    /// dbname=chat`), checks that it answers, and brings its schema to
    /// [`SCHEMA_VERSION`] (refusing a newer one).
    pub async fn connect(url: &str, options: &Options) -> Result<Backend, StoreError> {
        let config = connection_config(url, options)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection the server closed (a restart, an idle
                // timeout) is noticed by its connection task and dropped
                // at the next checkout; a check query on every checkout
                // would cost a round trip per transaction, and a
                // connection that dies in use fails its transaction as
                // unavailable either way.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(format!("connection pool: {e}")))?;
        // Migrations run on a connection of their own, which is closed
        // afterwards: it holds the session-level advisory lock, and must
        // never go back to the pool holding it.
        migrations::migrate(&config).await?;
        let backend = Backend {
            pool,
            config: std::sync::Arc::new(config),
            writer_lanes: options.writer_lanes.max(1),
        };
        backend
            .run(Mode::Read, |s| s.query_one("SELECT 1", &[]).map(drop))
            .await?;
        Ok(backend)
    }

    /// Runs `f` in a transaction on a pooled connection, on a blocking
    /// thread: commits if it returns `Ok`, rolls back if it returns `Err`.
    /// A failed COMMIT is an error (nothing may be answered as stored).
    pub async fn run<T, E, F>(&self, mode: Mode, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, E> + Send + 'static,
    {
        let client = self.pool.get().await.map_err(StoreError::from)?;
        let handle = tokio::runtime::Handle::current();
        let job = tokio::task::spawn_blocking(move || in_transaction(&handle, client, mode, f));
        match job.await {
            Ok(result) => result,
            // A panic in a closure is a bug: it goes on unwinding in the
            // caller, as if the closure had run there.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(E::from(StoreError::Closed)),
        }
    }
}

/// `f` in a transaction on `client`, from a blocking thread.
fn in_transaction<T, E, F>(
    handle: &tokio::runtime::Handle,
    mut client: deadpool_postgres::Client,
    mode: Mode,
    f: F,
) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnOnce(&Session<'_>) -> Result<T, E>,
{
    let (isolation, read_only) = match mode {
        Mode::Read => (IsolationLevel::RepeatableRead, true),
        Mode::Write => (IsolationLevel::ReadCommitted, false),
    };
    let tx = handle
        .block_on(
            client
                .build_transaction()
                .isolation_level(isolation)
                .read_only(read_only)
                .start(),
        )
        .map_err(StoreError::from)?;
    let result = f(&Session::new(handle, &tx));
    match result {
        Ok(value) => {
            handle.block_on(tx.commit()).map_err(StoreError::from)?;
            Ok(value)
        }
        Err(e) => {
            // The closure's error is the one to report; a connection that
            // cannot even roll back is closed by the pool at next checkout,
            // and the server rolls back what it had.
            if let Err(rollback) = handle.block_on(tx.rollback()) {
                tracing::warn!(error = %rollback, "postgres: rollback failed");
            }
            Err(e)
        }
    }
}

/// The connection settings from `url`, with chatd's own on top.
fn connection_config(url: &str, options: &Options) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Config(format!("database URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("chatd");
    }
    // After any `options` of the URL's, so these win.
    let ms = options.statement_timeout.as_millis().max(1);
    let ours = format!("-c synchronous_commit=on -c statement_timeout={ms}");
    let startup = match config.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {ours}"),
        _ => ours,
    };
    config.options(startup);
    Ok(config)
}

/// Maps a unique violation (`23505`) to `Conflict(what)`, anything else
/// through: the sibling of SQLite's `store::conflict`.
pub fn conflict(what: &'static str) -> impl Fn(StoreError) -> StoreError {
    move |e| match &e {
        StoreError::Postgres(pg) if pg.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            StoreError::Conflict(what)
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
        connection_config(url, &Options::default())
    }

    /// Every form of URL an operator may give, with chatd's settings on top.
    #[test]
    fn urls_of_every_form_get_chatd_settings() -> Result<(), StoreError> {
        use tokio_postgres::config::Host;
        for url in [
            "postgres://chat:secret@db.example:6543/chat",
            "postgresql://chat:secret@db.example:6543/chat",
        ] {
            let c = config(url)?;
            assert_eq!(c.get_hosts(), [Host::Tcp("db.example".into())], "{url}");
            assert_eq!(c.get_ports(), [6543], "{url}");
            assert_eq!(c.get_dbname(), Some("chat"), "{url}");
            assert_eq!(c.get_user(), Some("chat"), "{url}");
            assert_eq!(c.get_application_name(), Some("chatd"), "{url}");
            assert_eq!(
                c.get_options(),
                Some("-c synchronous_commit=on -c statement_timeout=10000"),
                "{url}"
            );
            assert_eq!(
                c.get_connect_timeout(),
                Some(&Options::default().connect_timeout)
            );
        }
        let c = config("host=/run/postgresql dbname=chat user=chat")?;
        assert_eq!(
            c.get_hosts(),
            [Host::Unix("/run/postgresql".into())],
            "a unix socket directory"
        );
        Ok(())
    }

    /// The URL's own choices stay, except that chatd's `-c` settings come
    /// last, so a URL cannot turn durable commits off by accident.
    #[test]
    fn the_urls_settings_stay_but_durability_wins() -> Result<(), StoreError> {
        let c = config(
            "postgres://u@h/db?application_name=node-a&connect_timeout=2\
             &options=-c%20synchronous_commit%3Doff",
        )?;
        assert_eq!(c.get_application_name(), Some("node-a"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(
            c.get_options(),
            Some("-c synchronous_commit=off -c synchronous_commit=on -c statement_timeout=10000")
        );
        Ok(())
    }

    #[test]
    fn a_bad_url_is_refused() {
        assert!(matches!(
            config("mysql://u@h/db"),
            Err(StoreError::Config(_))
        ));
    }
}
