//! Storage: the only module that knows SQL, drawn as operations.
//!
//! The domain sees three things here:
//!
//! - **Operations**, one module per area ([`users`], [`sessions`],
//!   [`services`], [`social`], [`groups`], [`messages`], [`files`],
//!   [`webhooks`], [`mqtt`], [`reactions`], [`pins`], [`settings`], [`expiry`]): plain functions over a handle, declared with
//!   `operations!`, each `read` or `write`, with the row types they return.
//!   Each backend implements every operation with the same signature (the
//!   macro's dispatch does not compile otherwise); what an operation
//!   promises is written on it here, how a backend keeps the promise in the
//!   backend's module.
//! - **Handles**: [`Tx`], a write transaction, and [`Rx`], a read snapshot.
//!   `read` operations take either (`&impl Read`); `write` operations only
//!   a [`Tx`]. The domain's rules are closures over a handle, written once:
//!   they make their checks and writes through operations, and never see
//!   a connection.
//! - **[`Store`]**: runs those closures, [`Store::write`] in a transaction
//!   that commits before the caller is answered, [`Store::read`] on a read
//!   connection.
//!
//! Two backends: SQLite (the `sqlite` module, the default: one writer
//! thread committing in groups, readers on blocking threads, one machine)
//! and PostgreSQL ([`postgres`], which several chatd processes share: a
//! group-commit writer per process whose sends lock only their own
//! conversations and users ([`Scope`]), reads from a pool).

mod error;
pub mod expiry;
pub mod files;
pub mod groups;
mod job;
pub mod messages;
pub mod mqtt;
pub mod pins;
pub mod postgres;
pub mod reactions;
pub mod replies;
pub mod services;
pub mod sessions;
pub mod settings;
pub mod social;
pub(crate) mod sqlite;
pub mod users;
pub mod webhooks;

use std::path::Path;

pub use error::StoreError;
pub use sqlite::DEFAULT_WRITER_CACHE_MIB;

use tokio::sync::oneshot;

/// A write transaction: what [`Store::write`] and its siblings hand their
/// closure. `write` operations take it; it also reads ([`Read`]), seeing
/// its own writes.
pub struct Tx<'c>(pub(crate) TxDb<'c>);

pub(crate) enum TxDb<'c> {
    Sqlite(Box<sqlite::Conn<'c>>),
    Postgres(&'c postgres::Session<'c>),
}

/// A read-only snapshot: what [`Store::read`] hands its closure.
#[derive(Clone, Copy)]
pub struct Rx<'c>(pub(crate) RxDb<'c>);

#[derive(Clone, Copy)]
pub(crate) enum RxDb<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c postgres::Session<'c>),
}

/// Either handle, for `read` operations and for domain checks that run
/// both inside a write and on their own.
pub trait Read {
    fn rx(&self) -> Rx<'_>;
}

impl Read for Rx<'_> {
    fn rx(&self) -> Rx<'_> {
        *self
    }
}

impl Read for Tx<'_> {
    fn rx(&self) -> Rx<'_> {
        match &self.0 {
            TxDb::Sqlite(c) => Rx(RxDb::Sqlite(c)),
            TxDb::Postgres(s) => Rx(RxDb::Postgres(s)),
        }
    }
}

/// Declares an area's operations: for each, a function over a handle that
/// calls the backend's function of the same name and arguments
/// (`sqlite::<area>::<name>`, `postgres::<area>::<name>`). `read` operations take `&impl Read`,
/// `write` operations `&Tx`.
macro_rules! operations {
    (
        $area:ident;
        $(
            $(#[$meta:meta])*
            $kind:ident fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;
        )*
    ) => {
        $( $crate::store::operations!(@op $area $kind [$(#[$meta])*] $name ($($arg: $ty),*) $ret); )*
    };
    (@op $area:ident read [$($meta:tt)*] $name:ident ($($arg:ident: $ty:ty),*) $ret:ty) => {
        $($meta)*
        pub fn $name(
            c: &impl $crate::store::Read,
            $($arg: $ty),*
        ) -> Result<$ret, $crate::store::StoreError> {
            match c.rx().0 {
                $crate::store::RxDb::Sqlite(c) => $crate::store::sqlite::$area::$name(c, $($arg),*),
                $crate::store::RxDb::Postgres(s) => $crate::store::postgres::$area::$name(s, $($arg),*),
            }
        }
    };
    (@op $area:ident write [$($meta:tt)*] $name:ident ($($arg:ident: $ty:ty),*) $ret:ty) => {
        $($meta)*
        pub fn $name(
            c: &$crate::store::Tx<'_>,
            $($arg: $ty),*
        ) -> Result<$ret, $crate::store::StoreError> {
            match &c.0 {
                $crate::store::TxDb::Sqlite(c) => $crate::store::sqlite::$area::$name(c, $($arg),*),
                $crate::store::TxDb::Postgres(s) => $crate::store::postgres::$area::$name(s, $($arg),*),
            }
        }
    };
}
pub(crate) use operations;

/// A token bucket's shape: `burst` tokens, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_sec: f64,
    pub burst: u32,
}

/// The store: runs the domain's closures in transactions on its backend.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::Store),
    Postgres {
        db: postgres::Backend,
        writer: postgres::Writer,
    },
}

/// The conversation a send writes to, named when the send is queued,
/// before its closure runs. The PostgreSQL writer locks every conversation
/// of a group of sends, and every user whose inbox cursor they will
/// allocate, up front and in one order, so that sends to unrelated
/// conversations commit at once on every node while no two transactions
/// ever wait for each other in a cycle (`store/postgres/writer.rs`).
/// SQLite, with one writer, has nothing to lock and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A direct message from `sender` to `peer` (the same user: notes to
    /// self).
    Direct { sender: u64, peer: u64 },
    /// A message from `sender` to the group `group`.
    Group { sender: u64, group: u64 },
}

/// A kind of write the writers may run many at a time, each item as data
/// (sends): [`Store::queue_batch`] queues one item, and a writer hands each
/// run of items of a kind queued one after another in a group commit, in
/// queue order, to one [`Batch::run`]. On PostgreSQL that stores them with
/// a few set-based statements instead of a few round trips each; on SQLite
/// (where a statement costs no round trip) the items still run one after
/// another, and the run pays once what they share.
///
/// `run` makes every check that bad input can fail before its first write,
/// as a send always has (it runs without a savepoint): an item whose checks
/// fail writes nothing and fails alone. Its `Err` (a storage fault, or a
/// statement that failed) fails every item of the run, and the whole group
/// if anything was written.
pub trait Batch: 'static {
    /// What one queued item carries.
    type Item: Send + 'static;
    /// One item's answer.
    type Output: Send + 'static;
    type Error: From<StoreError> + std::fmt::Display + Send + 'static;

    /// Runs `items` in the order they were queued, in one transaction;
    /// returns one result per item, in that order.
    fn run(c: &Tx<'_>, items: Vec<Self::Item>) -> Answers<Self::Output, Self::Error>;

    /// Runs once the item's group has committed, in commit order, before
    /// the item's caller is answered.
    fn after_commit(output: &Self::Output);
}

/// What [`Batch::run`] returns: one answer per item, or the run's failure.
pub type Answers<T, E> = Result<Vec<Result<T, E>>, E>;

/// A write queued by [`Store::queue_batch`]: resolves to its result once
/// its group has committed (or failed).
#[derive(Debug)]
pub struct Queued<T, E>(pub(crate) oneshot::Receiver<Result<T, E>>);

impl<T, E: From<StoreError>> std::future::Future for Queued<T, E> {
    type Output = Result<T, E>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(E::from(StoreError::Closed))))
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and
    /// migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_WRITER_CACHE_MIB)
    }

    /// [`Store::open`] with a writer page cache of `writer_cache_mib` MiB.
    pub fn open_with_cache(path: &Path, writer_cache_mib: u64) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Store::open_with_cache(path, writer_cache_mib)?),
        })
    }

    /// Connects to the PostgreSQL database at `url` and migrates it to the
    /// current schema (under an advisory lock: nodes starting together
    /// don't race), then starts this process's group-commit writer.
    pub async fn connect_postgres(
        url: &str,
        options: &postgres::Options,
    ) -> Result<Store, StoreError> {
        let db = postgres::Backend::connect(url, options).await?;
        let writer = postgres::Writer::spawn(&db)?;
        Ok(Store {
            backend: Backend::Postgres { db, writer },
        })
    }

    /// Runs `f` in a transaction; returns its result once committed. An
    /// `Err` from `f` rolls back what `f` wrote (and only that).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.write_then(f, |_| {}).await
    }

    /// Like [`Store::write`], and runs `after_commit` right after the
    /// commit, in commit order, before answering. The push path uses it so
    /// events leave in the order their cursors were assigned.
    pub async fn write_then<T, E, F, A>(&self, f: F, after_commit: A) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.write_then(f, after_commit).await,
            Backend::Postgres { writer, .. } => writer.queue(f, after_commit).await?.await,
        }
    }

    /// Queues one item of a [`Batch`] (a send) and returns once it is
    /// queued, with its result to come: the writer may run it together
    /// with the items of the same kind queued around it (both writers run
    /// each run of such items queued one after another in a group commit
    /// in one [`Batch::run`]). Items queued one after another commit in
    /// that order.
    /// `scope` names the one conversation the item may write to (and so
    /// the rows the PostgreSQL writer locks for it, see [`Scope`]); the
    /// item must write nowhere else.
    pub async fn queue_batch<B: Batch>(
        &self,
        scope: Scope,
        item: B::Item,
    ) -> Result<Queued<B::Output, B::Error>, B::Error> {
        match &self.backend {
            Backend::Sqlite(s) => s.queue_batch::<B>(item).await,
            Backend::Postgres { writer, .. } => writer.queue_batch::<B>(scope, item).await,
        }
    }

    /// Runs `f` on a read-only snapshot, off the async threads.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Rx<'_>) -> Result<T, E> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.read(f).await,
            Backend::Postgres { db, .. } => {
                db.run(postgres::Mode::Read, move |s| f(&Rx(RxDb::Postgres(s))))
                    .await
            }
        }
    }

    /// True when other chatd processes may share this store (PostgreSQL),
    /// so what must hold across them (limits that protect accounts) has to
    /// live here rather than in one process's memory.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// Takes `cost` tokens from the bucket of `key` that every process on
    /// this store shares: `None` if granted, else how long until they would
    /// be. One statement on a pooled connection, never queued behind the
    /// writer. Only a shared store keeps buckets ([`Store::is_shared`]); a
    /// single process keeps its own in memory, and here gets
    /// [`StoreError::Config`].
    pub async fn take_shared(
        &self,
        key: &str,
        bucket: Bucket,
        cost: u32,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        match &self.backend {
            Backend::Postgres { db, .. } => postgres::limits::take(db, key, bucket, cost).await,
            Backend::Sqlite(_) => Err(StoreError::Config(
                "shared rate limits need a shared store".into(),
            )),
        }
    }

    /// Forgets up to `limit` shared buckets that are full again; returns
    /// how many (none on a store that keeps none).
    pub async fn forget_full_buckets(&self, limit: usize) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Postgres { db, .. } => postgres::limits::forget_full(db, limit).await,
            Backend::Sqlite(_) => Ok(0),
        }
    }

    /// Up to `limit` webhook deliveries due at `now`, oldest first, for
    /// this process to attempt. On a shared store they are leased to
    /// `owner` until `lease_until` (ms): no other process gets them until
    /// they are recorded ([`webhooks::delivered`], [`webhooks::failed`])
    /// or the lease passes. Claimed with one statement on a pooled
    /// connection, skipping rows another process is claiming. A single
    /// process needs no lease: there, [`webhooks::due`].
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<webhooks::DeliveryRow>, StoreError> {
        match &self.backend {
            Backend::Postgres { db, .. } => {
                postgres::webhooks::claim(db, owner, now, lease_until, limit).await
            }
            Backend::Sqlite(_) => self.read(move |c| webhooks::due(c, now, limit)).await,
        }
    }

    /// Copies the SQLite database at `source` to `dest` (which must not
    /// exist) as one consistent snapshot, even while another process
    /// writes.
    pub fn backup(source: &Path, dest: &Path) -> Result<(), StoreError> {
        sqlite::Store::backup(source, dest)
    }

    /// Waits for queued writes and leaves the database tidy for the next
    /// start (call it last, at shutdown).
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            // Every write answered has committed; the pool closes its
            // connections when dropped.
            Backend::Postgres { .. } => Ok(()),
        }
    }
}
