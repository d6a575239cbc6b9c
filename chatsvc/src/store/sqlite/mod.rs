//! The SQLite backend, through rusqlite: every operation of `store`'s
//! areas for one database file.
//!
//! One writer thread owns the write connection and commits in groups: every
//! job waiting when a transaction starts joins it, and nobody is answered
//! before the group's COMMIT (WAL, `synchronous=FULL`) returns. A job runs
//! inside its own savepoint, so one failing job does not undo the others,
//! except sends ([`Store::queue_batch`]), which make every check before
//! their first write instead, each run of them queued one after another
//! together. Reads run on a small pool of read-only
//! connections on blocking threads. ARCHITECTURE.md §3 follows a send
//! through it; what each choice below measured is in `bench/HISTORY.md`.
//!
//! # Tuning
//!
//! - **No savepoint for sends.** A savepoint copies every page its job
//!   touches into a sub-journal, a large share of a direct message's work;
//!   a send's checks all come before its first write, so it needs none.
//! - **Few pages per message.** Every statement of a send touches a page
//!   that the next jobs of the group probably touch too (the newest leaf of
//!   an index), so a group writes few pages per message to the WAL. That is
//!   why nothing on the send path keeps a copy elsewhere: the next seq and
//!   the last sender come from the conversation's newest message, the next
//!   inbox cursor from the inbox's own key ([`messages::insert`],
//!   [`messages::fan_out`]); a counter or a copy in `conversations` or
//!   `users` would dirty a page per message that no other message shares.
//!   For the same reason a resend is found by the insert's own probe of the
//!   `(sender_id, client_msg_id)` index, not by a lookup before every send,
//!   and the sender's read marker is written only when it changes a count.
//! - **Text indexed in batches** (`fulltext`): FTS5 writes a new segment of
//!   a few pages for every transaction and savepoint that adds text.
//! - **The writer's page cache** ([`DEFAULT_WRITER_CACHE_MIB`]): sends touch
//!   the newest index leaves of every conversation in use, which outgrow
//!   SQLite's 2 MB default; readers keep the default.
//! - **Statements prepared once** (`conn::Hot`) and plans that never depend
//!   on bound values (QPSG, in `configure`): rusqlite's cache costs hashes
//!   and an allocation on every use, and without QPSG a bound `LIMIT ?`
//!   makes SQLite prepare the statement again at every execution.
//! - **WAL checkpoints off the writer** (`writer::Options`,
//!   `writer::RestartPolicy`): PASSIVE checkpoints run on a thread of their
//!   own; under writes that never pause, the writer makes the WAL start over
//!   about once a second past a few thousand frames, since each restart
//!   stalls it for a few milliseconds. So the WAL's length follows the write
//!   rate, and `journal_size_limit` bounds what stays on disk.
//! - **The bundled SQLite's build** (`.cargo/config.toml`):
//!   `SQLITE_DEFAULT_MEMSTATUS=0` and no `SQLITE_ENABLE_MEMORY_MANAGEMENT`,
//!   both of which put a global mutex on every allocation or page-cache
//!   access.

mod conn;
mod conversations;
pub(crate) mod expiry;
pub(crate) mod files;
mod fulltext;
pub(crate) mod groups;
pub(crate) mod messages;
mod migrations;
pub(crate) mod mqtt;
pub(crate) mod pins;
pub(crate) mod reactions;
pub(crate) mod replies;
pub(crate) mod services;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod social;
mod timeline;
pub(crate) mod users;
pub(crate) mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

pub use conn::Conn;
use writer::Writer;

use super::{Queued, Rx, RxDb, StoreError, Tx, TxDb};

/// The writer's page cache unless told otherwise, in MiB (chatd's
/// `--store-cache-mib`; SQLite's own default is 2 MB). Every send touches
/// the newest leaf of its conversation's index, and with thousands of
/// conversations in use those leaves outgrow 2 MB: the writer then reads
/// pages back with a `pread` each, and a large group spills dirty pages to
/// the WAL before its commit, writing them twice. Filled only as pages are
/// used.
pub const DEFAULT_WRITER_CACHE_MIB: u64 = 64;

/// The store: a group-commit writer and a pool of readers over one file.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    readers: Arc<ReadPool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.readers.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it to
    /// the current schema, and starts its writer with a page cache of `writer_cache_mib` MiB
    /// (at least 1), filled as pages are used; readers keep SQLite's 2 MB
    /// each.
    pub fn open_with_cache(path: &Path, writer_cache_mib: u64) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        let kib = writer_cache_mib.clamp(1, 1 << 30) * 1024;
        conn.pragma_update(None, "cache_size", -i64::try_from(kib).unwrap_or(i64::MAX))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrations::migrate(&mut conn)?;
        // Checkpoints run on their own thread (see `writer::Options`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // When the WAL starts over, a file that a burst made longer than
        // this is cut back to it (otherwise it keeps its largest size).
        let restart = writer::RestartPolicy::default();
        conn.pragma_update(None, "journal_size_limit", restart.wal_bytes_kept())?;
        let indexed = fulltext::index_unindexed_text(&conn)?;
        if indexed > 0 {
            tracing::info!(
                messages = indexed,
                "indexed the text staged when chatd stopped"
            );
        }
        fulltext::prepare_text_staging(&conn)?;
        let options = writer::Options {
            before_commit: Some(Box::new(fulltext::index_staged_text_if_many)),
            checkpoint_in_background: Some(path.to_owned()),
            restart,
        };
        Ok(Store {
            writer: Writer::spawn_with(conn, options)?,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` in the next group commit; returns its result once committed.
    /// An `Err` from `f` rolls back what `f` wrote (and only that).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.writer.run(f, |_| {}).await
    }

    /// Like [`Store::write`], and runs `after_commit` right after the
    /// commit, on the `store-notify` thread, in commit order, before
    /// answering. The push path uses it so events leave in the order their
    /// cursors were assigned.
    pub async fn write_then<T, E, F, A>(&self, f: F, after_commit: A) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.writer.run(f, after_commit).await
    }

    /// Queues an item of a [`Batch`](crate::store::Batch) (a send) and
    /// returns once it is queued, with its result to come. Items queued one
    /// after another commit in that order; the writer runs each run of them
    /// in a group commit in one `Batch::run`, without a savepoint, so the
    /// run makes every check before its first write: if it fails after
    /// writing, the whole group commit is lost (every job in it fails as
    /// unavailable), so a late check must never fail on bad input.
    pub async fn queue_batch<B: crate::store::Batch>(
        &self,
        item: B::Item,
    ) -> Result<Queued<B::Output, B::Error>, B::Error> {
        self.writer.queue_batch::<B>(item).await
    }

    /// Moves the text of recent messages into the full-text index, which
    /// the writer otherwise does in batches (searches need not: they read
    /// what is not indexed yet themselves).
    pub async fn index_staged_text(&self) -> Result<(), StoreError> {
        self.write(|c| Ok::<_, StoreError>(fulltext::index_staged_text(conn(c)?)?))
            .await
    }

    /// Runs `f` on a read-only connection on a blocking thread.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Rx<'_>) -> Result<T, E> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = f(&Rx(RxDb::Sqlite(&conn)));
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|_| E::from(StoreError::Closed))?
    }

    /// Copies the whole database to `dest` with SQLite's online backup:
    /// one consistent snapshot, even while this or another process writes.
    /// `dest` must not exist.
    pub fn backup(source: &Path, dest: &Path) -> Result<(), StoreError> {
        if dest.exists() {
            return Err(StoreError::Migration(format!(
                "{} already exists",
                dest.display()
            )));
        }
        let src = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        src.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut dst = Connection::open(dest)?;
        {
            let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
            // All pages in one step: a single read transaction, so the copy
            // is one snapshot.
            backup.run_to_completion(i32::MAX, std::time::Duration::ZERO, None)?;
        }
        let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Migration(format!(
                "backup integrity check: {check}"
            )));
        }
        Ok(())
    }

    /// Waits for queued writes, moves staged text into the full-text index,
    /// stops the background checkpoints, then checkpoints the WAL into the
    /// main file (call it last, at shutdown).
    pub async fn close(&self) -> Result<(), StoreError> {
        self.index_staged_text().await?;
        self.writer.checkpoint().await
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Savepoint sub-journals and temp tables in memory: every job runs in
    // its own savepoint, and a temp file for each cost a sixth of the
    // writer's time.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(conn)
}

/// Plans that never depend on bound values (SQLite's query planner
/// stability guarantee). Since 3.47 the planner reads a bound `LIMIT ?`,
/// and a statement whose plan read a bound value is prepared again at every
/// execution: the fan-out's member query spent a seventh of the writer's
/// time per direct message in the parser, and every sync or history page
/// paid the same.
///
/// Also room for every statement a connection prepares: a direct message
/// alone runs over a dozen different ones on the writer, and rusqlite's
/// default cache holds 16.
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    const MAX_IDLE: usize = 8;

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A search builds a small index of its own in `temp` (see
        // `fulltext::search`): in memory, not in a temp file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        stable_plans(&conn)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < Self::MAX_IDLE {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
impl Store {
    /// For this backend's tests: a store with the default writer cache.
    pub(crate) fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_WRITER_CACHE_MIB)
    }

    /// For this backend's tests: [`Store::write`] with the connection.
    pub(crate) async fn write_sql<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        self.write(move |tx| f(conn(tx)?)).await
    }

    /// For this backend's tests: [`Store::read`] with the connection.
    pub(crate) async fn read_sql<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.read(move |rx| match rx.0 {
            RxDb::Sqlite(c) => f(c),
            RxDb::Postgres(_) => Err(StoreError::Config("not SQLite".into()).into()),
        })
        .await
    }
}

/// The connection of a transaction this backend opened.
pub(crate) fn conn<'t, 'c>(tx: &'t Tx<'c>) -> Result<&'t Conn<'c>, StoreError> {
    match &tx.0 {
        TxDb::Sqlite(c) => Ok(&**c),
        TxDb::Postgres(_) => Err(StoreError::Config(
            "a PostgreSQL transaction on the SQLite backend".into(),
        )),
    }
}

/// Maps a UNIQUE violation to `Conflict(what)`, anything else through.
pub(crate) fn conflict(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Conflict(what)
        }
        _ => StoreError::Sqlite(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Durability rests on these two: a commit returns once its WAL frames
    /// are on disk.
    #[tokio::test]
    async fn the_writer_commits_to_a_synced_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        let (synchronous, journal): (i64, String) = store
            .write_sql(|c| {
                let s = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let j = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                Ok::<_, StoreError>((s, j))
            })
            .await
            .unwrap();
        assert_eq!((synchronous, journal.as_str()), (2, "wal"), "FULL, WAL");
    }
}
