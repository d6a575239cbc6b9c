//! PostgreSQL: [`crate::store::mqtt`].

use super::Session;
use crate::store::mqtt::{CursorsRow, OpenedRow};
use crate::store::StoreError;

pub fn open_mqtt_session(
    c: &Session<'_>,
    user_id: u64,
    client_id: &str,
    clean_start: bool,
    expires_at: i64,
    now: i64,
    max_per_user: usize,
) -> Result<OpenedRow, StoreError> {
    let head = super::messages::inbox_head(c, user_id)?;
    let user = user_id as i64;
    let found = c.query_opt(
        "SELECT subscriptions, acked, sent, seen_at, expires_at FROM mqtt_sessions
         WHERE user_id = $1 AND client_id = $2",
        &[&user, &client_id],
    )?;
    if let Some(r) = found {
        let expired_at: i64 = r.get(4);
        if !clean_start && expired_at > now {
            c.execute(
                "UPDATE mqtt_sessions SET seen_at = $3, expires_at = $4
                 WHERE user_id = $1 AND client_id = $2",
                &[&user, &client_id, &now, &expires_at],
            )?;
            return Ok(OpenedRow {
                present: true,
                subscriptions: r.get(0),
                acked: r.get::<_, i64>(1) as u64,
                sent: r.get::<_, i64>(2) as u64,
                seen_at: r.get(3),
                head,
            });
        }
        end_mqtt_session(c, user_id, client_id)?;
    }
    if max_per_user > 0 {
        // The user's sessions past the cap, least recently seen first.
        let keep = max_per_user.saturating_sub(1) as i64;
        c.execute(
            "DELETE FROM mqtt_sessions WHERE user_id = $1 AND client_id IN (
                 SELECT client_id FROM mqtt_sessions WHERE user_id = $1
                 ORDER BY seen_at DESC, client_id OFFSET $2)",
            &[&user, &keep],
        )?;
    }
    let head_i = head as i64;
    // Never fails on purpose: a row another node made meanwhile is
    // replaced, as a new session would have.
    c.execute(
        "INSERT INTO mqtt_sessions (user_id, client_id, subscriptions, acked, sent, seen_at, expires_at)
         VALUES ($1, $2, '[]', $3, $3, $4, $5)
         ON CONFLICT (user_id, client_id) DO UPDATE SET subscriptions = '[]', acked = $3, sent = $3,
             seen_at = $4, expires_at = $5",
        &[&user, &client_id, &head_i, &now, &expires_at],
    )?;
    Ok(OpenedRow {
        present: false,
        subscriptions: "[]".to_owned(),
        acked: head,
        sent: head,
        seen_at: now,
        head,
    })
}

pub fn mqtt_session_exists(
    c: &Session<'_>,
    user_id: u64,
    client_id: &str,
) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        "SELECT 1 FROM mqtt_sessions WHERE user_id = $1 AND client_id = $2",
        &[&(user_id as i64), &client_id],
    )?
    .is_some())
}

pub fn end_mqtt_session(
    c: &Session<'_>,
    user_id: u64,
    client_id: &str,
) -> Result<bool, StoreError> {
    Ok(c.execute(
        "DELETE FROM mqtt_sessions WHERE user_id = $1 AND client_id = $2",
        &[&(user_id as i64), &client_id],
    )? > 0)
}

pub fn save_mqtt_subscriptions(
    c: &Session<'_>,
    user_id: u64,
    client_id: &str,
    subscriptions: &str,
    now: i64,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE mqtt_sessions SET subscriptions = $3, seen_at = $4
         WHERE user_id = $1 AND client_id = $2",
        &[&(user_id as i64), &client_id, &subscriptions, &now],
    )?;
    Ok(())
}

pub fn save_mqtt_cursors(c: &Session<'_>, rows: &[CursorsRow], now: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // One statement for the batch.
    let users: Vec<i64> = rows.iter().map(|r| r.user_id as i64).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.client_id.as_str()).collect();
    let acked: Vec<i64> = rows.iter().map(|r| r.acked as i64).collect();
    let sent: Vec<i64> = rows.iter().map(|r| r.sent as i64).collect();
    let expires: Vec<i64> = rows.iter().map(|r| r.expires_at).collect();
    c.execute(
        "UPDATE mqtt_sessions s SET acked = GREATEST(s.acked, u.acked), sent = GREATEST(s.sent, u.sent),
             seen_at = $6, expires_at = u.expires_at
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
             AS u(user_id, client_id, acked, sent, expires_at)
         WHERE s.user_id = u.user_id AND s.client_id = u.client_id",
        &[&users, &ids, &acked, &sent, &expires, &now],
    )?;
    Ok(())
}

pub fn purge_mqtt_sessions(c: &Session<'_>, now: i64, limit: usize) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM mqtt_sessions WHERE (user_id, client_id) IN (
             SELECT user_id, client_id FROM mqtt_sessions WHERE expires_at <= $1 LIMIT $2)",
        &[&now, &(limit as i64)],
    )
}
