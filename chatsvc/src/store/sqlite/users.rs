//! SQLite: [`crate::store::users`].

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::conflict;
use crate::store::users::UserRow;
use crate::store::StoreError;

const COLUMNS: &str = "id, username, display_name, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// Inserts a user; `Conflict("username")` if the name is taken (any case).
pub fn insert(
    c: &Connection,
    username: &str,
    password_hash: &str,
    now: i64,
) -> Result<UserRow, StoreError> {
    c.execute(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![username, password_hash, now],
    )
    .map_err(conflict("username"))?;
    let id = c.last_insert_rowid() as u64;
    Ok(UserRow {
        id,
        username: username.to_owned(),
        display_name: None,
        created_at: now,
    })
}

/// Who may add the user to groups directly, if they chose (`anyone`,
/// `friends` or `nobody`).
pub fn group_add_policy(c: &Connection, id: u64) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT group_add_policy FROM users WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten(),
    )
}

pub fn set_group_add_policy(c: &Connection, id: u64, policy: &str) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE users SET group_add_policy = ?2 WHERE id = ?1")?
        .execute(params![id, policy])?;
    Ok(())
}

pub fn by_id(c: &Connection, id: u64) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// The user and password hash for a username (case-insensitive).
pub fn credentials(
    c: &Connection,
    username: &str,
) -> Result<Option<(UserRow, String)>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, password_hash FROM users WHERE username = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([username], |r| Ok((from_row(r)?, r.get(4)?)))
        .optional()?)
}

pub fn by_username(c: &Connection, username: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(credentials(c, username)?.map(|(u, _)| u))
}

pub fn set_display_name(
    c: &Connection,
    id: u64,
    display_name: Option<&str>,
) -> Result<Option<UserRow>, StoreError> {
    c.execute(
        "UPDATE users SET display_name = ?2 WHERE id = ?1",
        params![id, display_name],
    )?;
    by_id(c, id)
}

pub fn exists(c: &Connection, id: u64) -> Result<bool, StoreError> {
    Ok(c.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .exists([id])?)
}

/// The user's next inbox cursor: one past the last in their inbox (rows
/// are never deleted). An error if there is no such user.
pub(super) fn next_cursor(c: &Connection, user_id: u64) -> Result<u64, StoreError> {
    Ok(c.prepare_cached(
        "SELECT (SELECT COALESCE(MAX(cursor), 0) + 1 FROM inbox WHERE user_id = ?1) FROM users WHERE id = ?1",
    )?
    .query_row([user_id], |r| r.get(0))?)
}

/// Replaces a user's password hash; false if there is no such user.
pub fn set_password_hash(c: &Connection, id: u64, hash: &str) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE users SET password_hash = ?2 WHERE id = ?1",
        params![id, hash],
    )? > 0)
}
