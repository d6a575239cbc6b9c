//! PostgreSQL: [`crate::store::social`].

use tokio_postgres::Row;

use super::Session;
use crate::store::social::FriendRequestRow;
use crate::store::users::UserRow;
use crate::store::StoreError;

const REQUEST_COLUMNS: &str = "id, from_id, to_id, note, status, created_at, expires_at";

fn request(r: &Row) -> Result<FriendRequestRow, StoreError> {
    Ok(FriendRequestRow {
        id: r.try_get::<_, i64>(0)? as u64,
        from_id: r.try_get::<_, i64>(1)? as u64,
        to_id: r.try_get::<_, i64>(2)? as u64,
        note: r.try_get(3)?,
        status: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
    })
}

/// The ids in the first column of `rows`.
fn ids(rows: Vec<Row>) -> Result<Vec<u64>, StoreError> {
    rows.iter()
        .map(|r| Ok(r.try_get::<_, i64>(0)? as u64))
        .collect()
}

const ARE_FRIENDS: &str =
    "SELECT EXISTS (SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2)";

pub fn are_friends(c: &Session<'_>, a: u64, b: u64) -> Result<bool, StoreError> {
    Ok(c.query_one(ARE_FRIENDS, &[&(a as i64), &(b as i64)])?
        .try_get(0)?)
}

pub fn has_blocked(c: &Session<'_>, user: u64, other: u64) -> Result<bool, StoreError> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2)",
        &[&(user as i64), &(other as i64)],
    )?
    .try_get(0)?)
}

pub fn pending_request(
    c: &Session<'_>,
    from: u64,
    to: u64,
    now: i64,
) -> Result<Option<FriendRequestRow>, StoreError> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests
         WHERE from_id = $1 AND to_id = $2 AND status = 'pending' AND expires_at > $3"
    );
    c.query_opt(&sql, &[&(from as i64), &(to as i64), &now])?
        .as_ref()
        .map(request)
        .transpose()
}

pub fn request_by_id(c: &Session<'_>, id: u64) -> Result<Option<FriendRequestRow>, StoreError> {
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE id = $1");
    c.query_opt(&sql, &[&(id as i64)])?
        .as_ref()
        .map(request)
        .transpose()
}

pub fn create_request(
    c: &Session<'_>,
    from: u64,
    to: u64,
    note: Option<&str>,
    now: i64,
    expires_at: i64,
) -> Result<FriendRequestRow, StoreError> {
    let (from, to) = (from as i64, to as i64);
    c.execute(
        "UPDATE friend_requests SET status = 'cancelled', decided_at = $3
         WHERE from_id = $1 AND to_id = $2 AND status = 'pending' AND expires_at <= $3",
        &[&from, &to, &now],
    )?;
    // A pending request between the pair already (the partial unique
    // index) inserts nothing rather than failing, which would abort the
    // whole transaction: the caller gets the same Conflict as on SQLite.
    let sql = format!(
        "INSERT INTO friend_requests (from_id, to_id, note, status, created_at, expires_at)
         VALUES ($1, $2, $3, 'pending', $4, $5)
         ON CONFLICT DO NOTHING RETURNING {REQUEST_COLUMNS}"
    );
    c.query_opt(&sql, &[&from, &to, &note, &now, &expires_at])?
        .as_ref()
        .map(request)
        .transpose()?
        .ok_or(StoreError::Conflict("friend request"))
}

pub fn decide_request(
    c: &Session<'_>,
    id: u64,
    status: &str,
    now: i64,
) -> Result<FriendRequestRow, StoreError> {
    let sql = format!(
        "UPDATE friend_requests SET status = $2, decided_at = $3
         WHERE id = $1 AND status = 'pending' RETURNING {REQUEST_COLUMNS}"
    );
    match c.query_opt(&sql, &[&(id as i64), &status, &now])? {
        Some(r) => request(&r),
        // Not pending (or no such request): the row as it is.
        None => request_by_id(c, id)?.ok_or(StoreError::NotFound("friend request")),
    }
}

pub fn list_requests(
    c: &Session<'_>,
    user: u64,
    incoming: bool,
    now: i64,
) -> Result<Vec<FriendRequestRow>, StoreError> {
    let filter = if incoming {
        "to_id = $1 AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = from_id)"
    } else {
        "from_id = $1"
    };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests
         WHERE {filter} AND status = 'pending' AND expires_at > $2 ORDER BY id DESC LIMIT 500"
    );
    c.query(&sql, &[&(user as i64), &now])?
        .iter()
        .map(request)
        .collect()
}

pub fn add_friends(c: &Session<'_>, a: u64, b: u64, now: i64) -> Result<(), StoreError> {
    // Both directions in one statement; a direction already there stays
    // (SQLite's INSERT OR IGNORE).
    c.execute(
        "INSERT INTO friends (user_id, friend_id, since) VALUES ($1, $2, $3), ($2, $1, $3)
         ON CONFLICT DO NOTHING",
        &[&(a as i64), &(b as i64), &now],
    )?;
    Ok(())
}

pub fn remove_friends(c: &Session<'_>, a: u64, b: u64) -> Result<bool, StoreError> {
    let n = c.execute(
        "DELETE FROM friends
         WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
        &[&(a as i64), &(b as i64)],
    )?;
    Ok(n > 0)
}

pub fn friend_ids(c: &Session<'_>, user: u64) -> Result<Vec<u64>, StoreError> {
    ids(c.query(
        "SELECT friend_id FROM friends WHERE user_id = $1 ORDER BY friend_id",
        &[&(user as i64)],
    )?)
}

pub fn friends(c: &Session<'_>, user: u64) -> Result<Vec<(UserRow, i64, Option<i64>)>, StoreError> {
    // Usernames are stored lower-cased ASCII, so bytewise order ("C") is
    // SQLite's NOCASE order; a linguistic collation (en_US...) would skip
    // the `.`, `-` and `_` they may hold.
    let rows = c.query(
        "SELECT u.id, u.username, u.display_name, u.created_at, f.since, u.last_seen_at
         FROM friends f JOIN users u ON u.id = f.friend_id
         WHERE f.user_id = $1 ORDER BY u.username COLLATE \"C\"",
        &[&(user as i64)],
    )?;
    rows.iter()
        .map(|r| {
            Ok((
                UserRow {
                    id: r.try_get::<_, i64>(0)? as u64,
                    username: r.try_get(1)?,
                    display_name: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                },
                r.try_get(4)?,
                r.try_get(5)?,
            ))
        })
        .collect()
}

pub fn block(c: &Session<'_>, user: u64, other: u64, now: i64) -> Result<bool, StoreError> {
    // SQLite's three statements in one round trip: every data-modifying
    // WITH runs to completion whether or not the query reads it, and they
    // touch different tables, so none needs to see another's effects.
    let row = c.query_one(
        "WITH blocked AS (
             INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING 1
         ), unfriended AS (
             DELETE FROM friends
             WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)
         ), cancelled AS (
             UPDATE friend_requests SET status = 'cancelled', decided_at = $3
             WHERE status = 'pending' AND from_id = $1 AND to_id = $2
         )
         SELECT EXISTS (SELECT 1 FROM blocked)",
        &[&(user as i64), &(other as i64), &now],
    )?;
    Ok(row.try_get(0)?)
}

pub fn unblock(c: &Session<'_>, user: u64, other: u64) -> Result<bool, StoreError> {
    Ok(c.execute(
        "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2",
        &[&(user as i64), &(other as i64)],
    )? > 0)
}

pub fn blocked_ids(c: &Session<'_>, user: u64) -> Result<Vec<u64>, StoreError> {
    ids(c.query(
        "SELECT blocked_id FROM blocks WHERE user_id = $1 ORDER BY blocked_id",
        &[&(user as i64)],
    )?)
}

pub fn set_last_seen(c: &Session<'_>, user: u64, at: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE users SET last_seen_at = $2 WHERE id = $1",
        &[&(user as i64), &at],
    )?;
    Ok(())
}

pub fn last_seen(c: &Session<'_>, user: u64) -> Result<Option<i64>, StoreError> {
    match c.query_opt(
        "SELECT last_seen_at FROM users WHERE id = $1",
        &[&(user as i64)],
    )? {
        Some(r) => Ok(r.try_get(0)?),
        None => Ok(None),
    }
}
