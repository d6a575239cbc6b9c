//! PostgreSQL: [`crate::store::users`].
//!
//! SQLite's `username` column is `COLLATE NOCASE`: it compares (and keeps
//! unique) names with ASCII letters folded, and nothing else. Here the
//! unique index is on `lower(username COLLATE "C")`, and lookups compare
//! the same expression: `lower` under the "C" collation folds ASCII
//! letters only, whatever the database's locale (under a UTF-8 locale it
//! would also fold `É` or the Kelvin sign, and under a Turkish one fold
//! `I` to a dotless `ı`).

use tokio_postgres::Row;

use super::Session;
use crate::store::users::UserRow;
use crate::store::StoreError;

const COLUMNS: &str = "id, username, display_name, created_at";

fn from_row(r: &Row) -> UserRow {
    UserRow {
        id: r.get::<_, i64>(0) as u64,
        username: r.get(1),
        display_name: r.get(2),
        created_at: r.get(3),
    }
}

/// Inserts a user; `Conflict("username")` if the name is taken (any case).
pub fn insert(
    c: &Session<'_>,
    username: &str,
    password_hash: &str,
    now: i64,
) -> Result<UserRow, StoreError> {
    // ON CONFLICT instead of SQLite's failing INSERT: a failed statement
    // would abort the whole transaction, and the caller may carry on.
    let id = c
        .query_opt(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING id",
            &[&username, &password_hash, &now],
        )?
        .ok_or(StoreError::Conflict("username"))?
        .get::<_, i64>(0) as u64;
    Ok(UserRow {
        id,
        username: username.to_owned(),
        display_name: None,
        created_at: now,
    })
}

/// Who may add the user to groups directly, if they chose (`anyone`,
/// `friends` or `nobody`).
pub fn group_add_policy(c: &Session<'_>, id: u64) -> Result<Option<String>, StoreError> {
    Ok(c.query_opt(
        "SELECT group_add_policy FROM users WHERE id = $1",
        &[&(id as i64)],
    )?
    .and_then(|r| r.get(0)))
}

pub fn set_group_add_policy(c: &Session<'_>, id: u64, policy: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE users SET group_add_policy = $2 WHERE id = $1",
        &[&(id as i64), &policy],
    )?;
    Ok(())
}

pub fn by_id(c: &Session<'_>, id: u64) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    Ok(c.query_opt(&sql, &[&(id as i64)])?.map(|r| from_row(&r)))
}

/// The user and password hash for a username (case-insensitive).
pub fn credentials(
    c: &Session<'_>,
    username: &str,
) -> Result<Option<(UserRow, String)>, StoreError> {
    let sql = format!(
        r#"SELECT {COLUMNS}, password_hash FROM users
           WHERE lower(username COLLATE "C") = lower($1::text COLLATE "C")"#
    );
    Ok(c.query_opt(&sql, &[&username])?
        .map(|r| (from_row(&r), r.get(4))))
}

pub fn by_username(c: &Session<'_>, username: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(credentials(c, username)?.map(|(u, _)| u))
}

pub fn set_display_name(
    c: &Session<'_>,
    id: u64,
    display_name: Option<&str>,
) -> Result<Option<UserRow>, StoreError> {
    // One round trip: RETURNING gives the row as updated, and no row if
    // there is no such user (as SQLite's `by_id` afterwards does).
    let sql = format!("UPDATE users SET display_name = $2 WHERE id = $1 RETURNING {COLUMNS}");
    Ok(c.query_opt(&sql, &[&(id as i64), &display_name])?
        .map(|r| from_row(&r)))
}

pub fn exists(c: &Session<'_>, id: u64) -> Result<bool, StoreError> {
    Ok(
        c.query_opt("SELECT 1 FROM users WHERE id = $1", &[&(id as i64)])?
            .is_some(),
    )
}

/// Replaces a user's password hash; false if there is no such user.
pub fn set_password_hash(c: &Session<'_>, id: u64, hash: &str) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        &[&(id as i64), &hash],
    )? > 0)
}
