//! SQLite: [`crate::store::sessions`].

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::sessions::Rotation;
use crate::store::StoreError;

pub fn create(
    c: &Connection,
    user_id: u64,
    refresh_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<u64, StoreError> {
    c.execute(
        "INSERT INTO sessions (user_id, refresh_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, refresh_hash, now, expires_at],
    )?;
    Ok(c.last_insert_rowid() as u64)
}

pub fn rotate(
    c: &Connection,
    old_hash: &[u8],
    new_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<Rotation, StoreError> {
    let current: Option<(u64, u64, i64, Option<i64>)> = c
        .prepare_cached(
            "SELECT id, user_id, expires_at, revoked_at FROM sessions WHERE refresh_hash = ?1",
        )?
        .query_row([old_hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some((session_id, user_id, exp, revoked)) = current {
        if revoked.is_some() || exp <= now {
            return Ok(Rotation::Invalid);
        }
        c.execute(
            "INSERT INTO used_refresh_tokens (refresh_hash, session_id) VALUES (?1, ?2)",
            params![old_hash, session_id],
        )?;
        c.execute(
            "UPDATE sessions SET refresh_hash = ?2, expires_at = ?3 WHERE id = ?1",
            params![session_id, new_hash, expires_at],
        )?;
        return Ok(Rotation::Rotated {
            session_id,
            user_id,
        });
    }
    let reused: Option<(u64, u64)> = c
        .prepare_cached(
            "SELECT s.id, s.user_id FROM used_refresh_tokens u JOIN sessions s ON s.id = u.session_id
             WHERE u.refresh_hash = ?1",
        )?
        .query_row([old_hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match reused {
        Some((session_id, user_id)) => {
            revoke(c, session_id, now)?;
            Ok(Rotation::Reused {
                session_id,
                user_id,
            })
        }
        None => Ok(Rotation::Invalid),
    }
}

/// Revokes a session; returns its user, or `None` if unknown.
pub fn revoke(c: &Connection, session_id: u64, now: i64) -> Result<Option<u64>, StoreError> {
    Ok(c.prepare_cached(
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 RETURNING user_id",
    )?
    .query_row(params![session_id, now], |r| r.get(0))
    .optional()?)
}

/// Revokes every live session of a user; returns their ids.
pub fn revoke_all(c: &Connection, user_id: u64, now: i64) -> Result<Vec<u64>, StoreError> {
    let mut stmt = c.prepare_cached(
        "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL RETURNING id",
    )?;
    let ids = stmt
        .query_map(params![user_id, now], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(ids)
}

/// The highest session id, 0 if none (sessions are never deleted, so no
/// session above it existed when this database was copied or restored).
pub fn last_id(c: &Connection) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM sessions")?
            .query_row([], |r| r.get(0))?,
    )
}

/// Sessions revoked at or after `since` (to rebuild the in-memory deny list
/// after a restart: older ones can no longer have live access tokens).
pub fn revoked_since(c: &Connection, since: i64) -> Result<Vec<(u64, i64)>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?1")?;
    let rows = stmt
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
