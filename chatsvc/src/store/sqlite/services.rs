//! SQLite: [`crate::store::services`].

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::services::ServiceKeyRow;
use crate::store::StoreError;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceKeyRow> {
    let scopes: String = r.get(2)?;
    Ok(ServiceKeyRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        rate_per_sec: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const COLUMNS: &str = "id, user_id, scopes, rate_per_sec, created_at, revoked_at";

pub fn mark_bot(c: &Connection, user_id: u64) -> Result<(), StoreError> {
    c.execute("UPDATE users SET is_bot = 1 WHERE id = ?1", [user_id])?;
    Ok(())
}

pub fn create(
    c: &Connection,
    user_id: u64,
    key_hash: &[u8],
    scopes: &[String],
    rate_per_sec: u32,
    now: i64,
) -> Result<ServiceKeyRow, StoreError> {
    c.execute(
        "INSERT INTO service_keys (user_id, key_hash, scopes, rate_per_sec, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, key_hash, scopes.join(","), rate_per_sec, now],
    )?;
    Ok(ServiceKeyRow {
        id: c.last_insert_rowid() as u64,
        user_id,
        scopes: scopes.to_vec(),
        rate_per_sec,
        created_at: now,
        revoked_at: None,
    })
}

/// The live key with this hash.
pub fn by_hash(c: &Connection, key_hash: &[u8]) -> Result<Option<ServiceKeyRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM service_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
    ))?
    .query_row([key_hash], row)
    .optional()?)
}

pub fn revoke(c: &Connection, id: u64, now: i64) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE service_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )? > 0)
}

pub fn list(c: &Connection) -> Result<Vec<ServiceKeyRow>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM service_keys ORDER BY id"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
