//! PostgreSQL: [`crate::store::services`].

use tokio_postgres::Row;

use super::Session;
use crate::store::services::ServiceKeyRow;
use crate::store::StoreError;

const COLUMNS: &str = "id, user_id, scopes, rate_per_sec, created_at, revoked_at";

fn row(r: &Row) -> ServiceKeyRow {
    let scopes: String = r.get(2);
    ServiceKeyRow {
        id: r.get::<_, i64>(0) as u64,
        user_id: r.get::<_, i64>(1) as u64,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        rate_per_sec: r.get::<_, i64>(3) as u32,
        created_at: r.get(4),
        revoked_at: r.get(5),
    }
}

pub fn mark_bot(c: &Session<'_>, user_id: u64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE users SET is_bot = true WHERE id = $1",
        &[&(user_id as i64)],
    )?;
    Ok(())
}

pub fn create(
    c: &Session<'_>,
    user_id: u64,
    key_hash: &[u8],
    scopes: &[String],
    rate_per_sec: u32,
    now: i64,
) -> Result<ServiceKeyRow, StoreError> {
    let id = c
        .query_one(
            "INSERT INTO service_keys (user_id, key_hash, scopes, rate_per_sec, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &(user_id as i64),
                &key_hash,
                &scopes.join(","),
                &i64::from(rate_per_sec),
                &now,
            ],
        )?
        .get::<_, i64>(0) as u64;
    Ok(ServiceKeyRow {
        id,
        user_id,
        scopes: scopes.to_vec(),
        rate_per_sec,
        created_at: now,
        revoked_at: None,
    })
}

/// The live key with this hash.
pub fn by_hash(c: &Session<'_>, key_hash: &[u8]) -> Result<Option<ServiceKeyRow>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM service_keys WHERE key_hash = $1 AND revoked_at IS NULL");
    Ok(c.query_opt(&sql, &[&key_hash])?.map(|r| row(&r)))
}

pub fn revoke(c: &Session<'_>, id: u64, now: i64) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE service_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        &[&(id as i64), &now],
    )? > 0)
}

pub fn list(c: &Session<'_>) -> Result<Vec<ServiceKeyRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM service_keys ORDER BY id");
    Ok(c.query(&sql, &[])?.iter().map(row).collect())
}
