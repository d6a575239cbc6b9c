//! PostgreSQL: [`crate::store::webhooks`].

use super::{Backend, Session};
use crate::store::webhooks::DeliveryRow;
use crate::store::webhooks::WebhookRow;
use crate::store::StoreError;

pub fn create(
    c: &Session<'_>,
    url: &str,
    secret: &str,
    events: &[String],
    now: i64,
) -> Result<WebhookRow, StoreError> {
    let id = c
        .query_one(
            "INSERT INTO webhooks (url, secret, events, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
            &[&url, &secret, &events.join(","), &now],
        )?
        .get::<_, i64>(0) as u64;
    Ok(WebhookRow {
        id,
        url: url.to_owned(),
        secret: secret.to_owned(),
        events: events.to_vec(),
        created_at: now,
    })
}

pub fn disable(c: &Session<'_>, id: u64, now: i64) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE webhooks SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
        &[&(id as i64), &now],
    )? > 0)
}

/// Active webhooks.
pub fn active(c: &Session<'_>) -> Result<Vec<WebhookRow>, StoreError> {
    let rows = c.query(
        "SELECT id, url, secret, events, created_at FROM webhooks
         WHERE disabled_at IS NULL ORDER BY id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let events: String = r.get(3);
            WebhookRow {
                id: r.get::<_, i64>(0) as u64,
                url: r.get(1),
                secret: r.get(2),
                events: events.split(',').map(str::to_owned).collect(),
                created_at: r.get(4),
            }
        })
        .collect())
}

/// [`active`] on the writer, for every message sent: read once per group
/// of sends, which can't change them (`Session::active_webhooks`).
pub fn active_to_send(c: &Session<'_>) -> Result<Vec<WebhookRow>, StoreError> {
    c.active_webhooks(active)
}

pub fn enqueue(
    c: &Session<'_>,
    webhook_id: u64,
    event: &str,
    payload: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(c.query_one(
        "INSERT INTO webhook_deliveries (webhook_id, event, payload, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
        &[&(webhook_id as i64), &event, &payload, &now],
    )?
    .get::<_, i64>(0) as u64)
}

/// Deliveries due at `now` for active webhooks, oldest first.
pub fn due(c: &Session<'_>, now: i64, limit: usize) -> Result<Vec<DeliveryRow>, StoreError> {
    let rows = c.query(
        "SELECT d.id, d.webhook_id, w.url, w.secret, d.event, d.payload, d.attempts, d.generation
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.delivered_at IS NULL AND d.next_attempt_at <= $1 AND w.disabled_at IS NULL
           AND (d.lease_until IS NULL OR d.lease_until <= $1)
         ORDER BY d.id LIMIT $2",
        &[&now, &(limit as i64)],
    )?;
    Ok(rows.iter().map(delivery).collect())
}

fn delivery(r: &tokio_postgres::Row) -> DeliveryRow {
    DeliveryRow {
        id: r.get::<_, i64>(0) as u64,
        webhook_id: r.get::<_, i64>(1) as u64,
        url: r.get(2),
        secret: r.get(3),
        event: r.get(4),
        payload: r.get(5),
        attempts: r.get::<_, i32>(6) as u32,
        generation: r.get::<_, i64>(7) as u64,
    }
}

/// Leases up to `limit` due deliveries to `owner` until `lease_until`, in
/// one statement on a pooled connection (its own transaction, so the
/// lease is visible to every node at once). `SKIP LOCKED`: two nodes
/// claiming together take disjoint rows instead of waiting on each other;
/// a row whose lease has passed is due again, which is how a dead node's
/// deliveries move on. Oldest first.
pub(crate) async fn claim(
    db: &Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: usize,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let client = db.pool.get().await?;
    let statement = client
        .prepare_cached(
            "UPDATE webhook_deliveries d SET lease_owner = $1, lease_until = $3
             FROM webhooks w
             WHERE w.id = d.webhook_id AND d.id IN (
                 SELECT c.id FROM webhook_deliveries c JOIN webhooks cw ON cw.id = c.webhook_id
                 WHERE c.delivered_at IS NULL AND c.next_attempt_at <= $2
                   AND (c.lease_until IS NULL OR c.lease_until <= $2)
                   AND cw.disabled_at IS NULL
                 ORDER BY c.id LIMIT $4
                 FOR UPDATE OF c SKIP LOCKED)
             RETURNING d.id, d.webhook_id, w.url, w.secret, d.event, d.payload, d.attempts,
                 d.generation",
        )
        .await?;
    let rows = client
        .query(&statement, &[&owner, &now, &lease_until, &(limit as i64)])
        .await?;
    let mut claimed: Vec<DeliveryRow> = rows.iter().map(delivery).collect();
    claimed.sort_by_key(|d| d.id);
    Ok(claimed)
}

/// Records a successful attempt of `generation` (a replay since then wins).
pub fn delivered(c: &Session<'_>, id: u64, generation: u64, now: i64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE webhook_deliveries SET delivered_at = $2, attempts = attempts + 1,
             lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND generation = $3",
        &[&(id as i64), &now, &(generation as i64)],
    )?;
    Ok(())
}

/// Records a failed attempt of `generation` and when to try again.
pub fn failed(
    c: &Session<'_>,
    id: u64,
    generation: u64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3,
             lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND generation = $4",
        &[&(id as i64), &next_attempt_at, &error, &(generation as i64)],
    )?;
    Ok(())
}

/// Queues again every delivery of the webhook after `after` (replay).
/// Returns how many.
pub fn replay(c: &Session<'_>, webhook_id: u64, after: u64, now: i64) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE webhook_deliveries SET delivered_at = NULL, next_attempt_at = $3, attempts = 0,
             generation = generation + 1, lease_owner = NULL, lease_until = NULL
         WHERE webhook_id = $1 AND id > $2",
        &[&(webhook_id as i64), &(after as i64), &now],
    )? as usize)
}

/// Deliveries not yet made (the queue depth).
pub fn pending(c: &Session<'_>) -> Result<u64, StoreError> {
    Ok(c.query_one(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE delivered_at IS NULL",
        &[],
    )?
    .get::<_, i64>(0) as u64)
}
