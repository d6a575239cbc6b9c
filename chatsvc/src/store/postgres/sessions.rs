//! PostgreSQL: [`crate::store::sessions`].

use super::Session;
use crate::store::sessions::Rotation;
use crate::store::StoreError;

pub fn create(
    c: &Session<'_>,
    user_id: u64,
    refresh_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<u64, StoreError> {
    Ok(c.query_one(
        "INSERT INTO sessions (user_id, refresh_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4) RETURNING id",
        &[&(user_id as i64), &refresh_hash, &now, &expires_at],
    )?
    .get::<_, i64>(0) as u64)
}

pub fn rotate(
    c: &Session<'_>,
    old_hash: &[u8],
    new_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<Rotation, StoreError> {
    let current = c.query_opt(
        "SELECT id, user_id, expires_at, revoked_at FROM sessions WHERE refresh_hash = $1",
        &[&old_hash],
    )?;
    if let Some(r) = current {
        let session_id = r.get::<_, i64>(0);
        let user_id = r.get::<_, i64>(1) as u64;
        let exp: i64 = r.get(2);
        let revoked: Option<i64> = r.get(3);
        if revoked.is_some() || exp <= now {
            return Ok(Rotation::Invalid);
        }
        // SQLite's two statements in one round trip.
        c.execute(
            "WITH used AS (
                 INSERT INTO used_refresh_tokens (refresh_hash, session_id) VALUES ($1, $2)
             )
             UPDATE sessions SET refresh_hash = $3, expires_at = $4 WHERE id = $2",
            &[&old_hash, &session_id, &new_hash, &expires_at],
        )?;
        return Ok(Rotation::Rotated {
            session_id: session_id as u64,
            user_id,
        });
    }
    // SQLite's lookup of the used token and its `revoke` in one statement:
    // the session the token was rotated away from, revoked (keeping an
    // earlier revocation's time).
    let reused = c.query_opt(
        "UPDATE sessions s SET revoked_at = COALESCE(s.revoked_at, $2)
         FROM used_refresh_tokens u
         WHERE u.refresh_hash = $1 AND s.id = u.session_id
         RETURNING s.id, s.user_id",
        &[&old_hash, &now],
    )?;
    Ok(match reused {
        Some(r) => Rotation::Reused {
            session_id: r.get::<_, i64>(0) as u64,
            user_id: r.get::<_, i64>(1) as u64,
        },
        None => Rotation::Invalid,
    })
}

/// Revokes a session; returns its user, or `None` if unknown.
pub fn revoke(c: &Session<'_>, session_id: u64, now: i64) -> Result<Option<u64>, StoreError> {
    Ok(c.query_opt(
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING user_id",
        &[&(session_id as i64), &now],
    )?
    .map(|r| r.get::<_, i64>(0) as u64))
}

/// Revokes every live session of a user; returns their ids.
pub fn revoke_all(c: &Session<'_>, user_id: u64, now: i64) -> Result<Vec<u64>, StoreError> {
    // RETURNING has no order of its own here; SQLite's, from its
    // `sessions_by_user` index, is by id.
    let rows = c.query(
        "WITH revoked AS (
             UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL
             RETURNING id
         )
         SELECT id FROM revoked ORDER BY id",
        &[&(user_id as i64), &now],
    )?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
}

/// The highest session id, 0 if none (sessions are never deleted, so no
/// session above it existed when this database was copied or restored).
pub fn last_id(c: &Session<'_>) -> Result<u64, StoreError> {
    Ok(
        c.query_one("SELECT COALESCE(MAX(id), 0) FROM sessions", &[])?
            .get::<_, i64>(0) as u64,
    )
}

/// Sessions revoked at or after `since` (to rebuild the in-memory deny list
/// after a restart: older ones can no longer have live access tokens).
pub fn revoked_since(c: &Session<'_>, since: i64) -> Result<Vec<(u64, i64)>, StoreError> {
    // Ordered by id, as SQLite's scan of the table returns them.
    let rows = c.query(
        "SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1 ORDER BY id",
        &[&since],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
        .collect())
}
