//! PostgreSQL: rate-limit buckets every node shares ([`crate::store::Bucket`]).
//!
//! Each take is one upsert in its own implicit transaction on a pooled
//! connection: not through the group-commit writer, whose queue orders
//! writes that need ordering, and a limit check needs none. The row lock
//! the upsert takes orders concurrent takes of one key from every node, so
//! N nodes never grant more than one budget between them.

use std::time::Duration;

use super::Backend;
use crate::store::{Bucket, StoreError};

/// GCRA in one statement. `$2` is the take's cost in ms (emission
/// interval × tokens), `$3` the tolerance in ms (interval × burst). A take
/// is allowed when, after it, the key's theoretical arrival time (`tat`) is
/// at most the tolerance ahead of now; only an allowed take moves it. The
/// row to insert carries `now + cost`, so `excluded.tat - $2` is now in the
/// update; SET expressions all see the old row, so `allowed` and `tat`
/// judge the same state. The database's clock, not the nodes': every node
/// judges a key by one clock.
const TAKE: &str = "
    INSERT INTO rate_buckets AS b (key, tat, allowed)
    VALUES ($1, extract(epoch FROM statement_timestamp())::float8 * 1000 + $2, true)
    ON CONFLICT (key) DO UPDATE SET
        allowed = GREATEST(b.tat + $2, excluded.tat) - (excluded.tat - $2) <= $3,
        tat = CASE
            WHEN GREATEST(b.tat + $2, excluded.tat) - (excluded.tat - $2) <= $3
            THEN GREATEST(b.tat + $2, excluded.tat)
            ELSE b.tat
        END
    RETURNING allowed, tat + $2 - $3 - extract(epoch FROM statement_timestamp())::float8 * 1000";

/// Takes `cost` tokens from `key`'s bucket: `None` if granted, or how long
/// until they would be.
pub(crate) async fn take(
    db: &Backend,
    key: &str,
    bucket: Bucket,
    cost: u32,
) -> Result<Option<Duration>, StoreError> {
    let interval_ms = 1000.0 / bucket.per_sec;
    let cost_ms = interval_ms * f64::from(cost.max(1));
    let tolerance_ms = interval_ms * f64::from(bucket.burst.max(1));
    let client = db.pool.get().await?;
    let statement = client.prepare_cached(TAKE).await?;
    let row = client
        .query_one(&statement, &[&key, &cost_ms, &tolerance_ms])
        .await?;
    let allowed: bool = row.get(0);
    if allowed {
        return Ok(None);
    }
    let wait_ms: f64 = row.get(1);
    Ok(Some(Duration::from_millis(wait_ms.max(0.0).ceil() as u64)))
}

/// Deletes up to `limit` buckets that are full again (equivalent to no
/// row): bounded, so one pass never holds a long transaction. Returns how
/// many.
pub(crate) async fn forget_full(db: &Backend, limit: usize) -> Result<u64, StoreError> {
    let client = db.pool.get().await?;
    let statement = client
        .prepare_cached(
            "DELETE FROM rate_buckets WHERE key IN (
                 SELECT key FROM rate_buckets
                 WHERE tat < extract(epoch FROM statement_timestamp())::float8 * 1000
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .await?;
    Ok(client.execute(&statement, &[&(limit as i64)]).await?)
}
