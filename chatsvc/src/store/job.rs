//! A write job as both backends' group-commit writers hold it: the closure,
//! what to run after the commit, and where its answer goes. Each writer
//! runs a [`Job`] its own way ([`Job::run_with`]); finishing it once the
//! group's COMMIT returned ([`Finish`]) is the same for both. Items of a
//! [`Batch`] (sends) are [`Batched`]: both writers run each run of them
//! queued one after another in one [`Batch::run`].

use tokio::sync::oneshot;

use super::{Batch, Queued, StoreError, Tx};

/// A queued job: its closure, its after-commit work and its reply. Each
/// runs in a savepoint of its own, so an error undoes its writes only.
/// Items of a [`Batch`] run without one (a savepoint costs, on SQLite, a
/// copy of every page the job touches into a sub-journal, on PostgreSQL
/// two round trips): a run makes every check before its first write, so
/// an error with nothing written fails the run alone, and an error after a
/// write (a storage fault, or a check made too late) loses the whole group.
pub(crate) struct Job<F, A, T, E> {
    f: F,
    after_commit: A,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, A, T, E> Job<F, A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    /// A job, and the answer its caller waits on.
    pub(crate) fn new(f: F, after_commit: A) -> (Self, Queued<T, E>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            f,
            after_commit,
            reply,
        };
        (job, Queued(answer))
    }

    /// Runs the job with `run` (given its closure, returning the closure's
    /// result and whether the group's transaction is still sound); returns
    /// how to finish it, and that soundness.
    pub(crate) fn run_with(
        self,
        run: impl FnOnce(F) -> (Result<T, E>, bool),
    ) -> (Box<dyn Finish>, bool) {
        let (result, sound) = run(self.f);
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

/// What [`Batch::run`] returns for `B`.
type Answers<B> = super::Answers<<B as Batch>::Output, <B as Batch>::Error>;

/// Items of one [`Batch`] kind queued one after another, each with its
/// reply: what a writer runs with one [`Batch::run`].
pub(crate) struct Batched<B: Batch> {
    items: Vec<B::Item>,
    replies: Vec<oneshot::Sender<Result<B::Output, B::Error>>>,
}

impl<B: Batch> Batched<B> {
    /// One item, and the answer its caller waits on.
    pub(crate) fn new(item: B::Item) -> (Self, Queued<B::Output, B::Error>) {
        let (reply, answer) = oneshot::channel();
        let batch = Batched {
            items: vec![item],
            replies: vec![reply],
        };
        (batch, Queued(answer))
    }

    /// Takes `later`'s items after this one's.
    pub(crate) fn append(&mut self, later: Batched<B>) {
        self.items.extend(later.items);
        self.replies.extend(later.replies);
    }

    /// Runs the items with `run` (given them, returning [`Batch::run`]'s
    /// result and whether the group's transaction is still sound); returns
    /// how to finish each, and that soundness. If the run failed as a
    /// whole, or gave a wrong number of answers, every item fails with it.
    pub(crate) fn run_with(
        self,
        run: impl FnOnce(Vec<B::Item>) -> (Answers<B>, bool),
    ) -> (Vec<Box<dyn Finish>>, bool) {
        let count = self.replies.len();
        let (result, mut sound) = run(self.items);
        let results = match result {
            Ok(results) if results.len() == count => results,
            Ok(results) => {
                // What it wrote can't be told apart: none of it commits.
                sound = false;
                let msg = format!("a batch of {count} gave {} answers", results.len());
                failed::<B>(count, &msg)
            }
            Err(e) => failed::<B>(count, &e.to_string()),
        };
        let finishes = results
            .into_iter()
            .zip(self.replies)
            .map(|(result, reply)| {
                Box::new(Done {
                    result,
                    after_commit: B::after_commit,
                    reply,
                }) as Box<dyn Finish>
            })
            .collect();
        (finishes, sound)
    }

    /// The items did not run, or their group was lost before their turn.
    pub(crate) fn abort(self, error: &str) {
        for reply in self.replies {
            let _ = reply.send(Err(StoreError::CommitFailed(error.to_owned()).into()));
        }
    }
}

/// `count` answers that the run of their batch failed with `msg`.
fn failed<B: Batch>(count: usize, msg: &str) -> Vec<Result<B::Output, B::Error>> {
    (0..count)
        .map(|_| Err(StoreError::CommitFailed(msg.to_owned()).into()))
        .collect()
}
