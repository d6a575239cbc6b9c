//! A write job as both backends' group-commit writers hold it: the closure,
//! what to run after the commit, and where its answer goes. Each writer
//! runs a [`Job`] its own way ([`Job::run_with`]); finishing it once the
//! group's COMMIT returned ([`Finish`]) is the same for both.

use tokio::sync::oneshot;

use super::{Queued, StoreError, Tx};

/// How a job's error is kept from committing what the job wrote before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// The job runs in its own savepoint: an error undoes its writes only.
    Savepoint,
    /// No savepoint (on SQLite it costs a copy of every page the job
    /// touches into a sub-journal, on PostgreSQL two round trips), for jobs
    /// that make all their checks before their first write: an error with
    /// nothing written fails the job alone; an error after a write (a
    /// storage fault, or a check made too late) loses the whole group.
    ChecksFirst,
}

/// A queued job: its closure, its after-commit work and its reply.
pub(crate) struct Job<F, A, T, E> {
    f: F,
    after_commit: A,
    reply: oneshot::Sender<Result<T, E>>,
    guard: Guard,
}

impl<F, A, T, E> Job<F, A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    /// A job, and the answer its caller waits on.
    pub(crate) fn new(guard: Guard, f: F, after_commit: A) -> (Self, Queued<T, E>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            f,
            after_commit,
            reply,
            guard,
        };
        (job, Queued(answer))
    }

    /// Runs the job with `run` (given its guard and closure, returning the
    /// closure's result and whether the group's transaction is still
    /// sound); returns how to finish it, and that soundness.
    pub(crate) fn run_with(
        self,
        run: impl FnOnce(Guard, F) -> (Result<T, E>, bool),
    ) -> (Box<dyn Finish>, bool) {
        let (result, sound) = run(self.guard, self.f);
        let done = Box::new(Done {
            result,
            after_commit: self.after_commit,
            reply: self.reply,
        });
        (done, sound)
    }

    /// The job did not run, or its group was lost before its turn.
    pub(crate) fn abort(self, error: &str) {
        let _ = self
            .reply
            .send(Err(StoreError::CommitFailed(error.to_owned()).into()));
    }
}

/// A job that ran, waiting for its group's COMMIT.
pub(crate) trait Finish: Send {
    /// Runs the after-commit work if the job and the commit succeeded, then
    /// answers the caller.
    fn finish(self: Box<Self>, commit: Result<(), &str>);
}

struct Done<A, T, E> {
    result: Result<T, E>,
    after_commit: A,
    reply: oneshot::Sender<Result<T, E>>,
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
            // The job's own failure stands, whatever became of the group:
            // it says what went wrong.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(StoreError::CommitFailed(e.to_owned()).into()),
        };
        let _ = this.reply.send(out);
    }
}
