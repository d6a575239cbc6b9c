//! Group commit on PostgreSQL: the writes of one chatd, in the order they
//! were queued, a group at a time in one transaction.
//!
//! One thread per chatd (`store-writer-pg`) takes every job waiting (up to
//! [`MAX_BATCH`]), opens one transaction on a connection of its own, takes
//! the cluster-wide write lock ([`WRITE_LOCK`]), runs each job, commits,
//! and only then runs each job's `after_commit` and answers it, in queue
//! order. The connection's task runs on the thread's own current-thread
//! runtime, driven while the thread waits on a statement, so a statement
//! costs its round trip and no hand-off to the server's runtime and back
//! (what that changed: `bench/HISTORY.md`). So:
//!
//! - **Durable before answered**, and one WAL flush for the whole group.
//! - **Ordered**: jobs queued one after another commit in that order (a
//!   batch of sends gets its seqs in the order it was sent).
//! - **Deadlock-free by construction, across processes**: a write
//!   transaction takes `pg_advisory_xact_lock(WRITE_LOCK)` before any row
//!   lock, so write transactions of every chatd on the database run one at
//!   a time, and none waits for a row another holds while holding one it
//!   wants. Counters (`conversations.last_seq`, `users.inbox_cursor`) are
//!   read and bumped inside that transaction, so they stay gap-free.
//!
//! The price is that writes are serialized cluster-wide, as SQLite's are
//! on one machine: unrelated conversations wait for each other's group.
//! Reads never wait for it (they run on the pool, on their own snapshot).
//!
//! Each [`Store::write`](crate::store::Store::write) job runs inside a
//! savepoint, so its failure undoes only its own writes; a failed statement
//! aborts a PostgreSQL transaction until it rolls back to one. A send
//! ([`Guard::ChecksFirst`]) runs without: if it fails after writing, or a
//! statement of it fails, the group is lost and every job in it answers as
//! unavailable (the same contract as SQLite's writer).

use tokio::sync::mpsc;

use super::session::{Driver, Prepared, Tx as SessionTx};
use super::{Backend, Session};
use crate::store::job::{Finish, Guard, Job};
use crate::store::{Queued, StoreError, Tx, TxDb};

/// Jobs in one group at most.
const MAX_BATCH: usize = 512;

/// Jobs waiting for the writer at most; a caller past it waits to queue.
const QUEUE: usize = 4096;

/// The advisory lock every write transaction takes first (an arbitrary
/// 64-bit key: "mqchat:w").
const WRITE_LOCK: i64 = 0x6d71_6368_6174_3a77;

trait Work: Send {
    /// Runs the job; returns how to finish it and whether the group's
    /// transaction is still sound.
    fn run(self: Box<Self>, s: &Session<'_>) -> (Box<dyn Finish>, bool);
    /// The job did not run, or its group did not commit.
    fn abort(self: Box<Self>, error: &str);
}

impl<F, A, T, E> Work for Job<F, A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    fn run(self: Box<Self>, s: &Session<'_>) -> (Box<dyn Finish>, bool) {
        (*self).run_with(|guard, f| match guard {
            Guard::Savepoint => in_savepoint(s, f),
            Guard::ChecksFirst => checks_first(s, f),
        })
    }

    fn abort(self: Box<Self>, error: &str) {
        (*self).abort(error);
    }
}

fn in_savepoint<T, E: From<StoreError>>(
    s: &Session<'_>,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> (Result<T, E>, bool) {
    if let Err(e) = s.execute("SAVEPOINT job", &[]) {
        return (Err(E::from(e)), false);
    }
    match f(&Tx(TxDb::Postgres(s))) {
        Ok(v) => match s.execute("RELEASE SAVEPOINT job", &[]) {
            Ok(_) => (Ok(v), true),
            Err(e) => (Err(E::from(e)), false),
        },
        Err(e) => {
            let sound = s.execute("ROLLBACK TO SAVEPOINT job", &[]).is_ok()
                && s.execute("RELEASE SAVEPOINT job", &[]).is_ok();
            (Err(e), sound)
        }
    }
}

/// The group stays sound if `f` succeeded with no statement failing, or
/// failed having run nothing that writes or fails.
fn checks_first<T, E>(
    s: &Session<'_>,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> (Result<T, E>, bool) {
    let before = s.marks();
    let result = f(&Tx(TxDb::Postgres(s)));
    let (failures, writes) = s.marks();
    let sound = failures == before.0 && (result.is_ok() || writes == before.1);
    (result, sound)
}

/// Handle to the writer task.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Work>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread, with a connection of its own.
    pub(crate) fn spawn(backend: &Backend) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let config = std::sync::Arc::clone(&backend.config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("writer runtime: {e}")))?;
        std::thread::Builder::new()
            .name("store-writer-pg".into())
            .spawn(move || run(&runtime, &config, rx))
            .map_err(|e| StoreError::Config(format!("spawn the writer: {e}")))?;
        Ok(Writer { tx })
    }

    /// Queues a job; returns once it is in the queue, with its answer to
    /// come.
    pub(crate) async fn queue<T, E, F, A>(
        &self,
        guard: Guard,
        f: F,
        after_commit: A,
    ) -> Result<Queued<T, E>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (job, answer) = Job::new(guard, f, after_commit);
        self.tx
            .send(Box::new(job))
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        Ok(answer)
    }
}

/// The writer's connection: its client, and the statements prepared on it.
struct Connection {
    client: tokio_postgres::Client,
    prepared: Prepared,
}

/// Opens the writer's connection, its task on the writer's runtime (run
/// whenever the writer waits on a statement).
fn connect(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
) -> Result<Connection, StoreError> {
    let (client, connection) = runtime.block_on(config.connect(tokio_postgres::NoTls))?;
    runtime.spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres: the writer's connection closed");
        }
    });
    Ok(Connection {
        client,
        prepared: Prepared::default(),
    })
}

fn run(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    mut rx: mpsc::Receiver<Box<dyn Work>>,
) {
    let mut connection: Option<Connection> = None;
    let mut batch: Vec<Box<dyn Work>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let jobs = std::mem::take(&mut batch);
        let size = jobs.len();
        let started = std::time::Instant::now();
        // A connection the server closed (a restart) is replaced here, at
        // the next group; until the database answers, groups fail at once.
        if connection.as_ref().is_none_or(|c| c.client.is_closed()) {
            connection = match connect(runtime, config) {
                Ok(c) => Some(c),
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, size, "postgres: the writer can not connect");
                    metrics::counter!(crate::metrics::STORE_COMMIT_FAILURES_TOTAL).increment(1);
                    for job in jobs {
                        job.abort(&msg);
                    }
                    continue;
                }
            };
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        let (finishes, outcome) = commit_group(runtime, conn, jobs);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, size, "postgres: write group failed");
            metrics::counter!(crate::metrics::STORE_COMMIT_FAILURES_TOTAL).increment(1);
        }
        metrics::histogram!(crate::metrics::STORE_COMMIT_JOBS).record(size as f64);
        metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        let commit = outcome.as_ref().map(|_| ()).map_err(String::as_str);
        for finish in finishes {
            finish.finish(commit);
        }
    }
}

/// Runs a group in one transaction on the writer's connection; returns the
/// finished jobs and whether the group committed.
fn commit_group(
    runtime: &tokio::runtime::Runtime,
    conn: &mut Connection,
    jobs: Vec<Box<dyn Work>>,
) -> (Vec<Box<dyn Finish>>, Result<(), String>) {
    let Connection { client, prepared } = conn;
    let tx = match runtime.block_on(client.transaction()) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = StoreError::from(e).to_string();
            for job in jobs {
                job.abort(&msg);
            }
            return (Vec::new(), Err(msg));
        }
    };
    let session = Session::over(Driver::Runtime(runtime), SessionTx::Own(&tx, prepared));
    let mut finishes: Vec<Box<dyn Finish>> = Vec::with_capacity(jobs.len());
    let mut outcome = session
        .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .map(drop)
        .map_err(|e| e.to_string());
    let mut jobs = jobs.into_iter();
    if outcome.is_ok() {
        for job in jobs.by_ref() {
            let (finish, sound) = job.run(&session);
            finishes.push(finish);
            if !sound {
                outcome = Err("the transaction was rolled back after a storage error".to_owned());
                break;
            }
        }
    }
    let msg = match outcome {
        Ok(()) => match runtime.block_on(tx.commit()) {
            Ok(()) => return (finishes, Ok(())),
            Err(e) => StoreError::from(e).to_string(),
        },
        Err(msg) => {
            if let Err(e) = runtime.block_on(tx.rollback()) {
                tracing::warn!(error = %e, "postgres: rollback failed");
            }
            msg
        }
    };
    for job in jobs {
        job.abort(&msg);
    }
    (finishes, Err(msg))
}
