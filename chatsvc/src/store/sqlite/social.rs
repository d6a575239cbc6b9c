//! SQLite: [`crate::store::social`].

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::conn::{Conn, Hot};
use crate::store::social::FriendRequestRow;

use crate::store::users::UserRow;

use super::conflict;
use crate::store::StoreError;

const REQUEST_COLUMNS: &str = "id, from_id, to_id, note, status, created_at, expires_at";

fn request(r: &Row<'_>) -> rusqlite::Result<FriendRequestRow> {
    Ok(FriendRequestRow {
        id: r.get(0)?,
        from_id: r.get(1)?,
        to_id: r.get(2)?,
        note: r.get(3)?,
        status: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

pub fn are_friends(c: &Connection, a: u64, b: u64) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(ARE_FRIENDS)?.exists(params![a, b])?)
}

/// [`are_friends`] on the writer, for a direct message.
pub fn are_friends_to_send(c: &Conn<'_>, a: u64, b: u64) -> Result<bool, StoreError> {
    Ok(c.hot(Hot::AreFriends)?.exists(params![a, b])?)
}

pub(super) const ARE_FRIENDS: &str = "SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2";

/// Has `user` blocked `other`?
pub fn has_blocked(c: &Connection, user: u64, other: u64) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2")?
            .exists(params![user, other])?,
    )
}

/// The pending, unexpired request from `from` to `to`, if any.
pub fn pending_request(
    c: &Connection,
    from: u64,
    to: u64,
    now: i64,
) -> Result<Option<FriendRequestRow>, StoreError> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE from_id = ?1 AND to_id = ?2 AND status = 'pending' AND expires_at > ?3"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(params![from, to, now], request)
        .optional()?)
}

pub fn request_by_id(c: &Connection, id: u64) -> Result<Option<FriendRequestRow>, StoreError> {
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM friend_requests WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], request)
        .optional()?)
}

/// Creates a pending request. An expired pending request between the same
/// pair is closed first, so it does not block a new one.
pub fn create_request(
    c: &Connection,
    from: u64,
    to: u64,
    note: Option<&str>,
    now: i64,
    expires_at: i64,
) -> Result<FriendRequestRow, StoreError> {
    c.prepare_cached(
        "UPDATE friend_requests SET status = 'cancelled', decided_at = ?3
         WHERE from_id = ?1 AND to_id = ?2 AND status = 'pending' AND expires_at <= ?3",
    )?
    .execute(params![from, to, now])?;
    c.prepare_cached(
        "INSERT INTO friend_requests (from_id, to_id, note, status, created_at, expires_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
    )?
    .execute(params![from, to, note, now, expires_at])
    .map_err(conflict("friend request"))?;
    request_by_id(c, c.last_insert_rowid() as u64)?.ok_or(StoreError::NotFound("friend request"))
}

/// Closes a pending request with `status`; returns the updated row.
pub fn decide_request(
    c: &Connection,
    id: u64,
    status: &str,
    now: i64,
) -> Result<FriendRequestRow, StoreError> {
    c.prepare_cached("UPDATE friend_requests SET status = ?2, decided_at = ?3 WHERE id = ?1 AND status = 'pending'")?
        .execute(params![id, status, now])?;
    request_by_id(c, id)?.ok_or(StoreError::NotFound("friend request"))
}

/// Pending, unexpired requests to (`incoming`) or from the user, newest
/// first; incoming ones from users the user blocks are left out.
pub fn list_requests(
    c: &Connection,
    user: u64,
    incoming: bool,
    now: i64,
) -> Result<Vec<FriendRequestRow>, StoreError> {
    let filter = if incoming {
        "to_id = ?1 AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = ?1 AND b.blocked_id = from_id)"
    } else {
        "from_id = ?1"
    };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM friend_requests
         WHERE {filter} AND status = 'pending' AND expires_at > ?2 ORDER BY id DESC LIMIT 500"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![user, now], request)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn add_friends(c: &Connection, a: u64, b: u64, now: i64) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT OR IGNORE INTO friends (user_id, friend_id, since) VALUES (?1, ?2, ?3)",
    )?;
    stmt.execute(params![a, b, now])?;
    stmt.execute(params![b, a, now])?;
    Ok(())
}

/// Ends a friendship; true if there was one.
pub fn remove_friends(c: &Connection, a: u64, b: u64) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached("DELETE FROM friends WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)")?
        .execute(params![a, b])?;
    Ok(n > 0)
}

/// Friend ids of a user, ascending.
pub fn friend_ids(c: &Connection, user: u64) -> Result<Vec<u64>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT friend_id FROM friends WHERE user_id = ?1 ORDER BY friend_id")?;
    let ids = stmt
        .query_map([user], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(ids)
}

/// Friends with profile, friendship start and last-seen time.
pub fn friends(c: &Connection, user: u64) -> Result<Vec<(UserRow, i64, Option<i64>)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT u.id, u.username, u.display_name, u.created_at, f.since, u.last_seen_at
         FROM friends f JOIN users u ON u.id = f.friend_id WHERE f.user_id = ?1 ORDER BY u.username",
    )?;
    let rows = stmt
        .query_map([user], |r| {
            Ok((
                UserRow {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    display_name: r.get(2)?,
                    created_at: r.get(3)?,
                },
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Blocks `other`: also ends the friendship and cancels the blocker's own
/// pending request. The blocked user's request to the blocker stays
/// pending, as it would for anyone, so the block does not show in their
/// outgoing list; [`list_requests`] hides it from the blocker. Returns true
/// if this is a new block.
pub fn block(c: &Connection, user: u64, other: u64, now: i64) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO blocks (user_id, blocked_id, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![user, other, now])?;
    remove_friends(c, user, other)?;
    c.prepare_cached(
        "UPDATE friend_requests SET status = 'cancelled', decided_at = ?3
         WHERE status = 'pending' AND from_id = ?1 AND to_id = ?2",
    )?
    .execute(params![user, other, now])?;
    Ok(n > 0)
}

pub fn unblock(c: &Connection, user: u64, other: u64) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM blocks WHERE user_id = ?1 AND blocked_id = ?2")?
            .execute(params![user, other])?
            > 0,
    )
}

pub fn blocked_ids(c: &Connection, user: u64) -> Result<Vec<u64>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT blocked_id FROM blocks WHERE user_id = ?1 ORDER BY blocked_id")?;
    let ids = stmt
        .query_map([user], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(ids)
}

pub fn set_last_seen(c: &Connection, user: u64, at: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE users SET last_seen_at = ?2 WHERE id = ?1")?
        .execute(params![user, at])?;
    Ok(())
}

pub fn last_seen(c: &Connection, user: u64) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT last_seen_at FROM users WHERE id = ?1")?
            .query_row([user], |r| r.get(0))
            .optional()?
            .flatten(),
    )
}
