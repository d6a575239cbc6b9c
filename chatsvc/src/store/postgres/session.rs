//! What a closure run by [`Backend::run`](super::Backend::run) gets: its
//! transaction, with synchronous statements.

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
}

impl<'a> Session<'a> {
    pub(super) fn new(handle: &'a Handle, tx: &'a deadpool_postgres::Transaction<'a>) -> Self {
        Session { handle, tx }
    }

    /// Every row `sql` returns.
    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        self.handle.block_on(async {
            let statement = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.query(&statement, params).await?)
        })
    }

    /// The one row `sql` returns, if any; an error if it returns more.
    pub fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.handle.block_on(async {
            let statement = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.query_opt(&statement, params).await?)
        })
    }

    /// The one row `sql` returns; an error if it returns none or more.
    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
        self.handle.block_on(async {
            let statement = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.query_one(&statement, params).await?)
        })
    }

    /// Runs `sql`; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.handle.block_on(async {
            let statement = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.execute(&statement, params).await?)
        })
    }
}
