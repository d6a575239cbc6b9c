//! What a closure run by [`Backend::run`](super::Backend::run) gets: its
//! transaction, with synchronous statements.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use tokio::runtime::{Handle, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::store::webhooks::WebhookRow;
use crate::store::StoreError;

/// One transaction on one pooled connection, used from the blocking thread
/// that [`Backend::run`](super::Backend::run) runs the closure on. Each
/// statement is prepared once per connection (deadpool's statement cache),
/// so a closure pays the parse and plan of a statement only the first time
/// its connection runs it.
pub struct Session<'a> {
    driver: Driver<'a>,
    tx: Tx<'a>,
    /// Statements that failed: after one, PostgreSQL refuses every other
    /// statement of the transaction until it rolls back (to a savepoint).
    failures: Cell<u64>,
    /// Statements run that may have written (anything but a `SELECT`).
    writes: Cell<u64>,
    /// Statements waited on, a round trip each.
    round_trips: Cell<u64>,
    /// The active webhooks, read once per transaction, when the writer
    /// knows no statement of it can change them ([`Session::webhooks_fixed`]).
    webhooks: Option<RefCell<Option<Vec<WebhookRow>>>>,
}

/// What runs a statement to completion on the calling thread.
#[derive(Clone, Copy)]
pub(super) enum Driver<'a> {
    /// A pooled connection's task runs on the server's runtime; the
    /// blocking thread waits for each answer.
    Handle(&'a Handle),
    /// The writer's own connection, whose task runs on the writer thread's
    /// own runtime while it waits: no thread hand-off per statement.
    Runtime(&'a Runtime),
}

impl Driver<'_> {
    fn block_on<F: std::future::Future>(self, f: F) -> F::Output {
        match self {
            Driver::Handle(h) => h.block_on(f),
            Driver::Runtime(rt) => rt.block_on(f),
        }
    }
}

/// Statements prepared on the writer's own connection, by SQL text.
pub(super) type Prepared = RefCell<HashMap<String, Statement>>;

/// The transaction, and where its statements are kept prepared.
#[derive(Clone, Copy)]
pub(super) enum Tx<'a> {
    /// deadpool's statement cache, per pooled connection.
    Pooled(&'a deadpool_postgres::Transaction<'a>),
    /// The writer's connection and its own cache.
    Own(&'a tokio_postgres::Transaction<'a>, &'a Prepared),
}

impl<'a> Tx<'a> {
    fn transaction(self) -> &'a tokio_postgres::Transaction<'a> {
        match self {
            Tx::Pooled(tx) => tx,
            Tx::Own(tx, _) => tx,
        }
    }

    async fn prepare(self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        match self {
            Tx::Pooled(tx) => tx.prepare_cached(sql).await,
            Tx::Own(tx, prepared) => {
                let known = prepared.borrow().get(sql).cloned();
                match known {
                    Some(statement) => Ok(statement),
                    None => {
                        let statement = tx.prepare(sql).await?;
                        prepared
                            .borrow_mut()
                            .insert(sql.to_owned(), statement.clone());
                        Ok(statement)
                    }
                }
            }
        }
    }
}

impl<'a> Session<'a> {
    pub(super) fn new(handle: &'a Handle, tx: &'a deadpool_postgres::Transaction<'a>) -> Self {
        Session::over(Driver::Handle(handle), Tx::Pooled(tx))
    }

    pub(super) fn over(driver: Driver<'a>, tx: Tx<'a>) -> Self {
        Session {
            driver,
            tx,
            failures: Cell::new(0),
            writes: Cell::new(0),
            round_trips: Cell::new(0),
            webhooks: None,
        }
    }

    /// Says that the active webhooks can't change during this transaction
    /// (it holds the write lock shared: they change only under it
    /// exclusive), so [`Session::active_webhooks`] reads them once.
    pub(super) fn webhooks_fixed(mut self) -> Self {
        self.webhooks = Some(RefCell::new(None));
        self
    }

    /// `read`, or the webhooks it read before in this transaction if they
    /// are fixed: a round trip per send saved.
    pub(super) fn active_webhooks(
        &self,
        read: impl FnOnce(&Self) -> Result<Vec<WebhookRow>, StoreError>,
    ) -> Result<Vec<WebhookRow>, StoreError> {
        let Some(memo) = &self.webhooks else {
            return read(self);
        };
        if let Some(known) = memo.borrow().as_ref() {
            return Ok(known.clone());
        }
        let rows = read(self)?;
        *memo.borrow_mut() = Some(rows.clone());
        Ok(rows)
    }

    /// How many statements failed, and how many may have written, so far:
    /// the group-commit writer compares them before and after a job.
    pub(super) fn marks(&self) -> (u64, u64) {
        (self.failures.get(), self.writes.get())
    }

    /// How many statements were waited on so far.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    /// Counts a statement that may write (anything but a `SELECT`).
    fn count_write(&self, sql: &str) {
        if !sql
            .trim_start()
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("select"))
        {
            self.writes.set(self.writes.get() + 1);
        }
    }

    /// Runs one statement, keeping [`Session::marks`].
    fn run<T>(
        &self,
        sql: &str,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        self.count_write(sql);
        self.round_trips.set(self.round_trips.get() + 1);
        let result = self.driver.block_on(statement);
        if result.is_err() {
            self.failures.set(self.failures.get() + 1);
        }
        Ok(result?)
    }

    /// Every row of each of `statements`, run pipelined: all sent at once
    /// and answered in order, one round trip for all. The server runs them
    /// one after another, as if each waited for the one before; so a
    /// statement may not take its parameters from an earlier one's rows,
    /// and after one fails the rest fail too (the transaction is aborted).
    /// Each is prepared first (a round trip of its own only the first time
    /// its connection runs it).
    pub(super) fn query_pipelined(
        &self,
        statements: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            self.count_write(sql);
            match self.driver.block_on(self.tx.prepare(sql)) {
                Ok(statement) => prepared.push(statement),
                Err(e) => {
                    self.failures.set(self.failures.get() + 1);
                    return Err(e.into());
                }
            }
        }
        // Each query is written to the connection when first polled, and
        // `join_all` polls a few futures in order: the server gets them in
        // the order given.
        let queries = prepared
            .iter()
            .zip(statements)
            .map(|(statement, (_, params))| self.tx.transaction().query(statement, params));
        self.round_trips.set(self.round_trips.get() + 1);
        let answers = self
            .driver
            .block_on(futures_util::future::join_all(queries));
        let mut rows = Vec::with_capacity(answers.len());
        for answer in answers {
            match answer {
                Ok(r) => rows.push(r),
                Err(e) => {
                    self.failures.set(self.failures.get() + 1);
                    return Err(e.into());
                }
            }
        }
        Ok(rows)
    }

    /// Every row `sql` returns.
    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare(sql).await?;
            self.tx.transaction().query(&statement, params).await
        })
    }

    /// The one row `sql` returns, if any; an error if it returns more.
    pub fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare(sql).await?;
            self.tx.transaction().query_opt(&statement, params).await
        })
    }

    /// The one row `sql` returns; an error if it returns none or more.
    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare(sql).await?;
            self.tx.transaction().query_one(&statement, params).await
        })
    }

    /// Runs `sql`; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare(sql).await?;
            self.tx.transaction().execute(&statement, params).await
        })
    }
}
