//! SQLite: [`crate::store::webhooks`].

use rusqlite::{params, Connection, OptionalExtension};

use super::conn::{Conn, Hot};
use crate::store::webhooks::{DeliveryRow, WebhookRow};

use crate::store::StoreError;

pub fn create(
    c: &Connection,
    url: &str,
    secret: &str,
    events: &[String],
    now: i64,
) -> Result<WebhookRow, StoreError> {
    c.execute(
        "INSERT INTO webhooks (url, secret, events, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![url, secret, events.join(","), now],
    )?;
    Ok(WebhookRow {
        id: c.last_insert_rowid() as u64,
        url: url.to_owned(),
        secret: secret.to_owned(),
        events: events.to_vec(),
        created_at: now,
    })
}

pub fn disable(c: &Connection, id: u64, now: i64) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE webhooks SET disabled_at = ?2 WHERE id = ?1 AND disabled_at IS NULL",
        params![id, now],
    )? > 0)
}

/// Active webhooks.
pub fn active(c: &Connection) -> Result<Vec<WebhookRow>, StoreError> {
    rows(&mut *c.prepare_cached(ACTIVE)?)
}

/// [`active`] on the writer, for every message sent.
pub fn active_to_send(c: &Conn<'_>) -> Result<Vec<WebhookRow>, StoreError> {
    rows(&mut *c.hot(Hot::ActiveWebhooks)?)
}

pub(super) const ACTIVE: &str =
    "SELECT id, url, secret, events, created_at FROM webhooks WHERE disabled_at IS NULL ORDER BY id";

fn rows(stmt: &mut rusqlite::Statement<'_>) -> Result<Vec<WebhookRow>, StoreError> {
    let rows = stmt
        .query_map([], |r| {
            let events: String = r.get(3)?;
            Ok(WebhookRow {
                id: r.get(0)?,
                url: r.get(1)?,
                secret: r.get(2)?,
                events: events.split(',').map(str::to_owned).collect(),
                created_at: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn enqueue(
    c: &Connection,
    webhook_id: u64,
    event: &str,
    payload: &str,
    now: i64,
) -> Result<u64, StoreError> {
    c.prepare_cached(
        "INSERT INTO webhook_deliveries (webhook_id, event, payload, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![webhook_id, event, payload, now])?;
    Ok(c.last_insert_rowid() as u64)
}

/// Deliveries due at `now` for active webhooks, oldest first.
pub fn due(c: &Connection, now: i64, limit: usize) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT d.id, d.webhook_id, w.url, w.secret, d.event, d.payload, d.attempts, d.generation
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.delivered_at IS NULL AND d.next_attempt_at <= ?1 AND w.disabled_at IS NULL
         ORDER BY d.id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![now, limit as i64], |r| {
            Ok(DeliveryRow {
                id: r.get(0)?,
                webhook_id: r.get(1)?,
                url: r.get(2)?,
                secret: r.get(3)?,
                event: r.get(4)?,
                payload: r.get(5)?,
                attempts: r.get(6)?,
                generation: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Records a successful attempt of `generation` (a replay since then wins).
pub fn delivered(c: &Connection, id: u64, generation: u64, now: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE webhook_deliveries SET delivered_at = ?2, attempts = attempts + 1
         WHERE id = ?1 AND generation = ?3",
    )?
    .execute(params![id, now, generation])?;
    Ok(())
}

/// Records a failed attempt of `generation` and when to try again.
pub fn failed(
    c: &Connection,
    id: u64,
    generation: u64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE id = ?1 AND generation = ?4",
    )?
    .execute(params![id, next_attempt_at, error, generation])?;
    Ok(())
}

/// Queues again every delivery of the webhook after `after` (replay).
/// Returns how many.
pub fn replay(c: &Connection, webhook_id: u64, after: u64, now: i64) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE webhook_deliveries SET delivered_at = NULL, next_attempt_at = ?3, attempts = 0,
             generation = generation + 1
         WHERE webhook_id = ?1 AND id > ?2",
        params![webhook_id, after, now],
    )?)
}

/// Deliveries not yet made (the queue depth).
pub fn pending(c: &Connection) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("SELECT COUNT(*) FROM webhook_deliveries WHERE delivered_at IS NULL")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}
