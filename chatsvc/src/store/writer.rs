//! The single writer thread and its group commit.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::StoreError;

/// Most jobs in one transaction; bounds commit latency under load.
const MAX_BATCH: usize = 512;

/// A unit of work for the writer: run inside the group's transaction, then
/// learn whether the COMMIT succeeded.
trait Job: Send {
    /// Runs the job in its own savepoint; returns how to finish it.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Finish>;
    /// The group never started (BEGIN failed): answer with the error.
    fn abort(self: Box<Self>, error: &str);
}

trait Finish: Send {
    fn finish(self: Box<Self>, commit: Result<(), &str>);
}

enum Msg {
    Job(Box<dyn Job>),
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
}

struct Typed<F, A, T, E> {
    f: F,
    after_commit: A,
    reply: oneshot::Sender<Result<T, E>>,
}

struct Done<A, T, E> {
    result: Result<T, E>,
    after_commit: A,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, A, T, E> Job for Typed<F, A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Finish> {
        let this = *self;
        Box::new(Done {
            result: in_savepoint(conn, this.f),
            after_commit: this.after_commit,
            reply: this.reply,
        })
    }

    fn abort(self: Box<Self>, error: &str) {
        let _ = self
            .reply
            .send(Err(StoreError::CommitFailed(error.to_owned()).into()));
    }
}

impl<A, T, E> Finish for Done<A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    fn finish(self: Box<Self>, commit: Result<(), &str>) {
        let this = *self;
        let out = match (this.result, commit) {
            (Ok(v), Ok(())) => {
                (this.after_commit)(&v);
                Ok(v)
            }
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(StoreError::CommitFailed(e.to_owned()).into()),
        };
        let _ = this.reply.send(out);
    }
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Msg>(4096);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Migration(format!("spawn writer: {e}")))?;
        Ok(Writer { tx })
    }

    pub(super) async fn run<T, E, F, A>(&self, f: F, after_commit: A) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Typed {
            f,
            after_commit,
            reply,
        });
        self.tx
            .send(Msg::Job(job))
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        rx.await.map_err(|_| E::from(StoreError::Closed))?
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

fn in_savepoint<T, E: From<StoreError>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let sql = |s: &str| {
        conn.execute_batch(s)
            .map_err(|e| E::from(StoreError::from(e)))
    };
    sql("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            sql("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            sql("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
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
                let r = conn
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                    .map_err(StoreError::from);
                let _ = reply.send(r);
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
        commit_group(&conn, &mut batch);
    }
    // Every handle is gone. Leave the WAL checkpointed.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        warn!(error = %e, "final checkpoint failed");
    }
}

fn commit_group(conn: &Connection, batch: &mut Vec<Box<dyn Job>>) {
    let started = std::time::Instant::now();
    let size = batch.len();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        error!(error = %msg, "begin failed");
        for job in batch.drain(..) {
            job.abort(&msg);
        }
        return;
    }
    let finishes: Vec<Box<dyn Finish>> = batch.drain(..).map(|job| job.run(conn)).collect();
    let outcome = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if let Err(e) = &outcome {
        warn!(error = %e, size, "commit failed, rolling back");
        let _ = conn.execute_batch("ROLLBACK");
    }
    metrics::histogram!("store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("store_commit_batch_size").record(size as f64);
    for finish in finishes {
        finish.finish(outcome.as_ref().map(|_| ()).map_err(String::as_str));
    }
}
