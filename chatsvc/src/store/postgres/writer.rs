//! Group commit on PostgreSQL: the writes of one chatd, in the order they
//! were queued, a group at a time in one transaction.
//!
//! A chatd runs a few writer **lanes** (`--store-writer-lanes`, threads
//! `store-writer-pg`), each with a queue and a connection of its own. A
//! send goes to the lane of its conversation ([`Scope`], hashed), so a
//! conversation's sends stay in one queue, in order; every other write goes
//! to the first lane. A lane takes every job waiting (up to
//! [`MAX_BATCH`]), opens one transaction, takes its locks (below), runs
//! each job, commits, and only then runs each job's `after_commit` and
//! answers it, in queue order. Sends are items of a [`Batch`], data rather
//! than closures: the jobs of a run of consecutive sends become one
//! ([`Work::absorb`]) and run in one [`Batch::run`], where the domain
//! checks them all with one statement and stores every message and inbox
//! row with one more, so a group of N sends costs a handful of round trips
//! rather than a few per send. The lanes of a chatd run their
//! `after_commit`s in the order their COMMITs were sent ([`Sequencer`]):
//! two groups that bumped one user's inbox cursor committed in cursor
//! order (the second waited for the first's row lock), so each user's
//! pushes leave in cursor order, as with one writer. A lane's connection
//! task runs on the lane thread's own current-thread runtime, driven while
//! the thread waits on a statement, so a statement costs its round trip
//! and no hand-off to the server's runtime and back (what that changed:
//! `bench/HISTORY.md`). So:
//!
//! - **Durable before answered**, and one WAL flush for the whole group.
//! - **Ordered**: jobs queued one after another for one conversation, or
//!   writes other than sends, commit in that order (a batch of sends gets
//!   its seqs in the order it was sent).
//! - **Unrelated conversations never wait for each other**, on any node,
//!   and **deadlock-free by construction**, through one cluster-wide
//!   advisory lock ([`WRITE_LOCK`]) taken first, in one of two modes:
//!   - a group of sends only (each names its conversation when queued,
//!     [`Scope`]) takes it **shared**, then locks, before running any
//!     job, every row the group will update, in one fixed order:
//!     its conversations by ascending id (`FOR NO KEY UPDATE`: the
//!     `last_seq` counter), then the users whose inbox cursors it will
//!     allocate (every member of those conversations, and the senders) by
//!     ascending id. Groups of two nodes that share no conversation and no
//!     user run at once; groups that share some wait for each other
//!     whole, never in a cycle, since each takes its locks in the same
//!     order before it writes, and writes only rows it locked (new rows
//!     aside: their unique keys never collide across groups, because a
//!     sender's user row is locked by the group that sends for them).
//!     Membership can't change under a shared holder: it changes only in
//!     exclusive groups;
//!   - a group with any other write (friends, profiles, group admin, read
//!     markers, webhook bookkeeping, and a direct message whose
//!     conversation does not exist yet, found when the locks are taken:
//!     the group then rolls back and starts again this way) takes it
//!     **exclusive**, so it runs alone, cluster-wide, and locks nothing
//!     else first. These are rare next to sends.
//!
//!   Counters (`conversations.last_seq`, `users.inbox_cursor`) are read
//!   and bumped under those row locks, in the transaction that uses them,
//!   so they stay gap-free. A statement of a job sees every commit made
//!   before its group got its locks (`READ COMMITTED` takes a snapshot
//!   per statement).
//!
//! Reads never wait for any of it (they run on the pool, on their own
//! snapshot).
//!
//! Each [`Store::write`](crate::store::Store::write) job runs inside a
//! savepoint, so its failure undoes only its own writes; a failed statement
//! aborts a PostgreSQL transaction until it rolls back to one. A run of
//! sends runs without ([`checks_first`]): each send that fails its checks
//! fails alone, having written nothing; if the run fails after writing, or
//! a statement of it fails, the group is lost and every job in it answers
//! as unavailable (the same contract as SQLite's writer).

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashSet};

use tokio::sync::mpsc;

use super::session::{Driver, Prepared, Tx as SessionTx};
use super::{Backend, Session};
use crate::store::job::{Batched, Finish, Job};
use crate::store::{Batch, Queued, Scope, StoreError, Tx, TxDb};

/// Jobs in one group at most.
const MAX_BATCH: usize = 512;

/// Jobs waiting for the writer at most; a caller past it waits to queue.
const QUEUE: usize = 4096;

/// The advisory lock every write transaction takes first, shared or
/// exclusive (an arbitrary 64-bit key: "mqchat:w").
const WRITE_LOCK: i64 = 0x6d71_6368_6174_3a77;

/// A group's conversations, by ascending id, locked: the direct ones by
/// their two users, the groups' by group id. Returns each one's users (a
/// direct conversation's) so the writer can tell which direct
/// conversations do not exist yet.
const LOCK_CONVERSATIONS: &str = "SELECT id, user_lo, user_hi FROM conversations
     WHERE id IN (
         SELECT c.id FROM conversations c, unnest($1::bigint[], $2::bigint[]) AS d (lo, hi)
         WHERE c.kind = 'direct' AND c.user_lo = d.lo AND c.user_hi = d.hi
         UNION ALL
         SELECT g.conversation_id FROM groups g WHERE g.id = ANY($3::bigint[]))
     ORDER BY id
     FOR NO KEY UPDATE";

/// Then the users whose inbox cursors the group allocates (every member
/// of those conversations) and the senders, by ascending id, locked. The
/// conversations are named as in [`LOCK_CONVERSATIONS`], not by the ids it
/// returns, so that both go to the server at once.
const LOCK_USERS: &str = "SELECT id FROM users
     WHERE id IN (
         SELECT cm.user_id FROM conversation_members cm
         WHERE cm.conversation_id IN (
             SELECT c.id FROM conversations c, unnest($1::bigint[], $2::bigint[]) AS d (lo, hi)
             WHERE c.kind = 'direct' AND c.user_lo = d.lo AND c.user_hi = d.hi
             UNION ALL
             SELECT g.conversation_id FROM groups g WHERE g.id = ANY($3::bigint[]))
         UNION ALL
         SELECT unnest($4::bigint[]))
     ORDER BY id
     FOR NO KEY UPDATE";

/// What a group of jobs locks before it runs them.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Sends only: [`WRITE_LOCK`] shared, then these rows in order.
    Shared(LockSet),
    /// [`WRITE_LOCK`] exclusive, and nothing else up front.
    Exclusive,
}

/// The rows a group of sends names: direct conversations by their users
/// (lower id first), group conversations by group, and the senders.
#[derive(Debug, Default, PartialEq, Eq)]
struct LockSet {
    direct: BTreeSet<(i64, i64)>,
    groups: BTreeSet<i64>,
    senders: BTreeSet<i64>,
}

impl Plan {
    /// Shared if every job is a send (has a scope), else exclusive.
    fn of<'a>(scopes: impl IntoIterator<Item = &'a Option<Scope>>) -> Plan {
        let mut set = LockSet::default();
        for scope in scopes {
            match *scope {
                Some(Scope::Direct { sender, peer }) => {
                    let (lo, hi) = (sender.min(peer), sender.max(peer));
                    set.direct.insert((lo as i64, hi as i64));
                    set.senders.insert(sender as i64);
                }
                Some(Scope::Group { sender, group }) => {
                    set.groups.insert(group as i64);
                    set.senders.insert(sender as i64);
                }
                None => return Plan::Exclusive,
            }
        }
        Plan::Shared(set)
    }
}

/// Takes a group's locks (see the module doc), a group of sends' three
/// statements pipelined: one round trip. `Ok(false)`: a direct
/// conversation of the group does not exist yet, so creating it needs the
/// exclusive lock; nothing was written, and the caller starts over.
fn take_locks(s: &Session<'_>, plan: &Plan) -> Result<bool, StoreError> {
    let set = match plan {
        Plan::Exclusive => {
            s.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            return Ok(true);
        }
        Plan::Shared(set) => set,
    };
    let (los, his): (Vec<i64>, Vec<i64>) = set.direct.iter().copied().unzip();
    let groups: Vec<i64> = set.groups.iter().copied().collect();
    let senders: Vec<i64> = set.senders.iter().copied().collect();
    let answers = s.query_pipelined(&[
        ("SELECT pg_advisory_xact_lock_shared($1)", &[&WRITE_LOCK]),
        (LOCK_CONVERSATIONS, &[&los, &his, &groups]),
        (LOCK_USERS, &[&los, &his, &groups, &senders]),
    ])?;
    let rows = answers.get(1).map_or(&[][..], Vec::as_slice);
    let mut found = HashSet::with_capacity(rows.len());
    for r in rows {
        if let (Some(lo), Some(hi)) = (r.try_get(1)?, r.try_get(2)?) {
            found.insert((lo, hi));
        }
    }
    // The users of a missing conversation were not locked: nothing runs.
    Ok(set.direct.iter().all(|pair| found.contains(pair)))
}

/// A queued job as the writer holds it: a closure, or items of a
/// [`Batch`].
trait Work: Any + Send {
    /// Runs the job; returns how to finish it (each of its items) and
    /// whether the group's transaction is still sound.
    fn run(self: Box<Self>, s: &Session<'_>) -> (Vec<Box<dyn Finish>>, bool);
    /// The job did not run, or its group did not commit.
    fn abort(self: Box<Self>, error: &str);
    /// Takes `next`, queued right after this job, into it when both are
    /// items of one [`Batch`] kind, to run as one; gives it back otherwise.
    fn absorb(&mut self, next: Box<dyn Work>) -> Option<Box<dyn Work>> {
        Some(next)
    }
}

impl<F, A, T, E> Work for Job<F, A, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    fn run(self: Box<Self>, s: &Session<'_>) -> (Vec<Box<dyn Finish>>, bool) {
        let (finish, sound) = (*self).run_with(|f| in_savepoint(s, f));
        (vec![finish], sound)
    }

    fn abort(self: Box<Self>, error: &str) {
        (*self).abort(error);
    }
}

/// Every item of a run runs in one [`Batch::run`], which makes its checks
/// before it writes ([`checks_first`]): an item that fails its checks
/// fails alone, a failed run loses the group if it wrote.
impl<B: Batch> Work for Batched<B> {
    fn run(self: Box<Self>, s: &Session<'_>) -> (Vec<Box<dyn Finish>>, bool) {
        (*self).run_with(|items| checks_first(s, |c| B::run(c, items)))
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

/// Handle to the writer lanes.
#[derive(Clone)]
pub(crate) struct Writer {
    lanes: std::sync::Arc<[mpsc::Sender<Queue>]>,
}

/// A queued job and the conversation it names, if a send.
type Queue = (Option<Scope>, Box<dyn Work>);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

impl Writer {
    /// Starts the writer lanes, each a thread with a connection of its own.
    pub(crate) fn spawn(backend: &Backend) -> Result<Writer, StoreError> {
        let sequencer = std::sync::Arc::new(Sequencer::default());
        let mut lanes = Vec::with_capacity(backend.writer_lanes);
        for lane in 0..backend.writer_lanes.max(1) {
            let (tx, rx) = mpsc::channel(QUEUE);
            let config = std::sync::Arc::clone(&backend.config);
            let sequencer = std::sync::Arc::clone(&sequencer);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Config(format!("writer runtime: {e}")))?;
            std::thread::Builder::new()
                .name(format!("store-writer-pg-{lane}"))
                .spawn(move || run(&runtime, &config, &sequencer, rx))
                .map_err(|e| StoreError::Config(format!("spawn the writer: {e}")))?;
            lanes.push(tx);
        }
        Ok(Writer {
            lanes: lanes.into(),
        })
    }

    /// Queues a write other than a send; returns once it is in the queue,
    /// with its answer to come. It goes to the first lane, and its group
    /// runs alone, cluster-wide (see the module doc).
    pub(crate) async fn queue<T, E, F, A>(&self, f: F, after_commit: A) -> Result<Queued<T, E>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (job, answer) = Job::new(f, after_commit);
        self.send(None, Box::new(job)).await.map_err(E::from)?;
        Ok(answer)
    }

    /// Queues an item of a [`Batch`] (a send) that writes to `scope`'s
    /// conversation only, on that conversation's lane; returns once it is
    /// in the queue, with its answer to come.
    pub(crate) async fn queue_batch<B: Batch>(
        &self,
        scope: Scope,
        item: B::Item,
    ) -> Result<Queued<B::Output, B::Error>, B::Error> {
        let (job, answer) = Batched::<B>::new(item);
        self.send(Some(scope), Box::new(job)).await?;
        Ok(answer)
    }

    async fn send(&self, scope: Option<Scope>, job: Box<dyn Work>) -> Result<(), StoreError> {
        let lane = &self.lanes[lane_of(scope, self.lanes.len())];
        lane.send((scope, job))
            .await
            .map_err(|_| StoreError::Closed)
    }
}

/// The lane a job goes to, of `lanes`: its conversation's, by a hash of
/// what names it (the same for both directions of a direct conversation).
fn lane_of(scope: Option<Scope>, lanes: usize) -> usize {
    // Fibonacci hashing: consecutive ids spread over the lanes.
    let key = match scope {
        None => return 0,
        Some(Scope::Direct { sender, peer }) => {
            sender.min(peer).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ sender.max(peer)
        }
        Some(Scope::Group { group, .. }) => !group,
    };
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % lanes.max(1)
}

/// Orders the lanes' after-commit work: a lane takes a ticket just before
/// it sends COMMIT, and finishes its jobs when the tickets before have
/// finished theirs. A group that waited for another's row lock sent its
/// COMMIT after that one's COMMIT returned, so it has the later ticket.
#[derive(Default)]
struct Sequencer {
    /// (next ticket to hand out, ticket whose turn it is)
    state: std::sync::Mutex<(u64, u64)>,
    turn: std::sync::Condvar,
}

impl Sequencer {
    fn ticket(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        state.0 - 1
    }

    /// Runs `f` in `ticket`'s turn, then gives the turn to the next.
    fn in_turn(&self, ticket: u64, f: impl FnOnce()) {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.1 != ticket {
                state = self.turn.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
        // The turn passes on even if `f` panics.
        struct Next<'a>(&'a Sequencer);
        impl Drop for Next<'_> {
            fn drop(&mut self) {
                let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
                state.1 += 1;
                self.0.turn.notify_all();
            }
        }
        let _next = Next(self);
        f();
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
    sequencer: &Sequencer,
    mut rx: mpsc::Receiver<Queue>,
) {
    let mut connection: Option<Connection> = None;
    let mut batch: Vec<Queue> = Vec::with_capacity(MAX_BATCH);
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
                    for (_, job) in jobs {
                        job.abort(&msg);
                    }
                    continue;
                }
            };
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        let (finishes, outcome, ticket) = commit_group(runtime, conn, sequencer, jobs);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, size, "postgres: write group failed");
            metrics::counter!(crate::metrics::STORE_COMMIT_FAILURES_TOTAL).increment(1);
        }
        metrics::histogram!(crate::metrics::STORE_COMMIT_JOBS).record(size as f64);
        metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        let commit = outcome.as_ref().map(|_| ()).map_err(String::as_str);
        let finish_all = || {
            for finish in finishes {
                finish.finish(commit);
            }
        };
        match ticket {
            Some(ticket) => sequencer.in_turn(ticket, finish_all),
            // Nothing committed: only answers, in no order with others.
            None => finish_all(),
        }
    }
}

/// What a group left: its jobs to finish, whether it committed, and its
/// [`Sequencer`] ticket if it sent COMMIT.
type Ran = (Vec<Box<dyn Finish>>, Result<(), String>, Option<u64>);

/// Runs a group in one transaction on the writer's connection.
fn commit_group(
    runtime: &tokio::runtime::Runtime,
    conn: &mut Connection,
    sequencer: &Sequencer,
    jobs: Vec<Queue>,
) -> Ran {
    let mut plan = Plan::of(jobs.iter().map(|(scope, _)| scope));
    let jobs = runs(jobs).into_iter();
    let Connection { client, prepared } = conn;
    loop {
        round_trips(1);
        let tx = match runtime.block_on(client.transaction()) {
            Ok(tx) => tx,
            Err(e) => return aborted(jobs, StoreError::from(e).to_string()),
        };
        let session = Session::over(Driver::Runtime(runtime), SessionTx::Own(&tx, prepared));
        // Webhooks change only in exclusive groups.
        let session = match &plan {
            Plan::Shared(_) => session.webhooks_fixed(),
            Plan::Exclusive => session,
        };
        let mut outcome = match take_locks(&session, &plan) {
            Ok(true) => Ok(()),
            Ok(false) => {
                // A direct conversation to create: nothing written yet.
                tracing::debug!("postgres: a new direct conversation, the group runs alone");
                round_trips(session.round_trips() + 1);
                if let Err(e) = runtime.block_on(tx.rollback()) {
                    return aborted(jobs, StoreError::from(e).to_string());
                }
                plan = Plan::Exclusive;
                continue;
            }
            Err(e) => Err(e.to_string()),
        };
        let mut finishes: Vec<Box<dyn Finish>> = Vec::with_capacity(jobs.len());
        let mut jobs = jobs;
        if outcome.is_ok() {
            for job in jobs.by_ref() {
                let (finish, sound) = job.run(&session);
                finishes.extend(finish);
                if !sound {
                    outcome =
                        Err("the transaction was rolled back after a storage error".to_owned());
                    break;
                }
            }
        }
        round_trips(session.round_trips() + 1);
        let msg = match outcome {
            Ok(()) => {
                let ticket = Some(sequencer.ticket());
                match runtime.block_on(tx.commit()) {
                    Ok(()) => return (finishes, Ok(()), ticket),
                    Err(e) => {
                        // Every job ran: none is left to abort.
                        return (finishes, Err(StoreError::from(e).to_string()), ticket);
                    }
                }
            }
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
        return (finishes, Err(msg), None);
    }
}

/// Counts `n` round trips of a group commit.
fn round_trips(n: u64) {
    metrics::counter!(crate::metrics::STORE_ROUND_TRIPS_TOTAL).increment(n);
}

/// A group's jobs with each run of consecutive items of one [`Batch`]
/// kind made one job.
fn runs(jobs: Vec<Queue>) -> Vec<Box<dyn Work>> {
    let mut runs: Vec<Box<dyn Work>> = Vec::with_capacity(jobs.len());
    for (_, job) in jobs {
        let job = match runs.last_mut() {
            Some(last) => match last.absorb(job) {
                Some(job) => job,
                None => continue,
            },
            None => job,
        };
        runs.push(job);
    }
    runs
}

/// Answers every job of a group that could not start.
fn aborted(jobs: impl Iterator<Item = Box<dyn Work>>, msg: String) -> Ran {
    for job in jobs {
        job.abort(&msg);
    }
    (Vec::new(), Err(msg), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_alone_share_the_write_lock_and_name_their_rows() {
        let plan = Plan::of(&[
            Some(Scope::Direct { sender: 9, peer: 4 }),
            Some(Scope::Group {
                sender: 4,
                group: 7,
            }),
            Some(Scope::Direct { sender: 4, peer: 9 }),
            Some(Scope::Direct { sender: 5, peer: 5 }),
        ]);
        let expected = LockSet {
            direct: [(4, 9), (5, 5)].into(),
            groups: [7].into(),
            senders: [4, 5, 9].into(),
        };
        assert_eq!(plan, Plan::Shared(expected));
    }

    #[test]
    fn a_conversation_has_one_lane_and_other_writes_the_first() {
        let lanes = 4;
        let dm = |sender, peer| lane_of(Some(Scope::Direct { sender, peer }), lanes);
        assert_eq!(
            dm(3, 8),
            dm(8, 3),
            "both directions of a direct conversation"
        );
        assert_eq!(lane_of(None, lanes), 0);
        let used: BTreeSet<usize> = (1..64).map(|u| dm(u, u + 1)).collect();
        assert_eq!(used.len(), lanes, "conversations spread over every lane");
        let groups: BTreeSet<usize> = (1..64)
            .map(|group| lane_of(Some(Scope::Group { sender: 1, group }), lanes))
            .collect();
        assert_eq!(groups.len(), lanes);
        assert_eq!(lane_of(Some(Scope::Direct { sender: 3, peer: 8 }), 1), 0);
    }

    #[test]
    fn lanes_finish_in_ticket_order() {
        let sequencer = std::sync::Arc::new(Sequencer::default());
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tickets: Vec<u64> = (0..8).map(|_| sequencer.ticket()).collect();
        let threads: Vec<_> = tickets
            .into_iter()
            .rev()
            .map(|t| {
                let (sequencer, order) = (sequencer.clone(), order.clone());
                std::thread::spawn(move || {
                    sequencer.in_turn(t, || order.lock().unwrap().push(t));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<u64>>());
    }

    #[test]
    fn any_other_write_makes_the_group_exclusive() {
        let plan = Plan::of(&[
            Some(Scope::Group {
                sender: 1,
                group: 2,
            }),
            None,
        ]);
        assert_eq!(plan, Plan::Exclusive);
    }
}
