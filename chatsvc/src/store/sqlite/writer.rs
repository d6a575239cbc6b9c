//! The single writer thread and its group commit.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::conn::Conn;
use crate::store::job::{Batched, Finish, Job};
use crate::store::{Batch, Queued, StoreError, Tx, TxDb};

/// Most jobs in one transaction; bounds commit latency under load.
const MAX_BATCH: usize = 512;

/// A unit of work for the writer: run inside the group's transaction, then
/// learn whether the COMMIT succeeded. A closure ([`Job`]), or items of a
/// [`Batch`] (sends), of which a run queued one after another runs as one.
trait Work: Any + Send {
    /// Runs the job (a closure in its own savepoint, a run of batch items
    /// without one, see [`Job`]), adding
    /// how to finish it (each of its items) to `finishes`; returns whether
    /// the group's transaction is still sound (see [`in_savepoint`]).
    fn run(
        self: Box<Self>,
        conn: &Connection,
        tx: &Tx<'_>,
        finishes: &mut Vec<Box<dyn Finish>>,
    ) -> bool;
    /// The job did not run (BEGIN failed, or the group was lost before its
    /// turn): answer with the error.
    fn abort(self: Box<Self>, error: &str);
    /// Takes `next`, queued right after this job, into it when both are
    /// items of one [`Batch`] kind, to run as one; gives it back otherwise.
    fn absorb(&mut self, next: Box<dyn Work>) -> Option<Box<dyn Work>> {
        Some(next)
    }
}

enum Msg {
    Job(Box<dyn Work>),
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
}

impl<F, A, T, E> Work for Job<F, A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    fn run(
        self: Box<Self>,
        conn: &Connection,
        tx: &Tx<'_>,
        finishes: &mut Vec<Box<dyn Finish>>,
    ) -> bool {
        let (finish, sound) = (*self).run_with(|f| in_savepoint(conn, tx, f));
        finishes.push(finish);
        sound
    }

    fn abort(self: Box<Self>, error: &str) {
        (*self).abort(error);
    }
}

/// Every item of a run runs in one [`Batch::run`], which makes its checks
/// before it writes ([`checks_first`]): an item that fails its checks
/// fails alone, a failed run loses the group if it wrote. What the run
/// shares (the statements read once for all its items, the allocations)
/// is paid once per run rather than per send.
impl<B: Batch> Work for Batched<B> {
    fn run(
        self: Box<Self>,
        conn: &Connection,
        tx: &Tx<'_>,
        finishes: &mut Vec<Box<dyn Finish>>,
    ) -> bool {
        let (done, sound) = (*self).run_with(|items| checks_first(conn, tx, |c| B::run(c, items)));
        finishes.extend(done);
        sound
    }

    fn abort(self: Box<Self>, error: &str) {
        (*self).abort(error);
    }

    fn absorb(&mut self, next: Box<dyn Work>) -> Option<Box<dyn Work>> {
        if (*next).type_id() != TypeId::of::<Self>() {
            return Some(next);
        }
        let next: Box<dyn Any> = next;
        // Always a match (its type was just compared); a job that could
        // not be taken would answer as closed.
        if let Ok(next) = next.downcast::<Self>() {
            self.append(*next);
        }
        None
    }
}

/// A group's jobs once its COMMIT succeeded or failed, finished (after-commit
/// work such as pushes, then the replies) on the `store-notify` thread, in
/// commit order, while the writer goes on with the next group.
struct Finished {
    finishes: Vec<Box<dyn Finish>>,
    outcome: Result<(), String>,
}

impl Finished {
    fn run(self) {
        for finish in self.finishes {
            finish.finish(self.outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

/// Runs in every group's transaction after its jobs, before COMMIT, outside
/// any job's savepoint (e.g. moving what the jobs staged into an index that
/// is expensive to touch inside savepoints). An error loses the group.
pub(super) type BeforeCommit = Box<BeforeCommitFn>;
pub(super) type BeforeCommitFn = dyn Fn(&Connection) -> rusqlite::Result<()> + Send;

/// How the writer runs, beyond its connection.
#[derive(Default)]
pub(super) struct Options {
    pub before_commit: Option<BeforeCommit>,
    /// Checkpoint the WAL from a thread of its own, with its own connection
    /// to this database file, instead of in the writer's commits (set
    /// `wal_autocheckpoint` to 0 on the writer's connection).
    pub checkpoint_in_background: Option<std::path::PathBuf>,
    /// When the writer makes a long WAL start over (with a background
    /// checkpointer only).
    pub restart: RestartPolicy,
}

/// How often the background checkpointer runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// When the writer makes the WAL start over (see [`WalRestart`]).
///
/// Each restart stalls the writer for a few milliseconds (it copies what
/// the background checkpointer has not copied yet, then fsyncs the
/// database), and every send queued meanwhile waits. Restarting past a
/// fixed number of frames would stall it more often the faster sends come,
/// so the stalls would land in the tail latency exactly under load.
/// Restarting about once a second bounds the stalls per second whatever
/// the rate, for a WAL whose length follows the write rate, capped by
/// `max_frames`.
#[derive(Clone, Copy, Debug)]
pub(super) struct RestartPolicy {
    /// Below this many frames the WAL is left alone: the background
    /// checkpointer lets it start over by itself whenever the writer pauses.
    pub min_frames: i64,
    /// Past `min_frames`, restart at most this often...
    pub min_interval: std::time::Duration,
    /// ...unless the WAL has this many frames.
    pub max_frames: i64,
}

impl Default for RestartPolicy {
    /// 4,096 to 65,536 frames (16 to 256 MiB of 4 KiB pages), about once a
    /// second.
    fn default() -> RestartPolicy {
        RestartPolicy {
            min_frames: 4096,
            min_interval: std::time::Duration::from_secs(1),
            max_frames: 65_536,
        }
    }
}

impl RestartPolicy {
    /// Whether a WAL of `frames` frames, `since` the last restart asked
    /// for, should start over now.
    fn due(&self, frames: i64, since: std::time::Duration) -> bool {
        frames >= self.max_frames || (frames >= self.min_frames && since >= self.min_interval)
    }

    /// What `journal_size_limit` should keep at least, so that a WAL grown
    /// to the cap is not cut back and grown again every cycle (growing the
    /// file costs far more than overwriting it): the cap, plus what arrives
    /// before the writer gets to restart (up to two checkpoint passes at
    /// ~100,000 frames/s), in bytes of frames (a 4 KiB page and a 24-byte
    /// header each).
    pub(super) fn wal_bytes_kept(&self) -> i64 {
        (self.max_frames + 40_000) * (4096 + 24)
    }
}

impl Writer {
    #[cfg(test)]
    pub(super) fn spawn(conn: Connection) -> Result<Writer, StoreError> {
        Writer::spawn_with(conn, Options::default())
    }

    pub(super) fn spawn_with(conn: Connection, options: Options) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Msg>(4096);
        let mut background = None;
        if let Some(path) = options.checkpoint_in_background {
            let policy = options.restart;
            let checkpointer = Connection::open(&path)?;
            checkpointer.busy_timeout(std::time::Duration::from_millis(100))?;
            let stopped = Arc::new(AtomicBool::new(false));
            let restart = WalRestart::default();
            let (flag, wanted) = (stopped.clone(), restart.clone());
            let thread = std::thread::Builder::new()
                .name("store-checkpoint".into())
                .spawn(move || checkpoint_loop(checkpointer, &flag, &wanted, policy))
                .map_err(|e| StoreError::Migration(format!("spawn checkpointer: {e}")))?;
            background = Some(Checkpointer {
                stopped,
                restart,
                thread,
            });
        }
        let (notify, finished) = std::sync::mpsc::channel::<Finished>();
        std::thread::Builder::new()
            .name("store-notify".into())
            .spawn(move || {
                for group in finished {
                    group.run();
                }
            })
            .map_err(|e| StoreError::Migration(format!("spawn notifier: {e}")))?;
        let before_commit = options.before_commit;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, before_commit.as_deref(), background, &notify))
            .map_err(|e| StoreError::Migration(format!("spawn writer: {e}")))?;
        Ok(Writer { tx })
    }

    pub(super) async fn run<T, E, F, A>(&self, f: F, after_commit: A) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.queue(f, after_commit).await?.await
    }

    /// Puts a job on the writer's queue and returns once it is there, with
    /// its answer to come: jobs queued one after another run (and commit)
    /// in that order, so a caller can queue the next before the first
    /// commits.
    pub(super) async fn queue<T, E, F, A>(&self, f: F, after_commit: A) -> Result<Queued<T, E>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (job, answer) = Job::new(f, after_commit);
        self.tx
            .send(Msg::Job(Box::new(job)))
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        Ok(answer)
    }

    /// Queues an item of a [`Batch`] (a send): the writer runs it with the
    /// items of the same kind queued right before and after it, in one
    /// [`Batch::run`] (see [`commit_group`]).
    pub(super) async fn queue_batch<B: Batch>(
        &self,
        item: B::Item,
    ) -> Result<Queued<B::Output, B::Error>, B::Error> {
        let (job, answer) = Batched::<B>::new(item);
        self.tx
            .send(Msg::Job(Box::new(job)))
            .await
            .map_err(|_| B::Error::from(StoreError::Closed))?;
        Ok(answer)
    }

    /// Checkpoints the WAL (after every job queued before it).
    pub(super) async fn checkpoint(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Runs `f` inside `SAVEPOINT job`, so an `Err` undoes only what `f` wrote.
///
/// Also returns whether the group's transaction is still sound. It is not
/// when SQLite rolled the whole transaction back by itself (it may on
/// `SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_BUSY`, `SQLITE_NOMEM`) or when the
/// savepoint could not be undone or released: then nothing of the group may be
/// committed, and no later job may run outside the group (a `SAVEPOINT` in
/// autocommit mode starts, and its `RELEASE` commits, a transaction of its own).
/// `f`'s own error is kept either way: it says what went wrong.
fn in_savepoint<T, E: From<StoreError>>(
    conn: &Connection,
    tx: &Tx<'_>,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> (Result<T, E>, bool) {
    // Cached statements: preparing these two for every job showed up.
    let savepoint = conn
        .prepare_cached("SAVEPOINT job")
        .and_then(|mut s| s.execute([]));
    if let Err(e) = savepoint {
        return (Err(E::from(StoreError::from(e))), !conn.is_autocommit());
    }
    match f(tx) {
        Ok(v) => match conn
            .prepare_cached("RELEASE job")
            .and_then(|mut s| s.execute([]))
        {
            Ok(_) => (Ok(v), !conn.is_autocommit()),
            Err(e) => (Err(E::from(StoreError::from(e))), false),
        },
        Err(e) => {
            let sound =
                !conn.is_autocommit() && conn.execute_batch("ROLLBACK TO job; RELEASE job").is_ok();
            (Err(e), sound)
        }
    }
}

/// Runs `f` with no savepoint (a run of batch items, see [`Job`]). The group stays
/// sound if `f` succeeded, or failed having changed no row.
fn checks_first<T, E>(
    conn: &Connection,
    tx: &Tx<'_>,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> (Result<T, E>, bool) {
    let before = conn.total_changes();
    let result = f(tx);
    let sound = !conn.is_autocommit() && (result.is_ok() || conn.total_changes() == before);
    (result, sound)
}

/// The background checkpointer, stopped before the writer's final
/// checkpoint (two checkpoints at once make the second a silent no-op).
struct Checkpointer {
    stopped: Arc<AtomicBool>,
    restart: WalRestart,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn stop(self) {
        self.stopped.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Set by the background checkpointer when the WAL has grown long; the
/// writer then makes it start over.
///
/// The WAL only starts over from its beginning when a write transaction
/// begins with every frame already copied into the database. A checkpointer
/// on another thread never sees that under steady load: the writer appends
/// new frames while it copies. Without this, the WAL grows with no bound
/// but the disk, and appending to new parts of the file costs the writer
/// far more than overwriting cached ones (the kernel zeroes every new
/// page-cache page). So when [`RestartPolicy`] says so, the writer runs a
/// PASSIVE checkpoint itself, between two groups: it only copies what the
/// background thread has not copied yet, and the next group's first write
/// rewinds the WAL, whose pages are still cached.
#[derive(Clone, Default)]
struct WalRestart(Arc<AtomicBool>);

impl WalRestart {
    fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Called by the writer between groups.
    fn run_if_requested(&self, conn: &Connection) {
        if !self.0.swap(false, Ordering::AcqRel) {
            return;
        }
        let started = std::time::Instant::now();
        // (busy, frames in the WAL, frames copied). Busy, or not all copied
        // (a reader still needs old frames): ask again after the next group.
        let done = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok(r.get::<_, i64>(0)? == 0 && r.get::<_, i64>(1)? == r.get::<_, i64>(2)?)
            })
            .unwrap_or(false);
        metrics::histogram!(crate::metrics::STORE_WAL_REWIND_SECONDS)
            .record(started.elapsed().as_secs_f64());
        if !done {
            self.request();
        }
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`, which reports "busy" as a result row,
/// not as an error: retried a few times, then reported.
fn checkpoint_truncate(conn: &Connection) -> Result<(), StoreError> {
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(StoreError::CommitFailed(
        "the WAL checkpoint stayed busy".into(),
    ))
}

/// Copies the WAL back into the database while the writer goes on
/// (PASSIVE: never waits for readers or the writer). The WAL then restarts
/// from its beginning at the writer's next transaction, so it stays bounded
/// (see [`RestartPolicy`]).
fn checkpoint_loop(
    conn: Connection,
    stopped: &AtomicBool,
    restart: &WalRestart,
    policy: RestartPolicy,
) {
    let mut failing = false;
    let mut catching_up = false;
    let mut last_restart = std::time::Instant::now();
    while !stopped.load(Ordering::Acquire) {
        if !catching_up {
            std::thread::sleep(CHECKPOINT_EVERY);
        }
        // Returns (busy, frames in the WAL, frames copied).
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => {
                failing = false;
                metrics::gauge!(crate::metrics::STORE_WAL_FRAMES).set(frames as f64);
                let due = policy.due(frames, last_restart.elapsed());
                // Before asking the writer, copy at once what came in during
                // this pass: the writer stalls for whatever is left to copy.
                if due && !catching_up {
                    catching_up = true;
                    continue;
                }
                catching_up = false;
                if due {
                    restart.request();
                    last_restart = std::time::Instant::now();
                }
            }
            // Busy or a storage fault: the writer reports those; say it once.
            Err(e) => {
                catching_up = false;
                if !failing {
                    failing = true;
                    warn!(error = %e, "background checkpoint failed; retrying");
                }
            }
        }
    }
}

// Never inlined: `bench/examples/writer_cost` counts the instructions under
// this symbol.
#[inline(never)]
fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    before_commit: Option<&BeforeCommitFn>,
    mut background: Option<Checkpointer>,
    notify: &std::sync::mpsc::Sender<Finished>,
) {
    let jobs = Tx(TxDb::Sqlite(Box::new(Conn::new(&conn))));
    let mut batch: Vec<Box<dyn Work>> = Vec::with_capacity(MAX_BATCH);
    let mut pending: Option<Msg> = None;
    loop {
        let first = match pending.take() {
            Some(m) => m,
            None => match rx.blocking_recv() {
                Some(m) => m,
                None => break,
            },
        };
        match first {
            Msg::Checkpoint(reply) => {
                if let Some(c) = background.take() {
                    c.stop();
                }
                let _ = reply.send(checkpoint_truncate(&conn));
                continue;
            }
            Msg::Job(job) => batch.push(job),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(other) => {
                    pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let finished = commit_group(&conn, &jobs, &mut batch, before_commit);
        if let Err(std::sync::mpsc::SendError(finished)) = notify.send(finished) {
            finished.run();
        }
        if let Some(c) = &background {
            c.restart.run_if_requested(&conn);
        }
    }
    // Every handle is gone. Leave the WAL checkpointed.
    if let Some(c) = background.take() {
        c.stop();
    }
    if let Err(e) = checkpoint_truncate(&conn) {
        warn!(error = %e, "final checkpoint failed");
    }
}

fn commit_group(
    conn: &Connection,
    tx: &Tx<'_>,
    batch: &mut Vec<Box<dyn Work>>,
    before_commit: Option<&BeforeCommitFn>,
) -> Finished {
    let started = std::time::Instant::now();
    let size = batch.len();
    // A failed ROLLBACK can leave a transaction open; the next BEGIN would
    // then fail forever ("cannot start a transaction within a transaction").
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            error!(error = %e, "rolling back a transaction left open failed");
        }
    }
    // With `busy_timeout`, SQLite itself retries the write lock held by
    // another connection (a backup, an operator's sqlite3 shell) before
    // giving up with SQLITE_BUSY.
    let begin = conn
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]));
    if let Err(e) = begin {
        let msg = e.to_string();
        error!(error = %msg, size, "begin failed");
        metrics::counter!(crate::metrics::STORE_COMMIT_FAILURES_TOTAL).increment(1);
        for job in batch.drain(..) {
            job.abort(&msg);
        }
        return Finished {
            finishes: Vec::new(),
            outcome: Err(msg),
        };
    }
    let mut finishes: Vec<Box<dyn Finish>> = Vec::with_capacity(size);
    let mut jobs = batch.drain(..);
    let mut lost = false;
    // The job after the one running, taken from the queue to see whether
    // it joins it (consecutive items of one batch kind run as one).
    let mut next = jobs.next();
    while let Some(mut job) = next.take() {
        next = jobs.next();
        while let Some(candidate) = next.take() {
            match job.absorb(candidate) {
                None => next = jobs.next(),
                Some(other) => {
                    next = Some(other);
                    break;
                }
            }
        }
        if !job.run(conn, tx, &mut finishes) {
            lost = true;
            break;
        }
    }
    let outcome = if lost {
        Err("the transaction was rolled back after a storage error".to_owned())
    } else {
        before_commit
            .map_or(Ok(()), |f| f(conn))
            .and_then(|()| {
                conn.prepare_cached("COMMIT")
                    .and_then(|mut s| s.execute([]))
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    if let Err(e) = &outcome {
        warn!(error = %e, size, "commit failed, rolling back");
        metrics::counter!(crate::metrics::STORE_COMMIT_FAILURES_TOTAL).increment(1);
        if !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                error!(error = %e, "rollback failed");
            }
        }
        for job in next.into_iter().chain(jobs) {
            job.abort(e);
        }
    }
    metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS)
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!(crate::metrics::STORE_COMMIT_JOBS).record(size as f64);
    Finished { finishes, outcome }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use rusqlite::Connection;
    use tokio::task::JoinHandle;

    use super::super::conn as conn_of;
    use super::{Tx, Writer};
    use crate::store::StoreError;

    fn open(dir: &std::path::Path) -> Connection {
        let conn = Connection::open(dir.join("t.db")).unwrap();
        super::super::configure(&conn).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS t (
                 x INTEGER PRIMARY KEY,
                 parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED
             );",
        )
        .unwrap();
        conn
    }

    fn rows(dir: &std::path::Path) -> Vec<i64> {
        let conn = open(dir);
        let mut stmt = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn insert(x: i64) -> impl FnOnce(&Tx<'_>) -> Result<(), StoreError> + Send {
        move |c| {
            conn_of(c)
                .unwrap()
                .execute("INSERT INTO t (x) VALUES (?1)", [x])?;
            Ok(())
        }
    }

    /// Holds the writer inside a first group until `release` is sent, so the
    /// jobs queued meanwhile form the next group together.
    async fn hold_writer(w: &Writer) -> (std_mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std_mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let w2 = w.clone();
        let task = tokio::spawn(async move {
            let r: Result<(), StoreError> = w2
                .run(
                    move |_| {
                        let _ = started_tx.send(());
                        let _ = wait.recv_timeout(Duration::from_secs(10));
                        Ok(())
                    },
                    |_| {},
                )
                .await;
            r.unwrap();
        });
        started.await.unwrap();
        (release, task)
    }

    /// Queues a job behind the held group; returns once it is in the queue
    /// as its `nth` job.
    async fn queue<F, A>(
        w: &Writer,
        nth: usize,
        f: F,
        after: A,
    ) -> JoinHandle<Result<(), StoreError>>
    where
        F: FnOnce(&Tx<'_>) -> Result<(), StoreError> + Send + 'static,
        A: FnOnce(&()) + Send + 'static,
    {
        let task = tokio::spawn({
            let w = w.clone();
            async move { w.run(f, after).await }
        });
        for _ in 0..1000 {
            if w.tx.max_capacity() - w.tx.capacity() >= nth {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("job {nth} was not queued");
    }

    #[tokio::test]
    async fn a_group_that_sqlite_rolled_back_fails_whole_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::spawn(open(dir.path())).unwrap();
        let (release, held) = hold_writer(&w).await;
        let a = queue(&w, 1, insert(1), |_| {}).await;
        // What SQLite does by itself on SQLITE_FULL or SQLITE_IOERR in the
        // middle of a statement: the whole transaction is gone.
        let b = queue(
            &w,
            2,
            |c: &Tx<'_>| {
                conn_of(c)
                    .unwrap()
                    .execute_batch("INSERT INTO t (x) VALUES (2); ROLLBACK")?;
                Err(StoreError::CommitFailed("simulated disk full".into()))
            },
            |_| {},
        )
        .await;
        let committed_after = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = committed_after.clone();
        let c = queue(&w, 3, insert(3), move |_| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        release.send(()).unwrap();
        held.await.unwrap();

        for (name, r) in [
            ("a", a.await.unwrap()),
            ("b", b.await.unwrap()),
            ("c", c.await.unwrap()),
        ] {
            let e = r.expect_err(name);
            assert!(e.is_unavailable(), "{name}: {e}");
        }
        assert!(
            !committed_after.load(std::sync::atomic::Ordering::SeqCst),
            "a job after the lost transaction ran its after-commit"
        );
        // Nothing of the lost group is stored, not even a job that ran
        // after the rollback (it would have committed on its own).
        assert_eq!(rows(dir.path()), Vec::<i64>::new());

        w.run(insert(4), |_| {}).await.unwrap();
        assert_eq!(rows(dir.path()), vec![4]);
    }

    #[tokio::test]
    async fn a_failed_commit_is_rolled_back_and_the_next_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::spawn(open(dir.path())).unwrap();
        let (release, held) = hold_writer(&w).await;
        let ok = queue(&w, 1, insert(1), |_| {}).await;
        // A deferred foreign key is checked at COMMIT, which then fails and
        // leaves the transaction open.
        let dangling = queue(
            &w,
            2,
            |c: &Tx<'_>| {
                conn_of(c)
                    .unwrap()
                    .execute("INSERT INTO t (x, parent) VALUES (2, 99)", [])?;
                Ok(())
            },
            |_| {},
        )
        .await;
        release.send(()).unwrap();
        held.await.unwrap();
        assert!(matches!(
            ok.await.unwrap(),
            Err(StoreError::CommitFailed(_))
        ));
        assert!(matches!(
            dangling.await.unwrap(),
            Err(StoreError::CommitFailed(_))
        ));
        assert_eq!(rows(dir.path()), Vec::<i64>::new());

        w.run(insert(3), |_| {}).await.unwrap();
        assert_eq!(rows(dir.path()), vec![3]);
    }

    #[tokio::test]
    async fn a_run_of_items_that_fails_after_writing_loses_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::spawn(open(dir.path())).unwrap();
        let (release, held) = hold_writer(&w).await;
        let a = queue(&w, 1, insert(1), |_| {}).await;
        let fine = queue_item(&w, 2, 2).await;
        let late = queue_item(&w, 3, FAILS_AFTER_WRITING).await;
        let b = queue(&w, 4, insert(4), |_| {}).await;
        release.send(()).unwrap();
        held.await.unwrap();
        let late = late.await.unwrap().expect_err("late");
        assert!(
            late.to_string().contains("a check made after a write"),
            "{late}"
        );
        for (name, r) in [
            ("a", a.await.unwrap()),
            ("fine", fine.await.unwrap().map(drop)),
            ("b", b.await.unwrap()),
        ] {
            let e = r.expect_err(name);
            assert!(e.is_unavailable(), "{name}: {e}");
        }
        // Rows 2 and 1000 must not be committed (nor 1 with them); the
        // writer goes on.
        assert_eq!(rows(dir.path()), Vec::<i64>::new());
        w.run(insert(5), |_| {}).await.unwrap();
        assert_eq!(rows(dir.path()), vec![5]);
    }

    /// A test [`Batch`](crate::store::Batch): each item inserts its row,
    /// or is refused before writing if negative; [`FAILS_AFTER_WRITING`]
    /// fails the run after inserting its row. Each run records its size.
    struct Inserts;

    const FAILS_AFTER_WRITING: i64 = 1000;

    impl crate::store::Batch for Inserts {
        type Item = i64;
        type Output = i64;
        type Error = StoreError;

        fn run(c: &Tx<'_>, items: Vec<i64>) -> crate::store::Answers<i64, StoreError> {
            let conn = conn_of(c)?;
            conn.execute("CREATE TABLE IF NOT EXISTS runs (size INTEGER)", [])?;
            conn.execute("INSERT INTO runs (size) VALUES (?1)", [items.len() as i64])?;
            let mut answers = Vec::new();
            for x in items {
                if x < 0 {
                    answers.push(Err(StoreError::Migration(format!("{x} refused"))));
                    continue;
                }
                conn.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
                if x == FAILS_AFTER_WRITING {
                    return Err(StoreError::Migration("a check made after a write".into()));
                }
                answers.push(Ok(x));
            }
            Ok(answers)
        }

        fn after_commit(_: &i64) {}
    }

    /// Queues an item of [`Inserts`] behind the held group as its `nth` job.
    async fn queue_item(w: &Writer, nth: usize, x: i64) -> JoinHandle<Result<i64, StoreError>> {
        let answer = w.queue_batch::<Inserts>(x).await.unwrap();
        let task = tokio::spawn(async move { answer.0.await.unwrap() });
        assert!(w.tx.max_capacity() - w.tx.capacity() >= nth);
        task
    }

    #[tokio::test]
    async fn items_queued_one_after_another_run_as_one_and_each_gets_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::spawn(open(dir.path())).unwrap();
        let (release, held) = hold_writer(&w).await;
        let first = [
            queue_item(&w, 1, 1).await,
            queue_item(&w, 2, -2).await,
            queue_item(&w, 3, 3).await,
        ];
        let between = queue(&w, 4, insert(4), |_| {}).await;
        let second = [queue_item(&w, 5, 5).await, queue_item(&w, 6, 6).await];
        release.send(()).unwrap();
        held.await.unwrap();
        let mut answers = Vec::new();
        for task in first.into_iter().chain(second) {
            answers.push(task.await.unwrap().map_err(|e| e.to_string()));
        }
        between.await.unwrap().unwrap();
        assert_eq!(answers[0], Ok(1));
        assert!(answers[1].as_ref().is_err_and(|e| e.contains("-2 refused")));
        assert_eq!(answers[2..], [Ok(3), Ok(5), Ok(6)]);
        assert_eq!(rows(dir.path()), vec![1, 3, 4, 5, 6]);
        // One run for the three items before the closure, one for the two
        // after it: all in one group commit.
        let db = Connection::open(dir.path().join("t.db")).unwrap();
        let mut runs = db.prepare("SELECT size FROM runs ORDER BY rowid").unwrap();
        let sizes: Vec<i64> = runs
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(sizes, vec![3, 2]);
    }

    /// Under writes that never pause, the background checkpointer alone
    /// never lets the WAL start over; the writer must, or the WAL grows by
    /// everything written. Past the policy's cap it does so however recent
    /// the last restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_writes_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE blob (id INTEGER PRIMARY KEY, b BLOB NOT NULL)")
            .unwrap();
        let options = super::Options {
            before_commit: None,
            checkpoint_in_background: Some(dir.path().join("t.db")),
            // The cap alone decides: the interval is longer than the test.
            restart: super::RestartPolicy {
                min_frames: 4096,
                min_interval: Duration::from_secs(3600),
                max_frames: 4096,
            },
        };
        let w = Writer::spawn_with(conn, options).unwrap();
        let wal = dir.path().join("t.db-wal");
        let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());

        // 256 MiB through the WAL (a page and a bit per row), from 32
        // writers that always have the next job queued.
        const ROWS: usize = 64 * 1024;
        const WRITERS: usize = 32;
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..WRITERS {
            let w = w.clone();
            tasks.spawn(async move {
                for i in (t..ROWS).step_by(WRITERS) {
                    w.run(
                        move |c| {
                            conn_of(c)?
                                .prepare_cached(
                                    "INSERT INTO blob (id, b) VALUES (?1, zeroblob(4000))",
                                )?
                                .execute([i as i64])?;
                            Ok::<_, StoreError>(())
                        },
                        |_| {},
                    )
                    .await
                    .unwrap();
                }
            });
        }
        let mut longest = 0;
        while !tasks.is_empty() {
            longest = longest.max(wal_len());
            if let Ok(Some(done)) =
                tokio::time::timeout(Duration::from_millis(20), tasks.join_next()).await
            {
                done.unwrap();
            }
        }
        longest = longest.max(wal_len());
        let total = (ROWS * 4096) as u64;
        // The writer rewinds past the cap, 4,096 frames (16 MiB), as soon as
        // the checkpointer is not busy; with slow I/O (other tests running)
        // it runs on to 70 MiB or so. Without the rewind it passes 700 MiB.
        assert!(
            longest < total / 2,
            "the WAL reached {longest} bytes for {total} bytes written"
        );
        let count: i64 = open(dir.path())
            .query_row("SELECT count(*) FROM blob", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, ROWS as i64);
    }

    #[test]
    fn a_long_wal_restarts_about_once_a_second_up_to_a_cap() {
        let policy = super::RestartPolicy::default();
        let (second, tick) = (Duration::from_secs(1), Duration::from_millis(200));
        // Short: left to start over by itself, however long ago.
        assert!(!policy.due(4095, 10 * second));
        // Long: once a second has passed since the last restart.
        assert!(!policy.due(4096, second - tick));
        assert!(policy.due(4096, second));
        assert!(!policy.due(65_535, second - tick));
        // Past the cap: at once.
        assert!(policy.due(65_536, Duration::ZERO));
        // A WAL at the cap, plus what comes in before the writer restarts
        // it, is kept rather than cut back and grown again.
        assert!(policy.wal_bytes_kept() >= (65_536 + 2 * 20_000) * 4120);
    }

    #[tokio::test]
    async fn another_writer_is_waited_for_then_reported_busy() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        conn.busy_timeout(Duration::from_millis(500)).unwrap();
        let w = Writer::spawn(conn).unwrap();
        let other = open(dir.path());

        // Held shorter than the busy timeout: the write waits, then succeeds.
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let job = tokio::spawn({
            let w = w.clone();
            async move { w.run(insert(1), |_| {}).await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        other.execute_batch("COMMIT").unwrap();
        job.await.unwrap().unwrap();

        // Held longer: SQLITE_BUSY, a fault the API answers with 503.
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = w.run(insert(2), |_| {}).await.unwrap_err();
        assert!(e.is_unavailable(), "{e}");
        other.execute_batch("COMMIT").unwrap();

        w.run(insert(3), |_| {}).await.unwrap();
        assert_eq!(rows(dir.path()), vec![1, 3]);
    }
}
