//! What a closure run by [`Backend::run`](super::Backend::run) gets: its
//! transaction, with synchronous statements.

use std::cell::Cell;

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::store::StoreError;

/// One transaction on one pooled connection, used from the blocking thread
/// that [`Backend::run`](super::Backend::run) runs the closure on. Each
/// statement is prepared once per connection (deadpool's statement cache),
/// so a closure pays the parse and plan of a statement only the first time
/// its connection runs it.
pub struct Session<'a> {
    handle: &'a Handle,
    tx: &'a deadpool_postgres::Transaction<'a>,
    /// Statements that failed: after one, PostgreSQL refuses every other
    /// statement of the transaction until it rolls back (to a savepoint).
    failures: Cell<u64>,
    /// Statements run that may have written (anything but a `SELECT`).
    writes: Cell<u64>,
}

impl<'a> Session<'a> {
    pub(super) fn new(handle: &'a Handle, tx: &'a deadpool_postgres::Transaction<'a>) -> Self {
        Session {
            handle,
            tx,
            failures: Cell::new(0),
            writes: Cell::new(0),
        }
    }

    /// How many statements failed, and how many may have written, so far:
    /// the group-commit writer compares them before and after a job.
    pub(super) fn marks(&self) -> (u64, u64) {
        (self.failures.get(), self.writes.get())
    }

    /// Runs one statement, keeping [`Session::marks`].
    fn run<T>(
        &self,
        sql: &str,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        if !sql
            .trim_start()
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("select"))
        {
            self.writes.set(self.writes.get() + 1);
        }
        let result = self.handle.block_on(statement);
        if result.is_err() {
            self.failures.set(self.failures.get() + 1);
        }
        Ok(result?)
    }

    /// Every row `sql` returns.
    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query(&statement, params).await
        })
    }

    /// The one row `sql` returns, if any; an error if it returns more.
    pub fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query_opt(&statement, params).await
        })
    }

    /// The one row `sql` returns; an error if it returns none or more.
    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query_one(&statement, params).await
        })
    }

    /// Runs `sql`; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.run(sql, async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.execute(&statement, params).await
        })
    }
}
